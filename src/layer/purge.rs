//! The background purge every layer runs unless told not to. Requests
//! check whether one is due (a clock read and an atomic load), and the one
//! that finds it due spawns it: no timer is pending between purges, no task
//! outlives the layer, and a layer built before any runtime exists needs
//! none until its first request.

use std::sync::Arc;
use std::time::Duration;

use super::SessionContext;

/// Starts a purge of `ctx`'s store on the current runtime if one is due.
pub(crate) fn start_if_due(ctx: &Arc<SessionContext>, every: Duration) {
    if !ctx.background_purge.due(every) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        ctx.background_purge.finished();
        return;
    };
    let admin = crate::SessionAdmin { ctx: ctx.clone() };
    runtime.spawn(async move {
        match admin.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "keycard: expired sessions purged"),
            Err(error) => {
                tracing::warn!(%error, "keycard: purge failed; trying again at the next interval");
            }
        }
        admin.ctx.background_purge.finished();
    });
}
