//! [`ApiTokens`]: long-lived bearer tokens for API clients.

use std::sync::Arc;

use async_trait::async_trait;

use super::AccountError;
use super::{Authenticated, AuthenticationError, Authenticator, Credentials};
use crate::SessionAdmin;
use crate::clock::{Clock, SystemClock, to_micros};
use crate::store::{ApiTokenRecord, NewApiToken, UserStore};
use crate::token::ApiTokenSecret;

/// What every keycard API token starts with, so secret scanners and people
/// can recognise one.
const PREFIX: &str = "kc_";

/// Whether `text` has the shape of a keycard API token.
pub(crate) fn looks_like_token(text: &str) -> bool {
    text.strip_prefix(PREFIX)
        .is_some_and(|secret| secret.parse::<ApiTokenSecret>().is_ok())
}

/// A token just created: the secret is shown to its owner once and never
/// stored.
#[derive(Debug)]
pub struct NewToken {
    /// The stored part: id, owner, name, dates.
    pub record: ApiTokenRecord,
    /// The token to put in `Authorization: Bearer …`. Only its hash is kept.
    pub secret: String,
}

/// Long-lived bearer tokens (`Authorization: Bearer kc_…`) for API clients:
/// created and revoked by their owner, stored only as SHA-256 hashes, each
/// with a name, an owner, a creation and a last-use time (written at most
/// once a minute). As an [`Authenticator`] it accepts
/// [`Credentials::Bearer`], naming the token as the credential, so that
/// [`revoke`](Self::revoke) ends every session the token opened, through
/// the session layer's own store (and so its cache).
///
/// ```
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use keycard::{SessionLayer, SqliteStore};
/// use keycard::auth::ApiTokens;
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let layer = SessionLayer::new(store.clone());
/// let tokens = ApiTokens::new(store, layer.admin());
/// let new = tokens.create("ada", "CI pipeline").await?;
/// println!("your token (shown once): {}", new.secret);
/// assert_eq!(tokens.list("ada").await?.len(), 1);
/// assert!(tokens.revoke("ada", new.record.id).await?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ApiTokens {
    store: Arc<dyn UserStore>,
    sessions: SessionAdmin,
    clock: Arc<dyn Clock>,
}

/// How often a token's `last_used_at` is written at most: a token used by
/// every request of a busy client costs one write a minute, not one each.
const TOUCH_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

impl ApiTokens {
    /// Tokens in `store`; revocations end sessions through `sessions`
    /// ([`SessionLayer::admin`](crate::SessionLayer::admin)).
    pub fn new(store: impl UserStore, sessions: SessionAdmin) -> Self {
        Self::with_shared_store(Arc::new(store), sessions)
    }

    /// Tokens in a store shared with other code.
    pub fn with_shared_store(store: Arc<dyn UserStore>, sessions: SessionAdmin) -> Self {
        Self {
            store,
            sessions,
            clock: Arc::new(SystemClock),
        }
    }

    /// Dates tokens with `clock`.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Creates a token for `user_id`, named `name` (1 to 255 characters).
    pub async fn create(&self, user_id: &str, name: &str) -> Result<NewToken, AccountError> {
        let valid = |s: &str| {
            let chars = s.chars().count();
            chars > 0 && chars <= crate::MAX_USER_ID_CHARS && !s.chars().any(char::is_control)
        };
        if !valid(user_id) || !valid(name) {
            return Err(AccountError::InvalidTokenName);
        }
        let created_at = to_micros(self.clock.now());
        // A hash collision of 256-bit tokens will not happen; if the unique
        // index ever refuses one, a new token is drawn.
        for _ in 0..3 {
            let secret = ApiTokenSecret::generate().map_err(|_| AccountError::Randomness)?;
            let token = NewApiToken {
                token_hash: secret.hash(),
                user_id: user_id.to_owned(),
                name: name.to_owned(),
                created_at,
            };
            match self.store.insert_api_token(&token).await {
                Ok(id) => {
                    tracing::info!(token.id = id, user = user_id, "keycard: API token created");
                    return Ok(NewToken {
                        record: ApiTokenRecord::new(id, token.user_id, token.name, created_at),
                        secret: format!("{PREFIX}{}", secret.expose()),
                    });
                }
                Err(crate::store::StoreError::AlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(AccountError::Randomness)
    }

    /// The user's tokens, oldest first (no secrets: they are not kept).
    pub async fn list(&self, user_id: &str) -> Result<Vec<ApiTokenRecord>, AccountError> {
        Ok(self.store.list_api_tokens(user_id).await?)
    }

    /// Revokes one of the user's tokens and ends every session it opened;
    /// `false` if it is not theirs.
    pub async fn revoke(&self, user_id: &str, id: i64) -> Result<bool, AccountError> {
        let revoked = self.store.delete_api_token(user_id, id).await?;
        if revoked {
            tracing::info!(token.id = id, user = user_id, "keycard: API token revoked");
            let credential = ApiTokenRecord::credential_of(id);
            self.sessions
                .end_sessions_signed_in_by(user_id, &credential)
                .await?;
        }
        Ok(revoked)
    }
}

#[async_trait]
impl Authenticator for ApiTokens {
    async fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> Result<Authenticated, AuthenticationError> {
        let Credentials::Bearer(text) = credentials else {
            return Err(AuthenticationError::NotMine);
        };
        let Some(secret) = text
            .strip_prefix(PREFIX)
            .and_then(|s| s.parse::<ApiTokenSecret>().ok())
        else {
            return Err(AuthenticationError::Rejected);
        };
        let unavailable =
            |e: crate::store::StoreError| AuthenticationError::Unavailable(e.to_string());
        let token = self
            .store
            .find_api_token(&secret.hash())
            .await
            .map_err(unavailable)?
            .ok_or(AuthenticationError::Rejected)?;
        let now = to_micros(self.clock.now());
        if token
            .last_used_at
            .is_none_or(|at| now - at >= TOUCH_INTERVAL)
        {
            self.store
                .touch_api_token(token.id, now)
                .await
                .map_err(unavailable)?;
        }
        Ok(Authenticated::new(token.user_id.clone()).with_credential(token.credential()))
    }
}
