//! SQLite's change counter for the store's read cache: `PRAGMA
//! data_version` on a connection of its own.
//!
//! The pragma's value changes whenever another connection committed since
//! this connection last asked, whether that connection is one of this
//! store's pool or another process's (`keycard-admin`, the `sqlite3` shell,
//! a second app server on the same file). Asking costs a few microseconds
//! and no lock. An in-memory database has no other process and no file to
//! watch: there the counter answers `None` and the store does not cache.

use async_trait::async_trait;
use sqlx::{ConnectOptions, Connection, SqliteConnection, SqlitePool};

use super::StoreError;
use super::sql::read_cache::ChangeCounter;

/// `PRAGMA data_version` of the database behind a pool, on a connection
/// that is not the pool's (a pooled connection's own commits would not move
/// its counter).
#[derive(Debug)]
pub(crate) struct DataVersion {
    pool: SqlitePool,
    conn: tokio::sync::Mutex<Option<SqliteConnection>>,
}

impl DataVersion {
    pub(crate) fn new(pool: &SqlitePool) -> Self {
        Self {
            pool: pool.clone(),
            conn: tokio::sync::Mutex::new(None),
        }
    }
}

/// The name of the main database's file; empty for an in-memory or
/// temporary database.
const MAIN_FILE_SQL: &str = "SELECT file FROM pragma_database_list WHERE name = 'main'";

#[async_trait]
impl ChangeCounter for DataVersion {
    async fn look(&self) -> Result<Option<i64>, StoreError> {
        // A closed pool means the store is closed: no more hits either.
        if self.pool.is_closed() {
            return Err(sqlx::Error::PoolClosed.into());
        }
        let mut conn = self.conn.lock().await;
        let fresh = conn.is_none();
        if fresh {
            *conn = Some(self.pool.connect_options().connect().await?);
        }
        let Some(open) = conn.as_mut() else {
            return Ok(None);
        };
        if fresh {
            let file: Option<String> = sqlx::query_scalar(MAIN_FILE_SQL)
                .fetch_optional(&mut *open)
                .await?;
            if file.is_none_or(|file| file.is_empty()) {
                if let Some(open) = conn.take() {
                    let _ = open.close().await;
                }
                return Ok(None);
            }
        }
        match sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(&mut *open)
            .await
        {
            Ok(version) => Ok(Some(version)),
            Err(error) => {
                // Open a new connection next time rather than trust this one.
                *conn = None;
                Err(error.into())
            }
        }
    }
}
