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
    /// cache is dropped. If the listening connection drops, the whole cache
    /// is cleared, since notifications may have been missed meanwhile.
    pub async fn listen(self) -> Result<Self, StoreError> {
        let mut listener = PgListener::connect_with(self.inner().pool()).await?;
        listener.listen(&self.inner().changes_channel()).await?;
        let cache = Arc::downgrade(self.cache());
        tokio::spawn(run_listener(listener, cache));
        Ok(self)
    }
}

async fn run_listener(mut listener: PgListener, cache: Weak<Cache>) {
    loop {
        let received = listener.try_recv().await;
        let Some(cache) = cache.upgrade() else {
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
                    Some(id) => cache.invalidate(id),
                    None => cache.clear(),
                }
            }
            Ok(None) => {
                tracing::warn!("keycard: change notifications interrupted; cache cleared");
                cache.clear();
            }
            Err(error) => {
                tracing::warn!(%error, "keycard: change notifications failed; cache cleared");
                cache.clear();
                drop(cache);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
