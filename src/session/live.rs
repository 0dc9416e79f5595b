//! Live connections told when their session ends: [`Session::ended`] and
//! the [`SessionEnded`] future it returns. A WebSocket or a server-sent
//! event stream outlives the request that opened it, so nothing in the
//! request's way notices a logout, a revocation or an expiry: the layer
//! keeps the sessions being watched and checks them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::{Session, SessionContext, ready_mut};
use crate::SessionError;
use crate::store::SessionRecord;
use crate::token::SessionId;

/// Why a watched session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveEnd {
    /// Its row is gone: signed out, revoked, ended by "sign out
    /// everywhere", an administrator or the per-user limit.
    Ended,
    /// Its user changed or signed out while the session lived on.
    SignedOut,
    /// It reached its idle or absolute timeout.
    Expired,
    /// The layer that watched it is gone (the server is shutting down).
    Closed,
}

/// The default time between two checks of the watched sessions.
pub(crate) const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The sessions a layer watches.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    watched: Mutex<HashMap<SessionId, Watched>>,
    /// Wakes the checker early (a session ended in this process).
    poke: Notify,
    running: AtomicBool,
    next_key: AtomicU64,
}

#[derive(Debug)]
struct Watched {
    /// The user the session had when watching began.
    user: Option<String>,
    senders: Vec<(u64, oneshot::Sender<LiveEnd>)>,
}

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Watched>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks the watched sessions now rather than at the next interval.
    pub(crate) fn poke(&self) {
        if self.running.load(Ordering::Acquire) {
            self.poke.notify_one();
        }
    }

    fn forget(&self, id: SessionId, key: u64) {
        let mut watched = self.lock();
        if let Some(entry) = watched.get_mut(&id) {
            entry.senders.retain(|(k, _)| *k != key);
            if entry.senders.is_empty() {
                watched.remove(&id);
            }
        }
    }

    /// Ends the watchers of `id` with `why`.
    fn end(&self, id: SessionId, why: LiveEnd) {
        if let Some(entry) = self.lock().remove(&id) {
            for (_, sender) in entry.senders {
                let _ = sender.send(why);
            }
        }
    }
}

/// Resolves when the session it watches ends (see [`Session::ended`]).
/// `'static` and `Send`: move it into the task or stream that serves a
/// long-lived connection, and stop when it resolves. Dropping it stops
/// the watching.
#[must_use = "a watch does nothing unless awaited"]
pub struct SessionEnded {
    receiver: oneshot::Receiver<LiveEnd>,
    watchers: Arc<Watchers>,
    /// `None` for a session that was never stored (ended at once).
    id: Option<SessionId>,
    key: u64,
}

impl std::fmt::Debug for SessionEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEnded")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Future for SessionEnded {
    type Output = LiveEnd;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LiveEnd> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|ended| ended.unwrap_or(LiveEnd::Closed))
    }
}

impl Drop for SessionEnded {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.watchers.forget(id, self.key);
        }
    }
}

impl Session {
    /// A future that resolves when this session ends: signed out,
    /// revoked, ended from another device, by "sign out everywhere", by the
    /// per-user limit or by an administrator, on any app server sharing the
    /// store, or expired. For a WebSocket or server-sent events handler,
    /// which must stop serving a user who is no longer signed in.
    ///
    /// While any session is watched, one task per layer checks them all,
    /// in one batched read, every
    /// [`live_check_interval`](crate::SessionLayer::live_check_interval)
    /// (default 500 ms), and at once after a session ends in this process;
    /// nothing runs while nobody watches. With a
    /// [`CachedStore`](crate::store::CachedStore), changes made by other
    /// app servers are seen only where the cache hears of them (PostgreSQL
    /// change notifications).
    ///
    /// Fails with [`SessionError::RequestOnly`] for a request signed in
    /// for itself only, and resolves at once ([`LiveEnd::Ended`]) for a
    /// session that is not stored (nothing to watch).
    ///
    /// ```
    /// use std::time::Duration;
    /// use keycard::Session;
    ///
    /// async fn ticks(session: Session) -> Result<String, keycard::Error> {
    ///     let ended = session.ended().await?;
    ///     tokio::pin!(ended);
    ///     let mut sent = 0;
    ///     loop {
    ///         tokio::select! {
    ///             why = &mut ended => return Ok(format!("stopped after {sent}: {why:?}")),
    ///             _ = tokio::time::sleep(Duration::from_millis(100)) => sent += 1,
    ///         }
    /// #       if sent == 1 { return Ok(String::new()) }
    ///     }
    /// }
    /// ```
    pub async fn ended(&self) -> Result<SessionEnded, SessionError> {
        if self.is_request_only() {
            return Err(SessionError::RequestOnly);
        }
        let (id, user) = {
            let mut state = self.ready().await?;
            let w = ready_mut(&mut state)?;
            (w.stored.as_ref().map(|r| r.id), w.view.user_id.clone())
        };
        let ctx = &self.0.ctx;
        let watchers = ctx.live.clone();
        let key = watchers.next_key.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        let ended = |receiver| SessionEnded {
            receiver,
            watchers: watchers.clone(),
            id,
            key,
        };
        let Some(id) = id else {
            let _ = sender.send(LiveEnd::Ended);
            return Ok(ended(receiver));
        };
        watchers
            .lock()
            .entry(id)
            .or_insert_with(|| Watched {
                user,
                senders: Vec::new(),
            })
            .senders
            .push((key, sender));
        if !watchers.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(check_until_idle(ctx.clone()));
        }
        Ok(ended(receiver))
    }
}

/// Checks the watched sessions every interval (or when poked) until none
/// is watched.
async fn check_until_idle(ctx: Arc<SessionContext>) {
    let watchers = ctx.live.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(ctx.config.live_check_interval) => {}
            () = watchers.poke.notified() => {}
        }
        let ids: Vec<(SessionId, Option<String>)> = watchers
            .lock()
            .iter()
            .map(|(id, w)| (*id, w.user.clone()))
            .collect();
        if ids.is_empty() {
            watchers.running.store(false, Ordering::Release);
            // A watch that came in between saw `running` still set.
            if watchers.lock().is_empty() || watchers.running.swap(true, Ordering::AcqRel) {
                return;
            }
            continue;
        }
        // Concurrent reads of different sessions share one statement.
        let mut reads = tokio::task::JoinSet::new();
        for (id, user) in ids {
            let store = ctx.store.clone();
            reads.spawn(async move { (id, user, store.load(id).await) });
        }
        let now = ctx.now();
        while let Some(done) = reads.join_next().await {
            let Ok((id, user, loaded)) = done else {
                continue;
            };
            let verdict = match loaded {
                Ok(record) => judge(&ctx, record.as_ref(), user.as_deref(), now),
                // The store is away: judge again at the next check rather
                // than end a live connection on a blip.
                Err(error) => {
                    tracing::warn!(%error, "keycard: checking a watched session failed");
                    None
                }
            };
            if let Some(why) = verdict {
                watchers.end(id, why);
            }
        }
    }
}

/// Whether, and why, a watched session has ended.
fn judge(
    ctx: &SessionContext,
    record: Option<&SessionRecord>,
    user: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<LiveEnd> {
    let Some(record) = record else {
        return Some(LiveEnd::Ended);
    };
    let f = &record.fields;
    if f.user_id.as_deref() != user {
        return Some(LiveEnd::SignedOut);
    }
    let (idle, absolute) = ctx.config.timeouts(f.persistent);
    if now - f.last_activity > idle || now - f.created_at > absolute {
        return Some(LiveEnd::Expired);
    }
    None
}
