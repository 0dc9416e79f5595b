//! One factory per store: each test gets its own database file (SQLite) or
//! its own table (PostgreSQL, MySQL), so tests run in parallel. The
//! PostgreSQL and MySQL factories return `None` (the test passes without
//! running) when their URL variable is not set, except under CI, where a
//! missing URL fails the test: CI must never skip a store silently.

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
    let twin: TwinFactory = Arc::new(move || {
        let url = url.clone();
        Box::pin(async move {
            let store = SqliteStore::connect(&url).await.expect("open SQLite");
            Arc::new(store) as Arc<dyn SessionStore>
        })
    });
    Some(TestStore::new(Arc::new(store), twin, Box::new(dir)))
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

/// A fresh table in the PostgreSQL database of `KEYCARD_TEST_POSTGRES_URL`.
#[cfg(feature = "postgres")]
pub async fn postgres() -> Option<TestStore> {
    use keycard::store::PostgresStore;
    init_logs();
    let url = url_from_env("KEYCARD_TEST_POSTGRES_URL")?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .expect("connect to PostgreSQL");
    let table = unique_table();
    let twin: TwinFactory = {
        let (url, table) = (url.clone(), table.clone());
        Arc::new(move || {
            let (url, table) = (url.clone(), table.clone());
            Box::pin(async move {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .connect(&url)
                    .await
                    .expect("connect");
                Arc::new(PostgresStore::with_table_name(pool, table)) as Arc<dyn SessionStore>
            })
        })
    };
    let store = PostgresStore::with_table_name(pool, table.clone());
    store.migrate().await.expect("migrate PostgreSQL");
    let drop = move || {
        block_on(async move {
            if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                let sql = format!("DROP TABLE IF EXISTS {table}, {table}_migrations");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
            }
        })
    };
    Some(TestStore::new(
        Arc::new(store),
        twin,
        Box::new(DropTables {
            drop: Some(Box::new(drop)),
        }),
    ))
}

/// A fresh table in the MySQL/MariaDB database of `KEYCARD_TEST_MYSQL_URL`.
#[cfg(feature = "mysql")]
pub async fn mysql() -> Option<TestStore> {
    use keycard::store::MySqlStore;
    init_logs();
    let url = url_from_env("KEYCARD_TEST_MYSQL_URL")?;
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .expect("connect to MySQL");
    let table = unique_table();
    let twin: TwinFactory = {
        let (url, table) = (url.clone(), table.clone());
        Arc::new(move || {
            let (url, table) = (url.clone(), table.clone());
            Box::pin(async move {
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(4)
                    .connect(&url)
                    .await
                    .expect("connect");
                Arc::new(MySqlStore::with_table_name(pool, table)) as Arc<dyn SessionStore>
            })
        })
    };
    let store = MySqlStore::with_table_name(pool, table.clone());
    store.migrate().await.expect("migrate MySQL");
    let drop = move || {
        block_on(async move {
            if let Ok(pool) = sqlx::MySqlPool::connect(&url).await {
                let sql = format!("DROP TABLE IF EXISTS {table}, {table}_migrations");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
            }
        })
    };
    Some(TestStore::new(
        Arc::new(store),
        twin,
        Box::new(DropTables {
            drop: Some(Box::new(drop)),
        }),
    ))
}
