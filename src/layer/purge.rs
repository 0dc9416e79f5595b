//! The background purge every layer runs unless told not to: started by the
//! first request (a constructor has no runtime to spawn on), stopped when
//! the layer and its services are gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::SessionContext;

/// Whether this layer's purge task was started.
#[derive(Debug, Default)]
pub(crate) struct BackgroundPurge {
    started: AtomicBool,
}

impl Clone for BackgroundPurge {
    /// A reconfigured layer is a new layer: its task starts anew.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl BackgroundPurge {
    /// Starts the task on the current runtime, once.
    pub(crate) fn start(&self, ctx: &Arc<SessionContext>, every: Duration) {
        if self.started.load(Ordering::Relaxed) || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.started.store(false, Ordering::Release);
            return;
        };
        // Weak: the task must not keep the layer alive.
        let ctx = Arc::downgrade(ctx);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(ctx) = ctx.upgrade() else {
                    return;
                };
                let admin = crate::SessionAdmin { ctx };
                match admin.purge_expired().await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "keycard: expired sessions purged"),
                    Err(error) => {
                        tracing::warn!(%error, "keycard: purge failed; retrying at the next tick");
                    }
                }
            }
        });
    }
}
