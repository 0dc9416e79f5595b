//! [`SessionContext`]: what every request's session shares, set up by
//! [`SessionLayer`](crate::SessionLayer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Whether the layer's background purge was started.
    pub(crate) background_purge: StartFlag,
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

/// A once-only switch that a reconfigured (cloned) context starts afresh.
#[derive(Debug, Default)]
pub(crate) struct StartFlag(AtomicBool);

impl Clone for StartFlag {
    /// A reconfigured layer is a new layer: what it starts starts anew.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl StartFlag {
    /// `true` the first time only.
    pub(crate) fn first(&self) -> bool {
        !self.0.load(Ordering::Relaxed) && !self.0.swap(true, Ordering::AcqRel)
    }

    /// Lets the next [`first`](Self::first) say `true` again.
    pub(crate) fn reset(&self) {
        self.0.store(false, Ordering::Release);
    }
}
