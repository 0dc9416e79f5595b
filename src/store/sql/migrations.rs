//! The one migration runner: the files of `migrations/<backend>/`
//! (`store/migrate.rs`) applied in order under the backend's migration
//! lock, each recorded in `<table>_migrations` once applied.

use super::SqlStore;
use super::backend::{Arg, SqlBackend};
use crate::store::{StoreError, TableName};

/// Applies the migrations of `DB` that `store`'s table has not had yet,
/// under the backend's migration lock, so that app servers starting
/// together apply each file once. The one runner of every backend.
pub(crate) async fn run<DB: SqlBackend>(store: &SqlStore<DB>) -> Result<(), StoreError> {
    let mut conn = Migrating {
        conn: store.pool.acquire().await?,
        released: false,
    };
    DB::lock_migrations(&mut conn.conn, &store.table).await?;
    let applied = apply::<DB>(&mut conn.conn, &store.table).await;
    let released = DB::unlock_migrations(&mut conn.conn, &store.table, applied.is_ok()).await;
    conn.released = released.is_ok();
    applied?;
    released?;
    Ok(())
}

/// The connection of a migration run. Dropped before the lock was released
/// (an error, a cancelled start-up), it may still hold the lock or an open
/// transaction, so it is closed rather than given back to the pool.
struct Migrating<DB: sqlx::Database> {
    conn: sqlx::pool::PoolConnection<DB>,
    released: bool,
}

impl<DB: sqlx::Database> Drop for Migrating<DB> {
    fn drop(&mut self) {
        if !self.released {
            self.conn.close_on_drop();
        }
    }
}

/// The files not applied yet, each recorded once applied.
async fn apply<DB: SqlBackend>(
    conn: &mut DB::Connection,
    table: &TableName,
) -> Result<(), StoreError> {
    let book = |text: &str| {
        let text = text.replace("{book}", &format!("{table}_migrations"));
        sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(text))
    };
    let (create, find, record) = (
        book(DB::MIGRATION_BOOK.create_book),
        book(DB::MIGRATION_BOOK.find_version),
        book(DB::MIGRATION_BOOK.record_version),
    );
    DB::execute_script(conn, create).await?;
    for migration in DB::MIGRATIONS {
        let failed = |source| StoreError::Migration {
            version: migration.version,
            source,
        };
        let version = Arg::Int(migration.version);
        let done = DB::fetch_optional(conn, DB::query(&find, &[version]))
            .await
            .map_err(failed)?;
        if done.is_some() {
            continue;
        }
        let script = sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(migration.render(table)));
        DB::execute_script(conn, script).await.map_err(failed)?;
        let now = Arg::Time(Some(chrono::Utc::now()));
        DB::execute(conn, DB::query(&record, &[version, now]))
            .await
            .map_err(failed)?;
    }
    Ok(())
}
