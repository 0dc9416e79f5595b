//! Cross-server cache invalidation on PostgreSQL: a trigger that notifies
//! every change of a session row, and the listener that evicts it from
//! [`CachedStore`]s.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgListener;

use super::cache::{Cache, CachedStore};
use super::{PostgresStore, StoreError};
use crate::token::SessionId;

/// The trigger; `{table}` is the validated table name. Installed with
/// `CREATE OR REPLACE`, so enabling twice is harmless.
const TRIGGER_SQL: &str = "
CREATE OR REPLACE FUNCTION {table}_notify_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{table}_changes', OLD.id::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER {table}_notify_change
    AFTER UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {table}_notify_change();
";

impl PostgresStore {
    /// Makes PostgreSQL announce every update and delete of a session row
    /// on the channel [`changes_channel`](Self::changes_channel), for
    /// [`CachedStore::listen`] on every app server. Costs each write one
    /// queued notification; call it once (at start-up, after
    /// [`migrate`](Self::migrate)) on deployments that cache.
    pub async fn enable_change_notifications(&self) -> Result<(), StoreError> {
        let sql = TRIGGER_SQL.replace("{table}", self.table_name().as_str());
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The channel of [`enable_change_notifications`](Self::enable_change_notifications).
    pub fn changes_channel(&self) -> String {
        format!("{}_changes", self.table_name())
    }
}

impl CachedStore<PostgresStore> {
    /// Evicts every session that another app server changes, as PostgreSQL
    /// announces it (see [`PostgresStore::enable_change_notifications`]).
    /// Listening starts before this returns; the listener stops when the
    /// cache is dropped. It holds one connection of the store's pool. If
    /// that connection drops, notifications may be missed: the cache is
    /// emptied and caches nothing (every read goes to the database) until a
    /// new connection listens, retried every second, and then starts again
    /// from empty.
    pub async fn listen(self) -> Result<Self, StoreError> {
        let pool = self.inner().pool().clone();
        let channel = self.inner().changes_channel();
        let listener = listen_on(&pool, &channel).await?;
        let cache = Arc::downgrade(self.cache());
        tokio::spawn(run_listener(listener, pool, channel, cache));
        Ok(self)
    }
}

/// A listener on `channel`, listening when this returns.
async fn listen_on(pool: &sqlx::PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

async fn run_listener(
    mut listener: PgListener,
    pool: sqlx::PgPool,
    channel: String,
    cache: Weak<Cache>,
) {
    loop {
        let received = listener.try_recv().await;
        let Some(live) = cache.upgrade() else {
            return;
        };
        match received {
            Ok(Some(notification)) => {
                match notification
                    .payload()
                    .parse::<i64>()
                    .ok()
                    .and_then(SessionId::new)
                {
                    Some(id) => live.invalidate(id),
                    None => live.clear(),
                }
                continue;
            }
            Ok(None) => {
                tracing::warn!("keycard: change notifications interrupted; caching suspended");
            }
            Err(error) => {
                tracing::warn!(%error, "keycard: change notifications failed; caching suspended");
            }
        }
        // Until a new connection listens, other servers' changes go
        // unheard: cache nothing, and start from empty once it does.
        live.suspend();
        drop(live);
        listener = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if cache.strong_count() == 0 {
                return;
            }
            match listen_on(&pool, &channel).await {
                Ok(listener) => break listener,
                Err(error) => {
                    tracing::warn!(%error, "keycard: change notifications still unavailable");
                }
            }
        };
        if let Some(live) = cache.upgrade() {
            live.resume();
            tracing::info!("keycard: change notifications back; caching resumed");
        }
    }
}
