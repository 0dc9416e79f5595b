//! The background purge every layer runs unless told not to: started by the
//! first request (a constructor has no runtime to spawn on), stopped when
//! the layer and its services are gone.

use std::sync::Arc;
use std::time::Duration;

use super::SessionContext;

/// Starts the purge task of `ctx`'s layer on the current runtime, once.
pub(crate) fn start(ctx: &Arc<SessionContext>, every: Duration) {
    if !ctx.background_purge.first() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        ctx.background_purge.reset();
        return;
    };
    // Weak: the task must not keep the layer alive.
    let weak = Arc::downgrade(ctx);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(ctx) = weak.upgrade() else {
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
