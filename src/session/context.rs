//! [`SessionContext`]: what every request's session shares, set up by
//! [`SessionLayer`](crate::SessionLayer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::AuthVersions;
use crate::clock::Clock;
use crate::config::SessionConfig;
use crate::store::SessionStore;

/// What every request's session shares: the store, the settings, the clock.
#[derive(Clone, Debug)]
pub(crate) struct SessionContext {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) config: SessionConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) auth_versions: Option<Arc<dyn AuthVersions>>,
    /// When the layer's next background purge is due.
    pub(crate) background_purge: PurgeSchedule,
    /// The sessions live connections watch.
    pub(crate) live: Arc<super::live::Watchers>,
    /// Where concurrent updates of one session on this server meet.
    pub(crate) combiner: Arc<super::combine::Combiner>,
}

impl SessionContext {
    /// The new `last_activity` of a session last active at `last`, if it is
    /// due (at most once per touch interval); `None` to leave it.
    pub(crate) fn renewal(
        &self,
        last: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        (now - last >= self.config.touch_interval()).then_some(now)
    }
}

/// When the layer's next background purge is due: checked by each request
/// (one clock read), so no timer is pending between purges and nothing
/// runs once the layer is gone.
#[derive(Debug)]
pub(crate) struct PurgeSchedule {
    /// What the due times count from.
    origin: Instant,
    /// Milliseconds after `origin` when the next purge is due; 0 until the
    /// first request sets it one interval ahead.
    due_ms: AtomicU64,
    /// A purge is running: the next waits for it.
    running: AtomicBool,
}

impl Default for PurgeSchedule {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            due_ms: AtomicU64::new(0),
            running: AtomicBool::new(false),
        }
    }
}

impl Clone for PurgeSchedule {
    /// A reconfigured layer is a new layer: its schedule starts anew.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PurgeSchedule {
    /// Whether a purge is due now, every `every`: `true` at most once per
    /// interval, and never while one runs. The first call only sets the
    /// first due time, one interval ahead.
    pub(crate) fn due(&self, every: Duration) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let every = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        let due = self.due_ms.load(Ordering::Relaxed);
        if due == 0 {
            let _ = self.due_ms.compare_exchange(
                0,
                now.saturating_add(every).max(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            return false;
        }
        if now < due || self.running.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.due_ms
            .store(now.saturating_add(every).max(1), Ordering::Release);
        true
    }

    /// The purge that [`due`](Self::due) allowed has ended.
    pub(crate) fn finished(&self) {
        self.running.store(false, Ordering::Release);
    }
}
