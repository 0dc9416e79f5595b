//! The one migration runner on every backend: app servers starting together
//! migrate one table at once, each file is applied and recorded once, a
//! second run changes nothing, the migrated table stores sessions, and its
//! index of a user's sessions is the one the per-user limit ranks by.

mod common;

use chrono::Utc;
use keycard::store::{SessionFields, SessionStore, TableName};
use keycard::token::SessionToken;

/// How many app servers start at once.
const SERVERS: usize = 4;

/// What every backend's check asserts once its stores have migrated:
/// `versions` lists the book's rows, the first store can hold a session.
async fn assert_migrated_once(versions: Vec<i64>, store: &dyn SessionStore) {
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        "each file recorded once, in order"
    );
    let fields = SessionFields::new(SessionToken::generate().expect("rng").hash(), Utc::now());
    let id = store.insert(&fields).await.expect("insert after migrating");
    assert!(store.load(id).await.expect("load").is_some());
}

/// `indexes` (the migrated table's) hold the user's sessions in the order
/// the per-user limit ranks them (migration 10), and no longer the index
/// of `user_id` alone it replaced.
fn assert_user_index(indexes: &[String], table: &str) {
    let has = |suffix: &str| {
        indexes
            .iter()
            .any(|name| name.eq_ignore_ascii_case(&format!("{table}_{suffix}")))
    };
    assert!(has("user_recency"), "{indexes:?}");
    assert!(
        !has("user_id"),
        "the index it replaces is gone: {indexes:?}"
    );
}

/// Migrates `table` from [`SERVERS`] stores at once (each on its own pool,
/// as separate processes would be), then once more.
macro_rules! migrate_together {
    ($open:expr $(,)?) => {{
        let mut stores = Vec::new();
        for _ in 0..SERVERS {
            stores.push($open.await);
        }
        let runs: Vec<_> = stores
            .iter()
            .map(|store| {
                let store = store.clone();
                tokio::spawn(async move { store.migrate().await })
            })
            .collect();
        for run in runs {
            run.await
                .expect("task")
                .expect("every concurrent migrate succeeds");
        }
        stores[0].migrate().await.expect("a second run succeeds");
        stores
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_processes_migrating_together_apply_each_file_once() {
    use keycard::store::SqliteStore;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let table = TableName::new("migrated").expect("table");
    let stores = migrate_together!(async {
        let store = SqliteStore::connect(&url).await.expect("open");
        SqliteStore::with_table_name(store.pool().clone(), table.clone())
    },);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM migrated_migrations ORDER BY version")
            .fetch_all(stores[0].pool())
            .await
            .expect("book");
    assert_migrated_once(versions, &stores[0]).await;
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?")
            .bind("migrated")
            .fetch_all(stores[0].pool())
            .await
            .expect("indexes");
    assert_user_index(&indexes, "migrated");
    // The ranking reads the index alone, in its order: no table rows, no
    // sort.
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT id FROM migrated WHERE user_id = ? AND is_api = ? \
         ORDER BY last_activity DESC, id DESC LIMIT -1 OFFSET ?",
    )
    .bind("u")
    .bind(false)
    .bind(2)
    .fetch_all(stores[0].pool())
    .await
    .expect("plan");
    let plan: Vec<&str> = plan.iter().map(|step| step.3.as_str()).collect();
    assert!(
        plan.iter()
            .any(|step| step.contains("COVERING INDEX migrated_user_recency")),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|step| step.contains("TEMP B-TREE")),
        "{plan:?}"
    );
}

/// The same check on a database server: a fresh table in the database of
/// the URL variable, dropped at the end.
macro_rules! server_migrates_once {
    (
        $name:ident,
        $feature:literal,
        $no_url:ident,
        $var:literal,
        $store:ty,
        $pool:ty,
        $indexes_sql:literal $(,)?
    ) => {
        #[cfg(feature = $feature)]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr($no_url, ignore = concat!($var, " is not set"))]
        async fn $name() {
            let Some(url) = common::stores::url_from_env($var) else {
                return;
            };
            let table = common::stores::unique_table();
            let stores = migrate_together!(async {
                let pool = <$pool>::connect(&url).await.expect("connect");
                <$store>::with_table_name(pool, table.clone())
            },);
            let sql = format!("SELECT version FROM {table}_migrations ORDER BY version");
            let versions: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(stores[0].pool())
                .await
                .expect("book");
            assert_migrated_once(versions, &stores[0]).await;
            let indexes: Vec<String> = sqlx::query_scalar($indexes_sql)
                .bind(table.as_str().to_lowercase())
                .fetch_all(stores[0].pool())
                .await
                .expect("indexes");
            assert_user_index(&indexes, table.as_str());
            drop_tables(stores[0].pool(), &table).await;
        }
    };
}

server_migrates_once!(
    postgres_servers_migrating_together_apply_each_file_once,
    "postgres",
    keycard_no_postgres_url,
    "KEYCARD_TEST_POSTGRES_URL",
    keycard::store::PostgresStore,
    sqlx::PgPool,
    "SELECT indexname::text FROM pg_indexes WHERE tablename = $1",
);
server_migrates_once!(
    mysql_servers_migrating_together_apply_each_file_once,
    "mysql",
    keycard_no_mysql_url,
    "KEYCARD_TEST_MYSQL_URL",
    keycard::store::MySqlStore,
    sqlx::MySqlPool,
    "SELECT DISTINCT CAST(index_name AS CHAR) FROM information_schema.statistics \
     WHERE table_schema = DATABASE() AND LOWER(table_name) = ?",
);

#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn drop_tables<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, table: &TableName)
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
{
    let sql = common::stores::drop_tables_sql(table.as_str());
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await;
}

/// An app server starting while another holds the migration lock (a long
/// migration on a large table) waits for it, past the 5 s `lock_timeout`
/// that bounds requests, and then finds the table migrated.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn a_postgres_server_waits_for_another_servers_migration_past_the_lock_timeout() {
    use std::time::Duration;

    use keycard::store::PostgresStore;

    let Some(url) = common::stores::url_from_env("KEYCARD_TEST_POSTGRES_URL") else {
        return;
    };
    let table = common::stores::unique_table();
    let open = || async {
        let store = PostgresStore::connect(&url).await.expect("connect");
        PostgresStore::with_table_name(store.pool().clone(), table.clone())
    };
    let first = open().await;
    first.migrate().await.expect("migrate");
    // Another server's migration: keycard's lock (an advisory transaction
    // lock on FNV-1a of the table name, `src/store/migrate.rs`) held 6 s.
    let key = table
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let key = i64::from_ne_bytes(key.to_ne_bytes());
    let mut holder = first.pool().begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut *holder)
        .await
        .expect("lock");
    let second = open().await;
    let started = std::time::Instant::now();
    let migrating = tokio::spawn(async move { second.migrate().await });
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!migrating.is_finished(), "it waits for the lock");
    holder.rollback().await.expect("release");
    migrating
        .await
        .expect("task")
        .expect("the second server migrates once the first is done");
    assert!(started.elapsed() >= Duration::from_secs(6));
    drop_tables(first.pool(), &table).await;
}
