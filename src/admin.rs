//! [`SessionAdmin`]: session housekeeping and per-user control outside a
//! request: count, list, end, purge, and a background purge task.
//!
//! ```
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use keycard::{SessionLayer, SqliteStore};
//!
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let layer = SessionLayer::new(store);
//! let admin = layer.admin();
//!
//! // An account was disabled: end all of its sessions, on every app server.
//! admin.end_sessions_of("mallory", None).await?;
//! // The layer purges expired rows in the background by default; an
//! // application that turned that off (`no_background_purge`) can run its
//! // own task, which stops when `purge` is shut down or dropped.
//! let purge = admin.spawn_purge_task(Duration::from_secs(600));
//! # purge.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::EndReason;
use crate::SessionError;
use crate::session::SessionContext;
use crate::session::SessionInfo;
use crate::session::lifecycle;
use crate::store::UserSessions;
use crate::token::SessionId;

/// Housekeeping and per-user control of the sessions of one
/// [`SessionLayer`](crate::SessionLayer), with its store, timeouts and clock.
/// Get one with [`SessionLayer::admin`](crate::SessionLayer::admin).
#[derive(Clone, Debug)]
pub struct SessionAdmin {
    pub(crate) ctx: Arc<SessionContext>,
}

impl SessionAdmin {
    /// The user's active sessions, most recently used first. No token or
    /// hash is included.
    pub async fn list(&self, user_id: &str) -> Result<Vec<SessionInfo>, SessionError> {
        let records = self.ctx.store.list_for_user(user_id).await?;
        Ok(SessionInfo::active(
            records,
            &self.ctx.config,
            self.ctx.now(),
            None,
        ))
    }

    /// Ends one session. Returns whether it existed.
    pub async fn end(&self, id: SessionId) -> Result<bool, SessionError> {
        let ended = self.ctx.store.delete(id).await?;
        self.ctx.live.poke();
        Ok(ended)
    }

    /// Ends the user's sessions, all of them (account disabled) or all but
    /// `except` (credential change seen from the user's own session). Every
    /// app server sees it on its next request. Returns how many ended.
    pub async fn end_sessions_of(
        &self,
        user_id: &str,
        except: Option<SessionId>,
    ) -> Result<u64, SessionError> {
        let which = except.map_or(UserSessions::All, UserSessions::AllExcept);
        let ended = self.ctx.store.delete_for_user(user_id, which).await?;
        self.ctx.live.poke();
        tracing::info!(ended, "keycard: sessions of a user ended");
        lifecycle::sessions_ended(Some(user_id.to_owned()), ended, EndReason::Admin).await?;
        Ok(ended)
    }

    /// Ends the user's sessions that `credential` signed in
    /// ([`Login::credential`](crate::Login::credential)): what revoking an
    /// API token does. Through this layer's store, so a
    /// [`CachedStore`](crate::store::CachedStore) forgets them at once (and,
    /// on PostgreSQL with notifications, every other app server's cache
    /// too). Returns how many ended.
    pub async fn end_sessions_signed_in_by(
        &self,
        user_id: &str,
        credential: &str,
    ) -> Result<u64, SessionError> {
        let records = self.ctx.store.list_for_user(user_id).await?;
        let mut ended = 0;
        for record in records
            .iter()
            .filter(|r| r.fields.credential.as_deref() == Some(credential))
        {
            let only = UserSessions::Only(record.id);
            ended += self.ctx.store.delete_for_user(user_id, only).await?;
        }
        self.ctx.live.poke();
        if ended > 0 {
            tracing::info!(ended, "keycard: sessions of a revoked credential ended");
        }
        lifecycle::sessions_ended(Some(user_id.to_owned()), ended, EndReason::Admin).await?;
        Ok(ended)
    }

    /// Ends every session of every user: everybody signs in again. Returns
    /// how many ended.
    pub async fn end_all(&self) -> Result<u64, SessionError> {
        let ended = self.ctx.store.delete_all().await?;
        self.ctx.live.poke();
        tracing::info!(ended, "keycard: every session ended by an administrator");
        lifecycle::sessions_ended(None, ended, EndReason::Admin).await?;
        Ok(ended)
    }

    /// How many sessions were used at or after `since`.
    pub async fn count_active_since(&self, since: DateTime<Utc>) -> Result<u64, SessionError> {
        Ok(self.ctx.store.count_active_since(since).await?)
    }

    /// Deletes every expired session, in batches of
    /// [`purge_batch_size`](crate::SessionLayer::purge_batch_size) rows so
    /// that no statement holds the table for long, and returns how many it
    /// deleted. Expired sessions are refused whether or not this has run:
    /// purging only reclaims space.
    pub async fn purge_expired(&self) -> Result<u64, SessionError> {
        let batch = self.ctx.config.purge_batch_size;
        let mut purged = 0;
        loop {
            let cutoffs = crate::store::ExpiryCutoffs::at(&self.ctx.config, self.ctx.now());
            let deleted = self.ctx.store.delete_expired(cutoffs, batch).await?;
            lifecycle::sessions_ended(None, deleted, EndReason::Purge).await?;
            purged += deleted;
            if deleted < u64::from(batch) {
                return Ok(purged);
            }
            // Let requests waiting on the same pool in between batches.
            tokio::task::yield_now().await;
        }
    }

    /// Runs [`purge_expired`](Self::purge_expired) now and then every
    /// `every`, on the current tokio runtime. The layer already purges in
    /// the background unless told not to
    /// ([`SessionLayer::no_background_purge`](crate::SessionLayer::no_background_purge)); this is
    /// for applications that want the task in their own hands. A failed purge is logged and
    /// retried at the next tick: the task never dies of a database error.
    /// It stops when the returned handle is shut down or dropped.
    pub fn spawn_purge_task(&self, every: Duration) -> PurgeTask {
        let admin = self.clone();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = ticks.tick() => match admin.purge_expired().await {
                        Ok(0) => {}
                        Ok(purged) => tracing::info!(purged, "keycard: expired sessions purged"),
                        Err(error) => tracing::warn!(%error, "keycard: purge failed; retrying at the next tick"),
                    },
                }
            }
        });
        PurgeTask {
            stop: Some(stop),
            handle,
        }
    }
}

/// The handle of [`SessionAdmin::spawn_purge_task`]. Dropping it stops the
/// task too, without waiting for it.
#[derive(Debug)]
pub struct PurgeTask {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl PurgeTask {
    /// Stops the task and waits until it has stopped (a purge under way is
    /// finished first). Call it on shutdown.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.handle).await;
    }

    /// Whether the task has stopped.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}
