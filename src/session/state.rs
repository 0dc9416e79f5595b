//! What a request changed in its session, and how those changes are
//! replayed on a newer version of the row.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::SessionError;
use crate::store::{SessionFields, SessionRecord};
use crate::token::SessionToken;

/// Where a request's session is in its life.
pub(super) enum State {
    /// No method has run yet.
    Unloaded,
    /// Loading failed: every method errs and the layer answers 503.
    Failed,
    /// Loaded (or fresh): the working copy.
    Ready(Box<Working>),
}

/// The session as this request sees it, and what it changed.
pub(super) struct Working {
    /// The row as last read from or written to the store; `None` for a
    /// session that is not stored yet.
    pub(super) stored: Option<SessionRecord>,
    /// The current view: `stored` with this request's changes applied.
    pub(super) view: SessionFields,
    /// The token to send: set for a rotation (and for a new session once
    /// saved). `None` keeps the presented one.
    pub(super) new_token: Option<SessionToken>,
    /// Data keys this request set or removed.
    pub(super) dirty: BTreeSet<String>,
    /// `clear()` or a sign-in as another user replaced all data.
    pub(super) cleared: bool,
    /// The user, how and when they authenticated.
    pub(super) identity_changed: bool,
    pub(super) persistent_changed: bool,
    /// The sign-in was confirmed: its time and method changed.
    pub(super) reauthenticated: bool,
    /// The signed-in session was given a credential name after its sign-in.
    pub(super) credential_changed: bool,
    /// Signed out: expire the cookies unless a new session is stored.
    pub(super) ended: bool,
    /// A signed-in user signed out in this request (for `Clear-Site-Data`).
    pub(super) signed_out: bool,
    /// A stored row this request ended with [`Session::restart`](super::Session::restart),
    /// to delete when the response leaves.
    pub(super) replaced: Option<crate::token::SessionId>,
    /// The user of the `replaced` row, for its hook event.
    pub(super) replaced_user: Option<String>,
    /// What the save did, for the connection's hooks.
    pub(super) events: Vec<super::events::SessionEvent>,
    /// What this request did to the user's sessions, for whoever keeps
    /// credentials beside them (remember-me); kept across a restart.
    pub(super) facts: RequestFacts,
    pub(super) span: tracing::Span,
}

/// What a request did to its user's sessions that outlives the session
/// itself: read by [`RememberMe`](crate::auth::RememberMe) after the
/// handler, so that a device signed out stays signed out.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestFacts {
    /// The user who signed out of this session.
    pub(crate) signed_out: Option<String>,
    /// The user whose other sessions were all ended.
    pub(crate) ended_others_of: Option<String>,
    /// The credentials of the user's sessions ended one by one
    /// ([`Login::credential`](crate::Login::credential)): (user, credential).
    pub(crate) ended_credentials: Vec<(String, String)>,
}

impl Working {
    pub(super) fn fresh(view: SessionFields, span: tracing::Span) -> Self {
        Self::new(None, view, span)
    }

    pub(super) fn stored(record: SessionRecord, span: tracing::Span) -> Self {
        let view = record.fields.clone();
        Self::new(Some(record), view, span)
    }

    pub(super) fn new(
        stored: Option<SessionRecord>,
        view: SessionFields,
        span: tracing::Span,
    ) -> Self {
        Self {
            stored,
            view,
            new_token: None,
            dirty: BTreeSet::new(),
            cleared: false,
            identity_changed: false,
            persistent_changed: false,
            reauthenticated: false,
            credential_changed: false,
            ended: false,
            signed_out: false,
            replaced: None,
            replaced_user: None,
            events: Vec::new(),
            facts: RequestFacts::default(),
            span,
        }
    }

    /// Sets (`Some`) or removes (`None`) a value, tracking whether it now
    /// differs from the stored one.
    pub(super) fn set(&mut self, key: &str, value: Option<Value>) {
        match value {
            Some(value) => self.view.data.insert(key.to_owned(), value),
            None => self.view.data.remove(key),
        };
        let stored = self.stored.as_ref().and_then(|r| r.fields.data.get(key));
        if !self.cleared && stored == self.view.data.get(key) {
            self.dirty.remove(key);
        } else {
            self.dirty.insert(key.to_owned());
        }
    }

    /// Records that `key = value` is now stored, as part of `record`.
    pub(super) fn committed(&mut self, key: &str, value: Value, record: SessionRecord) {
        self.view.last_activity = record.fields.last_activity;
        self.view.data.insert(key.to_owned(), value);
        self.dirty.remove(key);
        self.stored = Some(record);
    }

    /// Forgets the stored row (remembering to delete it) and every change:
    /// from here on this is a new session with `fresh` as its fields.
    pub(super) fn restart(&mut self, fresh: SessionFields) {
        let (replaced, replaced_user) = match self.stored.take() {
            Some(record) => (Some(record.id), record.fields.user_id),
            None => (self.replaced, self.replaced_user.take()),
        };
        let span = std::mem::replace(&mut self.span, tracing::Span::none());
        let facts = std::mem::take(&mut self.facts);
        *self = Self::new(None, fresh, span);
        self.facts = facts;
        self.replaced = replaced;
        self.replaced_user = replaced_user;
    }

    /// Records that the stored row's values are now `data`, with `key =
    /// value` among them, written by the optimistic fast path.
    pub(super) fn committed_data(
        &mut self,
        key: &str,
        value: Value,
        data: crate::store::SessionData,
        renewed: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        if let Some(stored) = &mut self.stored {
            stored.version += 1;
            stored.fields.data = data;
            if let Some(at) = renewed {
                stored.fields.last_activity = at;
            }
        }
        if let Some(at) = renewed {
            self.view.last_activity = at;
        }
        self.view.data.insert(key.to_owned(), value);
        self.dirty.remove(key);
    }

    /// Whether only values (and the activity time) changed: the narrow
    /// `update_data` statement is enough.
    pub(super) fn only_data_changed(&self) -> bool {
        !self.identity_changed
            && !self.persistent_changed
            && !self.credential_changed
            && self.new_token.is_none()
    }

    /// The sign-in or sign-out a saved identity change amounts to, for the
    /// session `id` whose user was `before`.
    pub(super) fn push_identity_events(
        &mut self,
        id: crate::token::SessionId,
        before: Option<String>,
    ) {
        use super::events::SessionEvent;
        match (&self.view.user_id, before) {
            (Some(user_id), _) => self.events.push(SessionEvent::Login {
                id,
                user_id: user_id.clone(),
                method: self.view.auth_method.clone(),
            }),
            (None, Some(user_id)) => self.events.push(SessionEvent::Logout { id, user_id }),
            (None, None) => {}
        }
    }

    pub(super) fn clear_data(&mut self) {
        self.view.data.clear();
        self.dirty.clear();
        self.cleared = true;
    }

    /// Signs `login` in at `now` (already validated): values kept unless the
    /// user changes, a fresh token.
    pub(super) fn sign_in(
        &mut self,
        login: super::Login,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), SessionError> {
        if self
            .view
            .user_id
            .as_ref()
            .is_some_and(|current| current != login.user_id())
        {
            self.clear_data();
        }
        login.apply_to(&mut self.view, now);
        self.identity_changed = true;
        self.rotate()
    }

    pub(super) fn rotate(&mut self) -> Result<(), SessionError> {
        let token = SessionToken::generate().map_err(|_| SessionError::Randomness)?;
        self.view.token_hash = token.hash();
        self.new_token = Some(token);
        Ok(())
    }

    pub(super) fn is_changed(&self) -> bool {
        let stored_data = self.stored.as_ref().map(|r| &r.fields.data);
        !self.dirty.is_empty()
            || (self.cleared && stored_data.is_some_and(|d| !d.is_empty()))
            || self.identity_changed
            || self.persistent_changed
            || self.credential_changed
            || self.new_token.is_some()
    }

    /// Makes `fresh` (a newer version of the row) the base, and replays this
    /// request's changes on it.
    pub(super) fn rebase(&mut self, fresh: SessionRecord) {
        let mut view = fresh.fields.clone();
        if self.cleared {
            view.data = std::mem::take(&mut self.view.data);
        } else {
            for key in &self.dirty {
                match self.view.data.get(key) {
                    Some(value) => view.data.insert(key.clone(), value.clone()),
                    None => view.data.remove(key),
                };
            }
        }
        if self.identity_changed {
            view.user_id = self.view.user_id.take();
            view.auth_method = self.view.auth_method.take();
            view.authenticated_at = self.view.authenticated_at;
            view.is_api = self.view.is_api;
            view.auth_version = self.view.auth_version;
            view.credential = self.view.credential.take();
        }
        if self.reauthenticated && !self.identity_changed {
            view.auth_method = self.view.auth_method.take();
            view.authenticated_at = self.view.authenticated_at;
        }
        if self.credential_changed && !self.identity_changed {
            view.credential = self.view.credential.take();
        }
        if self.persistent_changed {
            view.persistent = self.view.persistent;
        }
        if self.new_token.is_some() {
            view.token_hash = self.view.token_hash;
        }
        self.view = view;
        self.stored = Some(fresh);
    }
}
