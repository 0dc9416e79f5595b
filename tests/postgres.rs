//! The behaviour suite on PostgreSQL (`KEYCARD_TEST_POSTGRES_URL`), one
//! table per test.
#![cfg(feature = "postgres")]

mod common;
mod suite;

behaviour_suite!(crate::common::stores::postgres);

cnx_suite!(sqlx::Postgres, crate::common::cnx::postgres);

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

/// Row-level security through `Cnx`: a real PostgreSQL policy on a real
/// table, user connections under a role without `BYPASSRLS`. Alice cannot
/// read or write Bob's rows; switching read security off for one connection
/// lets her read them (visibly, in the log); an internal connection reads
/// everything.
#[tokio::test]
async fn row_level_security_applies_to_user_connections_and_not_to_internal_ones() {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use keycard::cnx::{Cnx, CnxLayer, RowSecurity, Security};
    use keycard::{Session, SessionLayer};
    use sqlx::Postgres;

    let Some(f) = common::cnx::postgres(4).await else {
        return;
    };
    let t = f.table.as_str().to_owned();
    // Roles are cluster-wide; a concurrent run may create it first.
    let _ = sqlx::raw_sql(
        "DO $$ BEGIN CREATE ROLE keycard_rls_user NOLOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .execute(&f.pool)
    .await;
    let setup = format!(
        "GRANT SELECT, INSERT ON {t}_notes TO keycard_rls_user; \
         ALTER TABLE {t}_notes ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY own ON {t}_notes \
           USING (owner = current_setting('keycard.user_id', true) \
                  OR current_setting('keycard.read_security', true) = 'off') \
           WITH CHECK (owner = current_setting('keycard.user_id', true) \
                  OR current_setting('keycard.write_security', true) = 'off'); \
         INSERT INTO {t}_notes (owner, body) VALUES ('alice', 'a1'), ('bob', 'b1');"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&f.pool)
        .await
        .expect("policy");

    async fn bodies(cnx: &Cnx<Postgres>, table: &str) -> Result<String, keycard::Error> {
        let sql = format!("SELECT body FROM {table}_notes ORDER BY body");
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *cnx.read().await?)
            .await?;
        Ok(rows.join(","))
    }
    let (read, unchecked, write) = (t.clone(), t.clone(), t.clone());
    let app = Router::new()
        .route(
            "/login/{user}",
            post(|session: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                session.login(user).await?;
                Ok::<_, keycard::Error>("ok")
            }),
        )
        .route(
            "/notes",
            get(move |cnx: Cnx<Postgres>| async move { bodies(&cnx, &read).await }),
        )
        .route(
            "/notes-unchecked",
            get(move |cnx: Cnx<Postgres>| async move {
                cnx.set_security(Security { read: false, write: true }).await?;
                bodies(&cnx, &unchecked).await
            }),
        )
        .route(
            "/write-as-bob",
            post(move |cnx: Cnx<Postgres>| async move {
                let sql = format!("INSERT INTO {write}_notes (owner, body) VALUES ('bob', 'forged')");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *cnx.write().await?)
                    .await?;
                Ok::<_, keycard::Error>("written")
            }),
        )
        .layer(SessionLayer::new(f.store.clone()))
        .layer(
            CnxLayer::new(f.pool.clone())
                .row_security(RowSecurity::new().role("keycard_rls_user")),
        );

    let mut anonymous = common::Client::new(app.clone());
    assert_eq!(anonymous.get("/notes").await.body, "", "no user, no rows");

    let mut alice = common::Client::new(app.clone());
    assert_eq!(alice.post("/login/alice").await.status, StatusCode::OK);
    assert_eq!(alice.get("/notes").await.body, "a1", "only her own row");
    assert_eq!(alice.get("/notes-unchecked").await.body, "a1,b1");
    assert_eq!(
        alice.get("/notes").await.body,
        "a1",
        "the switch lasted one connection"
    );
    let forged = alice.post("/write-as-bob").await;
    assert_eq!(
        forged.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the policy refuses it"
    );

    let internal = CnxLayer::new(f.pool.clone())
        .row_security(RowSecurity::new().role("keycard_rls_user"))
        .internal();
    assert_eq!(bodies(&internal, &t).await.expect("internal read"), "a1,b1");
    internal.commit().await.expect("commit");
    let forged: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {t}_notes WHERE body = 'forged'"
    )))
    .fetch_one(&f.pool)
    .await
    .expect("count");
    assert_eq!(forged, 0);
}
