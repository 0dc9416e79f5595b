//! The migrations every SQL store applies, and the bookkeeping they share.
//!
//! Migration files live in `migrations/<backend>/` and are compiled in. They
//! use `{table}` where the validated table name goes, so one database can hold
//! several session tables (one per app, or one per test). Applied versions are
//! recorded in `<table>_migrations`.

use super::TableName;

/// One migration file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    /// Applied in ascending order; recorded once applied.
    pub(crate) version: i64,
    /// The file's SQL, with `{table}` placeholders.
    pub(crate) sql: &'static str,
}

impl Migration {
    /// The SQL with the table name in place.
    pub(crate) fn render(&self, table: &TableName) -> String {
        self.sql.replace("{table}", table.as_str())
    }
}

/// A backend's migrations, oldest first: the files of
/// `migrations/<backend>/`, compiled in.
macro_rules! migrations {
    ($backend:literal) => {
        &[
            Migration {
                version: 1,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0001_create_sessions.sql"
                )),
            },
            Migration {
                version: 2,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0002_auth_version.sql"
                )),
            },
            Migration {
                version: 3,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0003_users_and_api_tokens.sql"
                )),
            },
            Migration {
                version: 4,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0004_credentials.sql"
                )),
            },
        ]
    };
}

/// The SQLite migrations.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[Migration] = migrations!("sqlite");

/// The PostgreSQL migrations.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[Migration] = migrations!("postgres");

/// The MySQL/MariaDB migrations.
#[cfg(feature = "mysql")]
pub(crate) const MYSQL: &[Migration] = migrations!("mysql");

/// A stable 64-bit key for a table's migration lock (PostgreSQL advisory
/// locks take a number): FNV-1a of the table name.
#[cfg(feature = "postgres")]
pub(crate) fn lock_key(table: &TableName) -> i64 {
    let hash = table
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Applies the migrations of `DB` that `store`'s table has not had yet,
/// under the backend's migration lock, so that app servers starting
/// together apply each file once. The one runner of every backend.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) async fn run<DB: super::sql::SqlBackend>(
    store: &super::SqlStore<DB>,
) -> Result<(), super::StoreError> {
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
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
struct Migrating<DB: sqlx::Database> {
    conn: sqlx::pool::PoolConnection<DB>,
    released: bool,
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
impl<DB: sqlx::Database> Drop for Migrating<DB> {
    fn drop(&mut self) {
        if !self.released {
            self.conn.close_on_drop();
        }
    }
}

/// The files not applied yet, each recorded once applied.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
async fn apply<DB: super::sql::SqlBackend>(
    conn: &mut DB::Connection,
    table: &TableName,
) -> Result<(), super::StoreError> {
    use super::sql::Arg;
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
        let failed = |source| super::StoreError::Migration {
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
