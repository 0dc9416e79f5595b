//! Fixtures for the connection suite: one pool shared by the session store
//! and the `CnxLayer` (so that session writes join the request's
//! transaction), a fresh session table and two application tables per
//! test, `<table>_notes (owner, body)` and `<table>_audit (what)`.

use std::str::FromStr;
use std::time::Duration;

use keycard::store::TableName;

use super::stores::{DropTables, init_logs, unique_table, url_from_env};

/// A pool, the session store on it, and the tables' common name.
pub struct Fixture<DB: sqlx::Database> {
    pub pool: sqlx::Pool<DB>,
    pub store: keycard::store::SqlStore<DB>,
    pub table: TableName,
    _cleanup: Box<dyn std::any::Any + Send + Sync>,
}

impl<DB: sqlx::Database> Fixture<DB> {
    /// `text` with `{t}` replaced by the table name and, on PostgreSQL,
    /// `?` placeholders numbered `$1, $2, …`.
    pub fn sql(&self, text: &str) -> sqlx::AssertSqlSafe<String> {
        let text = text.replace("{t}", self.table.as_str());
        if DB::NAME != "PostgreSQL" {
            return sqlx::AssertSqlSafe(text);
        }
        let mut out = String::new();
        let mut n = 0;
        for c in text.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        sqlx::AssertSqlSafe(out)
    }
}

const APP_TABLES: &str = "CREATE TABLE {t}_notes (owner VARCHAR(64) NOT NULL, body VARCHAR(255) NOT NULL); \
     CREATE TABLE {t}_audit (what VARCHAR(255) NOT NULL)";

async fn create_app_tables<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, table: &TableName)
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
{
    let sql = APP_TABLES.replace("{t}", table.as_str());
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .expect("create the application tables");
}

/// A fresh SQLite file, with a pool of `size` connections.
#[cfg(feature = "sqlite")]
pub async fn sqlite(size: u32) -> Option<Fixture<sqlx::Sqlite>> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    init_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let options = SqliteConnectOptions::from_str(&url)
        .expect("url")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .expect("open SQLite");
    let table = TableName::default();
    let store = keycard::SqliteStore::with_table_name(pool.clone(), table.clone());
    store.migrate().await.expect("migrate");
    create_app_tables(&pool, &table).await;
    Some(Fixture {
        pool,
        store,
        table,
        _cleanup: Box::new(dir),
    })
}

macro_rules! server_fixture {
    ($name:ident, $feature:literal, $var:literal, $db:ty, $options:ty, $store:ty) => {
        #[cfg(feature = $feature)]
        pub async fn $name(size: u32) -> Option<Fixture<$db>> {
            init_logs();
            let url = url_from_env($var)?;
            let pool = <$options>::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(10))
                .connect(&url)
                .await
                .expect(concat!("connect to ", $var));
            let table = unique_table();
            let store = <$store>::with_table_name(pool.clone(), table.clone());
            store.migrate().await.expect("migrate");
            create_app_tables(&pool, &table).await;
            // The test's runtime is gone by then, and with it the sockets of
            // the test's pool: the cleanup opens a connection of its own.
            let name = table.clone();
            let drop = move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let sql = format!(
                        "{}, {name}_notes, {name}_audit",
                        $crate::common::stores::drop_tables_sql(name.as_str())
                    );
                    if let Ok(cleanup) = <$options>::new().max_connections(1).connect(&url).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(&cleanup)
                            .await;
                        cleanup.close().await;
                    }
                })
            };
            Some(Fixture {
                pool,
                store,
                table,
                _cleanup: Box::new(DropTables {
                    drop: Some(Box::new(drop)),
                }),
            })
        }
    };
}

server_fixture!(
    postgres,
    "postgres",
    "KEYCARD_TEST_POSTGRES_URL",
    sqlx::Postgres,
    sqlx::postgres::PgPoolOptions,
    keycard::store::PostgresStore
);
server_fixture!(
    mysql,
    "mysql",
    "KEYCARD_TEST_MYSQL_URL",
    sqlx::MySql,
    sqlx::mysql::MySqlPoolOptions,
    keycard::store::MySqlStore
);
