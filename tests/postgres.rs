//! The behaviour suite on PostgreSQL (`KEYCARD_TEST_POSTGRES_URL`), one
//! table per test.
#![cfg(feature = "postgres")]

mod common;
mod suite;

behaviour_suite!(crate::common::stores::postgres);

/// Two app servers, each with its own pool and its own in-process cache, on
/// one PostgreSQL table: a change on one evicts the other's cached copy
/// through LISTEN/NOTIFY, so a logout on A is effective on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_app_servers_see_each_others_logouts_and_writes() {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::http::StatusCode;
    use common::{Client, app};
    use keycard::SessionLayer;
    use keycard::store::{CachedStore, PostgresStore};

    let Some(url) = common::stores::url_from_env("KEYCARD_TEST_POSTGRES_URL") else {
        return;
    };
    let table = common::stores::unique_table();
    let open = || async {
        let pool = sqlx::PgPool::connect(&url).await.expect("connect");
        PostgresStore::with_table_name(pool, table.clone())
    };
    let store_a = open().await;
    store_a.migrate().await.expect("migrate");
    store_a
        .enable_change_notifications()
        .await
        .expect("trigger");
    let cache_a = Arc::new(
        CachedStore::new(store_a.clone(), 1000)
            .listen()
            .await
            .expect("listen"),
    );
    let cache_b = Arc::new(
        CachedStore::new(open().await, 1000)
            .listen()
            .await
            .expect("listen"),
    );
    let app_a = app(SessionLayer::with_shared_store(cache_a.clone()));
    let app_b = app(SessionLayer::with_shared_store(cache_b.clone()));

    let mut on_a = Client::new(app_a);
    on_a.post("/login/alice").await;
    let id = on_a.session_id().expect("id");
    let mut on_b = on_a.clone();
    on_b.app = app_b;
    assert_eq!(on_b.get("/whoami").await.body, "alice");
    assert!(cache_b.is_cached(id), "B caches the session");

    // A write on A reaches B's cache as an eviction.
    on_a.post("/set/colour/blue").await;
    wait_until_evicted(&cache_b, id).await;
    assert_eq!(on_b.get("/get/colour").await.body, "blue");

    // A logout on A ends the session on B.
    assert!(cache_b.is_cached(id));
    on_a.post("/logout").await;
    wait_until_evicted(&cache_b, id).await;
    assert_eq!(on_b.get("/whoami").await.status, StatusCode::UNAUTHORIZED);

    let sql = format!(
        "DROP TABLE IF EXISTS {table}, {table}_migrations, {table}_users, {table}_api_tokens; \
         DROP FUNCTION IF EXISTS {table}_notify_change()"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(store_a.pool())
        .await
        .expect("clean up");

    async fn wait_until_evicted(cache: &CachedStore<PostgresStore>, id: keycard::SessionId) {
        for _ in 0..500 {
            if !cache.is_cached(id) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the change notification never arrived");
    }
}
