//! The behaviour suite on PostgreSQL (`KEYCARD_TEST_POSTGRES_URL`), one
//! table per test.
#![cfg(feature = "postgres")]

mod common;
mod suite;

behaviour_suite!(
    #[cfg_attr(
        keycard_no_postgres_url,
        ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
    )]
    crate::common::stores::postgres
);

cnx_suite!(
    #[cfg_attr(
        keycard_no_postgres_url,
        ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
    )]
    sqlx::Postgres,
    crate::common::cnx::postgres
);

/// Two app servers, each with its own pool and its own in-process cache, on
/// one PostgreSQL table: a change on one evicts the other's cached copy
/// through LISTEN/NOTIFY, so a logout on A is effective on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn cached_app_servers_see_each_others_logouts_and_writes() {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::http::StatusCode;
    use common::{Client, app};
    use keycard::SessionLayer;
    use keycard::store::{CachedStore, PostgresStore};

    let Some(shared) = common::stores::SharedPostgresTable::new() else {
        return;
    };
    let store_a = shared.open_first().await;
    let cache_a = Arc::new(
        CachedStore::new(store_a.clone(), 1000)
            .listen()
            .await
            .expect("listen"),
    );
    let cache_b = Arc::new(
        CachedStore::new(shared.open().await, 1000)
            .listen()
            .await
            .expect("listen"),
    );
    let app_a = app(SessionLayer::with_shared_store(cache_a.clone()));
    let app_b = app(SessionLayer::with_shared_store(cache_b.clone()));

    let mut on_a = Client::new(app_a);
    on_a.post("/login/alice").await;
    let id = on_a.session_id().expect("id");
    let mut on_b = on_a.on(app_b);
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

    shared.drop_all(&store_a).await;

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

/// Revocation on every app server: two servers, each with its own pool and
/// its own in-process cache, on one PostgreSQL table. A token revoked, an
/// account disabled and a password changed on server A end the sessions
/// server B has cached, at B's next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn revocations_on_one_app_server_end_sessions_cached_by_another() {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use base64::Engine as _;
    use keycard::auth::{
        ApiTokens, AuthLayer, BasicAuth, CurrentUser, PasswordAuthenticator, StoredSession,
    };
    use keycard::store::{CachedStore, PostgresStore};
    use keycard::{Login, Session, SessionLayer};

    let Some(shared) = common::stores::SharedPostgresTable::new() else {
        return;
    };
    let store_a = shared.open_first().await;
    let store_b = shared.open().await;
    let server = |store: PostgresStore| async move {
        let cache = Arc::new(
            CachedStore::new(store.clone(), 1000)
                .listen()
                .await
                .expect("listen"),
        );
        let layer = SessionLayer::with_shared_store(cache.clone()).no_background_purge();
        let passwords = PasswordAuthenticator::new(store.clone(), layer.admin())
            .argon2_params(argon2::Params::new(8, 1, 1, None).expect("params"));
        let tokens = ApiTokens::new(store, layer.admin());
        let form_passwords = passwords.clone();
        let router = Router::new()
            .route(
                "/maybe",
                get(|user: Option<CurrentUser>| async move {
                    user.map_or_else(|| "anonymous".to_owned(), |CurrentUser(u)| u.id)
                }),
            )
            .route(
                "/login/{user}/{password}",
                post(
                    move |session: Session,
                          axum::extract::Path((user, password)): axum::extract::Path<(
                        String,
                        String,
                    )>| {
                        let passwords = form_passwords.clone();
                        async move {
                            let user = passwords
                                .verify(&user, &password)
                                .await
                                .map_err(|_| StatusCode::UNAUTHORIZED)?;
                            session
                                .login_with(Login::new(user))
                                .await
                                .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
                            Ok::<_, StatusCode>("ok")
                        }
                    },
                ),
            )
            .layer(
                AuthLayer::new()
                    .retriever(StoredSession(BasicAuth))
                    .retriever(StoredSession(keycard::auth::BearerAuth))
                    .authenticator(passwords.clone())
                    .authenticator(tokens.clone()),
            )
            .layer(layer);
        (router, passwords, tokens, cache)
    };
    let (app_a, passwords_a, tokens_a, _cache_a) = server(store_a.clone()).await;
    let (app_b, _, _, cache_b) = server(store_b).await;
    passwords_a.create_user("alice", "old").await.expect("user");
    passwords_a
        .create_user("bob", "secret")
        .await
        .expect("user");

    // Signs in on A, then is served (and cached) by B.
    let on_b = |client: common::Client| client.on(app_b.clone());
    async fn until_anonymous(client: &mut common::Client, what: &str) {
        for _ in 0..200 {
            if client.get("/maybe").await.body == "anonymous" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: still signed in on the other server");
    }

    // 1. A revoked API token.
    let secret = tokens_a
        .create("alice", "tablet")
        .await
        .expect("token")
        .secret;
    let mut tablet = common::Client::new(app_a.clone());
    tablet.set_headers(vec![("authorization".into(), format!("Bearer {secret}"))]);
    assert_eq!(tablet.get("/maybe").await.body, "alice");
    tablet.headers.clear();
    let mut tablet = on_b(tablet);
    assert_eq!(tablet.get("/maybe").await.body, "alice");
    assert!(cache_b.is_cached(tablet.session_id().expect("id")));
    let token_id = tokens_a.list("alice").await.expect("list")[0].id;
    assert!(tokens_a.revoke("alice", token_id).await.expect("revoke"));
    until_anonymous(&mut tablet, "revoked token").await;

    // 2. A password change on A keeps A's session and ends B's.
    let mut here = common::Client::new(app_a.clone());
    assert_eq!(here.post("/login/alice/old").await.status, StatusCode::OK);
    let mut there = common::Client::new(app_a.clone());
    there.post("/login/alice/old").await;
    let mut there = on_b(there);
    assert_eq!(there.get("/maybe").await.body, "alice");
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:old");
    let mut api = common::Client::new(app_b.clone());
    api.set_headers(vec![("authorization".into(), format!("Basic {basic}"))]);
    assert_eq!(api.get("/maybe").await.body, "alice");
    api.headers.clear();
    assert_eq!(api.get("/maybe").await.body, "alice", "B caches it");
    assert!(
        passwords_a
            .set_password("alice", "new")
            .await
            .expect("reset")
    );
    until_anonymous(&mut there, "password change").await;
    until_anonymous(&mut api, "password change (API session)").await;
    until_anonymous(&mut here, "password reset ends every session").await;

    // 3. A disabled account.
    let mut bob = common::Client::new(app_a.clone());
    bob.post("/login/bob/secret").await;
    let mut bob = on_b(bob);
    assert_eq!(bob.get("/maybe").await.body, "bob");
    assert!(
        passwords_a
            .set_disabled("bob", true)
            .await
            .expect("disable")
    );
    until_anonymous(&mut bob, "disabled account").await;

    shared.drop_all(&store_a).await;
}

/// Row-level security through `Cnx`: a real PostgreSQL policy on a real
/// table, user connections under a role without `BYPASSRLS`. Alice cannot
/// read or write Bob's rows; switching read security off for one connection
/// lets her read them (visibly, in the log); an internal connection reads
/// everything.
#[tokio::test]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
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

/// Two app servers delete the excess sessions of one user at once, on
/// connections whose planner chose different plans (one is kept off hash
/// and merge joins, as a connection's generic plan may be): the rows are
/// locked in one order whatever the plan, so neither statement deadlocks
/// (PostgreSQL would take a second to notice, per deadlock) and one
/// session is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn per_user_deletes_lock_rows_in_one_order_whatever_the_plan() {
    use chrono::{TimeDelta, Utc};
    use keycard::store::{PostgresStore, SessionFields, SessionStore, UserSessions};
    use keycard::token::SessionToken;
    use sqlx::Executor as _;
    use sqlx::postgres::PgPoolOptions;

    let Some(url) = common::stores::url_from_env("KEYCARD_TEST_POSTGRES_URL") else {
        return;
    };
    let table = common::stores::unique_table();
    let plain = PostgresStore::with_table_name(
        PgPoolOptions::new()
            .max_connections(2)
            .after_connect(|conn, _| {
                Box::pin(async move { conn.execute("SET enable_nestloop = off").await.map(drop) })
            })
            .connect(&url)
            .await
            .expect("connect"),
        table.clone(),
    );
    plain.migrate().await.expect("migrate");
    let nested = PostgresStore::with_table_name(
        PgPoolOptions::new()
            .max_connections(2)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET enable_hashjoin = off; SET enable_mergejoin = off")
                        .await
                        .map(drop)
                })
            })
            .connect(&url)
            .await
            .expect("connect"),
        table.clone(),
    );
    let deadlocks = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(plain.pool())
        .await
        .expect("stats");
        n
    };
    let before = deadlocks().await;
    let start = Utc::now() - TimeDelta::hours(1);
    for round in 0..20 {
        let user = format!("many{round}");
        for i in 0..200 {
            let at = start + TimeDelta::milliseconds(i);
            let mut fields = SessionFields::new(SessionToken::generate().expect("rng").hash(), at);
            fields.user_id = Some(user.clone());
            plain.insert(&fields).await.expect("insert");
        }
        let (a, b) = tokio::join!(
            plain.delete_excess_for_user(&user, false, 1),
            nested.delete_excess_for_user(&user, false, 1),
        );
        let deleted = a.expect("plain") + b.expect("nested");
        assert_eq!(deleted, 199, "each excess row deleted once");
        assert_eq!(plain.list_for_user(&user).await.expect("list").len(), 1);
        let (a, b) = tokio::join!(
            plain.delete_for_user(&user, UserSessions::All),
            nested.delete_for_user(&user, UserSessions::All),
        );
        a.expect("plain");
        b.expect("nested");
    }
    // Deadlocks are counted per database, so another test's would show too;
    // none of the others takes locks in two orders.
    assert_eq!(deadlocks().await, before, "no statement deadlocked");
    let sql = common::stores::drop_tables_sql(table.as_str());
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(plain.pool())
        .await;
}

/// Remember-me across two app servers, each with its own pool and cache:
/// a browser remembered on A and restored on B (where its session is
/// cached) is signed out on B as soon as A revokes it, and a password
/// change on A ends a restored session cached on B; the remember cookie
/// restores nothing afterwards, on either server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn remembered_browsers_revoked_on_one_app_server_end_on_another() {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use axum::extract::Path;
    use axum::routing::{get, post};
    use keycard::auth::{AuthLayer, PasswordAuthenticator, Remember, RememberMe};
    use keycard::store::{CachedStore, PostgresStore};
    use keycard::{Login, Session, SessionLayer};

    let Some(shared) = common::stores::SharedPostgresTable::new() else {
        return;
    };
    let store_a = shared.open_first().await;
    let server = |store: PostgresStore| async move {
        let cache = Arc::new(
            CachedStore::new(store.clone(), 1000)
                .listen()
                .await
                .expect("listen"),
        );
        let layer = SessionLayer::with_shared_store(cache.clone()).no_background_purge();
        let passwords = PasswordAuthenticator::new(store.clone(), layer.admin())
            .argon2_params(argon2::Params::new(8, 1, 1, None).expect("params"));
        let remember = RememberMe::new(store, layer.admin());
        let router = Router::new()
            .route(
                "/who",
                get(|session: Session| async move {
                    let who = session.user_id().await?;
                    Ok::<_, keycard::Error>(who.unwrap_or_else(|| "anonymous".to_owned()))
                }),
            )
            .route(
                "/login/{user}",
                post(
                    |session: Session, remember: Remember, Path(user): Path<String>| async move {
                        session.login_with(Login::new(user)).await?;
                        remember.this_device().await?;
                        Ok::<_, keycard::Error>("in")
                    },
                ),
            )
            .route(
                "/devices",
                get(|remember: Remember| async move {
                    let ids: Vec<String> = remember
                        .devices()
                        .await?
                        .iter()
                        .filter(|d| !d.current)
                        .map(|d| d.id.to_string())
                        .collect();
                    Ok::<_, keycard::Error>(ids.join(","))
                }),
            )
            .route(
                "/revoke/{id}",
                post(|remember: Remember, Path(id): Path<i64>| async move {
                    Ok::<_, keycard::Error>(remember.revoke(id).await?.to_string())
                }),
            )
            .layer(layer.with_auth(AuthLayer::new().remember(remember)));
        let cookie = keycard::SessionConfig::default()
            .remember_cookie_name()
            .to_owned();
        (router, passwords, cache, cookie)
    };
    let (app_a, passwords_a, _cache_a, cookie) = server(store_a.clone()).await;
    let (app_b, _, cache_b, _) = server(shared.open().await).await;
    passwords_a.create_user("alice", "old").await.expect("user");

    async fn until_anonymous(client: &mut common::Client, what: &str) {
        for _ in 0..200 {
            if client.get("/who").await.body == "anonymous" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: still signed in on the other server");
    }
    // Remembered on A, restored (and cached) on B.
    let restored_on_b = |cookie_value: String| {
        let mut client = common::Client::new(app_b.clone());
        client.jar.insert(cookie.clone(), cookie_value);
        client
    };
    let mut laptop = common::Client::new(app_a.clone());
    assert_eq!(laptop.post("/login/alice").await.body, "in");
    let mut phone = common::Client::new(app_a.clone());
    phone.post("/login/alice").await;
    let mut phone = restored_on_b(phone.jar.get(&cookie).expect("the cookie").to_owned());
    assert_eq!(phone.get("/who").await.body, "alice");
    assert_eq!(phone.get("/who").await.body, "alice");
    assert!(cache_b.is_cached(phone.session_id().expect("id")));
    let phone_cookie = phone.jar.get(&cookie).expect("the cookie").to_owned();

    // 1. Revoked from the laptop on A.
    let id = laptop.get("/devices").await.body;
    assert_eq!(laptop.post(&format!("/revoke/{id}")).await.body, "true");
    until_anonymous(&mut phone, "revoked browser").await;
    assert_eq!(
        restored_on_b(phone_cookie).get("/who").await.body,
        "anonymous",
        "its cookie restores nothing"
    );

    // 2. A password change on A ends a restored session cached on B.
    let mut tablet = common::Client::new(app_a.clone());
    tablet.post("/login/alice").await;
    let mut tablet = restored_on_b(tablet.jar.get(&cookie).expect("the cookie").to_owned());
    assert_eq!(tablet.get("/who").await.body, "alice");
    assert_eq!(tablet.get("/who").await.body, "alice");
    assert!(cache_b.is_cached(tablet.session_id().expect("id")));
    let tablet_cookie = tablet.jar.get(&cookie).expect("the cookie").to_owned();
    assert!(passwords_a.set_password("alice", "new").await.expect("set"));
    until_anonymous(&mut tablet, "password change").await;
    let mut again = restored_on_b(tablet_cookie.clone());
    assert_eq!(again.get("/who").await.body, "anonymous");
    let mut on_a = common::Client::new(app_a.clone());
    on_a.jar.insert(cookie.clone(), tablet_cookie);
    assert_eq!(on_a.get("/who").await.body, "anonymous");

    shared.drop_all(&store_a).await;
}

/// A server-sent event stream opened on app server B ends within a second
/// of a sign-out on app server A: B's layer checks the sessions its live
/// connections watch, each with its own pool on one table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn an_event_stream_on_one_app_server_ends_when_another_signs_the_session_out() {
    use std::convert::Infallible;
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::response::sse::{Event, Sse};
    use axum::routing::{get, post};
    use http_body_util::BodyExt as _;
    use keycard::store::PostgresStore;
    use keycard::{Session, SessionLayer};
    use tower::ServiceExt as _;

    let Some(shared) = common::stores::SharedPostgresTable::new() else {
        return;
    };
    let store_a = shared.open_first().await;
    let server = |store: PostgresStore| {
        let layer = SessionLayer::new(store).no_background_purge();
        Router::new()
            .route(
                "/login",
                post(|session: Session| async move {
                    session.login("ada").await?;
                    Ok::<_, keycard::Error>("in")
                }),
            )
            .route(
                "/logout",
                post(|session: Session| async move {
                    session.logout().await?;
                    Ok::<_, keycard::Error>("out")
                }),
            )
            .route(
                "/events",
                get(|session: Session| async move {
                    let ended = Box::pin(session.ended().await?);
                    // A tick every 50 ms until the session ends.
                    let ticks = futures_util::stream::unfold(ended, |mut ended| async move {
                        tokio::select! {
                            _ = &mut ended => None,
                            () = tokio::time::sleep(Duration::from_millis(50)) => {
                                Some((Ok::<_, Infallible>(Event::default().data("tick")), ended))
                            }
                        }
                    });
                    Ok::<_, keycard::Error>(Sse::new(ticks))
                }),
            )
            .layer(layer)
    };
    let app_a = server(store_a.clone());
    let app_b = server(shared.open().await);

    let mut browser = common::Client::new(app_a.clone());
    assert_eq!(browser.post("/login").await.body, "in");
    let cookies = browser.jar.header().expect("cookies");
    let request = Request::get("/events")
        .header("cookie", cookies)
        .body(Body::empty())
        .expect("request");
    let response = app_b.clone().oneshot(request).await.expect("response");
    let mut body = response.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a first event")
        .expect("not the end")
        .expect("a frame");
    assert!(
        String::from_utf8_lossy(frame.data_ref().expect("data")).contains("tick"),
        "the stream runs"
    );
    let signed_out = Instant::now();
    assert_eq!(browser.post("/logout").await.body, "out");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = body.frame().await {
            frame.expect("a frame");
        }
    })
    .await;
    let took = signed_out.elapsed();
    assert!(ended.is_ok(), "the stream never ended");
    assert!(
        took < Duration::from_secs(1),
        "the stream ended {took:?} after the sign-out on the other server"
    );

    shared.drop_all(&store_a).await;
}

/// When an app server's notification connection drops, its cache serves
/// nothing it might have missed a change of: emptied, nothing cached while
/// the connection is down, and caching again (from empty) once a new one
/// listens, with other servers' sign-outs heard again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn a_cache_whose_notifications_drop_caches_nothing_until_they_are_back() {
    use std::sync::Arc;
    use std::time::Duration;

    use keycard::SessionLayer;
    use keycard::store::CachedStore;

    let Some(shared) = common::stores::SharedPostgresTable::new() else {
        return;
    };
    let store_a = shared.open_first().await;
    let app_a = common::app(SessionLayer::new(store_a.clone()).no_background_purge());
    let cache_b = Arc::new(
        CachedStore::new(shared.open().await, 1000)
            .listen()
            .await
            .expect("listen"),
    );
    let app_b = common::app(SessionLayer::with_shared_store(cache_b.clone()).no_background_purge());

    let mut on_a = common::Client::new(app_a.clone());
    on_a.post("/login/ada").await;
    let id = on_a.session_id().expect("id");
    let mut on_b = on_a.on(app_b.clone());
    assert_eq!(on_b.get("/whoami").await.body, "ada");
    assert!(cache_b.is_cached(id));

    // Cut B's notification connection.
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN%' AND query LIKE $1",
    )
    .bind(format!("%{}_changes%", shared.table.as_str()))
    .fetch_all(store_a.pool())
    .await
    .expect("terminate");
    assert_eq!(killed.len(), 1, "one listener");
    let mut emptied = false;
    for _ in 0..200 {
        if !cache_b.is_cached(id) {
            emptied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(emptied, "the cache is emptied when the connection drops");
    // While it is down, reads are served from the database, not cached.
    assert_eq!(on_b.get("/whoami").await.body, "ada");
    assert!(!cache_b.is_cached(id), "nothing cached while unheard");

    // Back: caching resumes, and A's sign-out reaches B.
    let mut cached_again = false;
    for _ in 0..100 {
        on_b.get("/whoami").await;
        if cache_b.is_cached(id) {
            cached_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cached_again,
        "caching resumes once a new connection listens"
    );
    on_a.post("/logout").await;
    let mut anonymous = false;
    for _ in 0..200 {
        if on_b.get("/whoami").await.status == axum::http::StatusCode::UNAUTHORIZED {
            anonymous = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(anonymous, "B hears A's sign-out after the reconnection");

    shared.drop_all(&store_a).await;
}
