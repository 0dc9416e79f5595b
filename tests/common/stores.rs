//! One factory per store: each test gets its own database file (SQLite) or
//! its own table (PostgreSQL, MySQL), so tests run in parallel. Without
//! their URL variable (and outside CI), the PostgreSQL and MySQL tests are
//! built as ignored (`build.rs` sets `keycard_no_postgres_url` /
//! `keycard_no_mysql_url`), so the count says what ran; under CI a missing
//! URL fails the test: CI must never skip a store silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use keycard::SqliteStore;

use keycard::store::SessionStore;

use super::{TestStore, TwinFactory};

/// Prints keycard's logs when `KEYCARD_TEST_LOG` holds a filter (e.g.
/// `keycard=debug`), to see why a test failed.
pub fn init_logs() {
    if let Ok(filter) = std::env::var("KEYCARD_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_test_writer()
            .try_init();
    }
}

/// A fresh SQLite file in a temporary directory.
pub async fn sqlite() -> Option<TestStore> {
    init_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let store = SqliteStore::connect(&url).await.expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    let raw = raw_sql(store.pool().clone(), store.table_name().as_str());
    let twin: TwinFactory = Arc::new(move || {
        let url = url.clone();
        Box::pin(async move {
            let store = SqliteStore::connect(&url).await.expect("open SQLite");
            Arc::new(store) as Arc<dyn SessionStore>
        })
    });
    Some(TestStore::new(Arc::new(store), twin, Box::new(dir)).with_raw(raw))
}

/// A fresh SQLite file whose store runs every load and value write alone
/// (`batching(false)`), so the suite also covers that path.
pub async fn sqlite_unbatched() -> Option<TestStore> {
    init_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let open = |url: String| async move {
        let store = SqliteStore::connect(&url).await.expect("open SQLite");
        store.batching(false)
    };
    let store = open(url.clone()).await;
    store.migrate().await.expect("migrate SQLite");
    let raw = raw_sql(store.pool().clone(), store.table_name().as_str());
    let twin: TwinFactory = Arc::new(move || {
        let url = url.clone();
        Box::pin(async move { Arc::new(open(url).await) as Arc<dyn SessionStore> })
    });
    Some(TestStore::new(Arc::new(store), twin, Box::new(dir)).with_raw(raw))
}

/// Raw SQL on `pool`, with `{table}` replaced by `table`.
pub fn raw_sql<DB: sqlx::Database>(pool: sqlx::Pool<DB>, table: &str) -> super::RawSql
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    let table = table.to_owned();
    Arc::new(move |sql: String| {
        let pool = pool.clone();
        let sql = sql.replace("{table}", &table);
        Box::pin(async move {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("raw SQL");
        })
    })
}

/// The URL in `var`, or `None` to skip; panics under CI.
pub fn url_from_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: under CI every store's suite must run")
        }
        _ => None,
    }
}

/// The tables `migrate()` makes for `table`, and the notification
/// trigger's function: what a test that makes its own drops at the end.
pub fn drop_tables_sql(table: &str) -> String {
    let tables: Vec<String> = [
        "",
        "_migrations",
        "_users",
        "_api_tokens",
        "_one_time_tokens",
        "_remember",
        "_totp",
        "_recovery_codes",
        "_passkeys",
    ]
    .iter()
    .map(|suffix| format!("{table}{suffix}"))
    .collect();
    format!("DROP TABLE IF EXISTS {}", tables.join(", "))
}

/// A PostgreSQL table of one test's own, shared by the app servers it
/// opens (each a store with a pool of its own).
#[cfg(feature = "postgres")]
pub struct SharedPostgresTable {
    url: String,
    pub table: keycard::store::TableName,
}

#[cfg(feature = "postgres")]
impl SharedPostgresTable {
    /// A new table on `KEYCARD_TEST_POSTGRES_URL` (`None` without it,
    /// outside CI), not migrated yet.
    pub fn new() -> Option<Self> {
        let url = url_from_env("KEYCARD_TEST_POSTGRES_URL")?;
        Some(Self {
            url,
            table: unique_table(),
        })
    }

    /// One more app server's store on the table.
    pub async fn open(&self) -> keycard::store::PostgresStore {
        let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
        keycard::store::PostgresStore::with_table_name(pool, self.table.clone())
    }

    /// The first app server's store, with the table migrated and change
    /// notifications on.
    pub async fn open_first(&self) -> keycard::store::PostgresStore {
        let store = self.open().await;
        store.migrate().await.expect("migrate");
        store.enable_change_notifications().await.expect("trigger");
        store
    }

    /// Drops the table and its companions, through `store`.
    pub async fn drop_all(self, store: &keycard::store::PostgresStore) {
        let table = self.table.as_str();
        let sql = format!(
            "{} CASCADE; DROP FUNCTION IF EXISTS {table}_notify_change()",
            drop_tables_sql(table)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .expect("clean up");
    }
}

/// A table name no other test (or earlier run) uses.
pub fn unique_table() -> keycard::store::TableName {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let token = keycard::token::SessionToken::generate().expect("rng");
    let salt: String = token.hash().fingerprint().chars().take(6).collect();
    keycard::store::TableName::new(&format!("kc_{}_{n}_{salt}", std::process::id()))
        .expect("valid table name")
}

/// Drops a test's tables when the test ends, on a thread of its own (a
/// `Drop` cannot await).
pub struct DropTables {
    pub drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for DropTables {
    fn drop(&mut self) {
        if let Some(drop) = self.drop.take() {
            let _ = std::thread::spawn(drop).join();
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// A factory for a store on a shared database server: a fresh table per
/// test in the database of the URL variable, dropped (with the tables named
/// after it) when the test ends.
macro_rules! server_store {
    ($name:ident, $feature:literal, $var:literal, $store:ty, $options:ty) => {
        #[cfg(feature = $feature)]
        pub async fn $name() -> Option<TestStore> {
            init_logs();
            let url = url_from_env($var)?;
            let open = |url: String, table: keycard::store::TableName, size: u32| async move {
                let pool = <$options>::new()
                    .max_connections(size)
                    .connect(&url)
                    .await
                    .expect(concat!("connect to ", $var));
                <$store>::with_table_name(pool, table)
            };
            let table = unique_table();
            let twin: TwinFactory = {
                let (url, table) = (url.clone(), table.clone());
                Arc::new(move || {
                    let opened = open(url.clone(), table.clone(), 4);
                    Box::pin(async move { Arc::new(opened.await) as Arc<dyn SessionStore> })
                })
            };
            let store = open(url.clone(), table.clone(), 8).await;
            store.migrate().await.expect("migrate");
            let raw = raw_sql(store.pool().clone(), table.as_str());
            let cleanup = store.clone();
            let drop = move || {
                block_on(async move {
                    let sql = drop_tables_sql(table.as_str());
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(cleanup.pool())
                        .await;
                })
            };
            Some(
                TestStore::new(
                    Arc::new(store),
                    twin,
                    Box::new(DropTables {
                        drop: Some(Box::new(drop)),
                    }),
                )
                .with_raw(raw),
            )
        }
    };
}

server_store!(
    postgres,
    "postgres",
    "KEYCARD_TEST_POSTGRES_URL",
    keycard::store::PostgresStore,
    sqlx::postgres::PgPoolOptions
);
server_store!(
    mysql,
    "mysql",
    "KEYCARD_TEST_MYSQL_URL",
    keycard::store::MySqlStore,
    sqlx::mysql::MySqlPoolOptions
);
