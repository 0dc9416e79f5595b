//! Loading a session: one read by primary key, then the checks that decide
//! whether this request may use it.

use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use super::Session;
use super::state::Working;
use crate::SessionError;
use crate::store::{SessionData, SessionFields, SessionRecord, StoreError};
use crate::token::{SessionToken, TokenHash};

impl Session {
    pub(super) async fn load(&self) -> Result<Working, SessionError> {
        let shared = &self.0;
        let span = tracing::info_span!("keycard.session", session.id = tracing::field::Empty);
        let now = shared.ctx.now();
        let Some((id, token)) = &shared.presented else {
            return Ok(Working::fresh(self.fresh_fields(now), span));
        };
        span.record("session.id", id.get());
        let record = match shared.ctx.store.load(*id).instrument(span.clone()).await {
            // A row keycard never wrote (edited by hand, another program):
            // it can never be used, so it goes, and the request carries on
            // anonymous rather than fail for good on every request.
            Err(StoreError::Corrupt { what, .. }) => {
                span.in_scope(|| {
                    tracing::warn!(
                        what,
                        "keycard: corrupt session row deleted; request is anonymous"
                    )
                });
                shared
                    .ctx
                    .store
                    .delete(*id)
                    .instrument(span.clone())
                    .await?;
                None
            }
            loaded => loaded?,
        };
        let mut verdict = match record {
            None => Err("no such session"),
            Some(record) => self.check(&record, token, now).map(|()| record),
        };
        if let Ok(record) = &verdict
            && !self
                .auth_version_is_current(record)
                .instrument(span.clone())
                .await?
        {
            verdict = Err("credentials changed since sign-in");
        }
        Ok(match verdict {
            Ok(record) => Working::stored(record, span),
            Err(reason) => {
                span.in_scope(|| tracing::info!(reason, "keycard: session cookie rejected"));
                Working::fresh(self.fresh_fields(now), tracing::Span::none())
            }
        })
    }

    /// Why a stored session may not be used by this request, if it may not.
    fn check(
        &self,
        record: &SessionRecord,
        token: &SessionToken,
        now: DateTime<Utc>,
    ) -> Result<(), &'static str> {
        let config = &self.0.ctx.config;
        let f = &record.fields;
        if !f.token_hash.ct_eq(&token.hash()) {
            return Err("token does not match");
        }
        let skew = config.max_clock_skew;
        if f.last_activity > now + skew || f.created_at > now + skew {
            // A clock that stepped back must never extend a session.
            return Err("session timestamps lie in the future");
        }
        let (idle, absolute) = config.timeouts(f.persistent);
        if now - f.last_activity > idle {
            return Err("idle timeout");
        }
        if now - f.created_at > absolute {
            return Err("absolute timeout");
        }
        if config.bind_ip {
            // Without the client's address nothing shows it is the same
            // client: refused like another address, never waved through
            // (every row would match every request, all addresses unknown).
            let Some(client) = self.client_ip_text() else {
                warn_unknown_client();
                return Err("client address unknown, so IP binding cannot hold");
            };
            if f.ip_address.as_deref() != Some(client.as_str()) {
                return Err("client address changed");
            }
        }
        Ok(())
    }

    /// Whether a signed-in session's credential version is the user's
    /// current one (always, when the application keeps no versions).
    async fn auth_version_is_current(&self, record: &SessionRecord) -> Result<bool, SessionError> {
        let (Some(versions), Some(user)) = (&self.0.ctx.auth_versions, &record.fields.user_id)
        else {
            return Ok(true);
        };
        match versions.current(user).await {
            Ok(None) => Ok(true),
            Ok(current) => Ok(current == record.fields.auth_version),
            Err(error) => Err(SessionError::AuthVersions(error.to_string())),
        }
    }

    pub(super) fn client_ip_text(&self) -> Option<String> {
        self.0.client_ip.map(|ip| ip.to_canonical().to_string())
    }

    pub(super) fn fresh_fields(&self, now: DateTime<Utc>) -> SessionFields {
        SessionFields {
            // Replaced by a real token's hash when the session is first saved.
            token_hash: TokenHash::UNSET,
            user_id: None,
            ip_address: self.client_ip_text(),
            is_api: false,
            auth_method: None,
            authenticated_at: None,
            persistent: false,
            created_at: now,
            last_activity: now,
            data: SessionData::new(),
            auth_version: None,
            credential: None,
            device: self
                .0
                .user_agent
                .as_ref()
                .and_then(|ua| super::device::label(ua.as_bytes())),
        }
    }
}

/// Once a process: IP binding is on and a request came without the
/// client's address, most likely a server without connect info, which
/// would refuse every session.
fn warn_unknown_client() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            "keycard: bind_ip is on but a request came without the client's address, so its \
             session was refused: serve with into_make_service_with_connect_info::<SocketAddr>() \
             (behind a proxy, list it in trusted_proxies)"
        );
    });
}
