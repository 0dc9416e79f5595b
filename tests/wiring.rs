//! How the pieces are put together: extractors and layers without their
//! session layer, and the store's in-memory mode.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use keycard::Session;
use tower::ServiceExt;

/// Sends one request; the status and the body as text.
async fn send(app: Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn extractor_without_layer_says_what_to_do() {
    let app: Router = Router::new().route("/", get(|_session: Session| async { "unreachable" }));
    let request = Request::get("/").body(Body::empty()).expect("request");
    let (status, body) = send(app, request).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body.contains("`Session` extractor used without `SessionLayer`"),
        "{body}"
    );
    assert!(body.contains(".layer(SessionLayer::new(store))"), "{body}");
}

/// Hand-stacked with `AuthLayer` outside `SessionLayer`: loud at the first
/// request, with the fix in the message.
#[tokio::test]
#[should_panic(
    expected = "`AuthLayer` runs without `SessionLayer` around it: build the stack \
                           with `SessionLayer::new(store).with_auth(auth)`"
)]
async fn auth_layer_without_session_layer_says_what_to_do() {
    use keycard::auth::{AuthLayer, BasicAuth};
    let app: Router = Router::new()
        .route("/", get(|| async { "unreachable" }))
        .layer(AuthLayer::new().retriever(BasicAuth));
    let request = Request::get("/")
        .header("authorization", "Basic YTpi")
        .body(Body::empty())
        .expect("request");
    let _ = send(app, request).await;
}

/// Hand-stacked with `CnxLayer` inside `SessionLayer`: loud at the first
/// request, with the fix in the message.
#[tokio::test]
#[should_panic(expected = "`CnxLayer` runs inside `SessionLayer`")]
async fn a_connection_layer_inside_the_session_layer_says_what_to_do() {
    let store = keycard::SqliteStore::connect("sqlite::memory:")
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let app: Router = Router::new()
        .route("/", get(|| async { "unreachable" }))
        .layer(keycard::cnx::CnxLayer::new(store.pool().clone()))
        .layer(keycard::SessionLayer::new(store).no_background_purge());
    let request = Request::get("/").body(Body::empty()).expect("request");
    let _ = send(app, request).await;
}

/// Built with `with_auth` and `with_connections`, the three layers are in
/// the one order that works: a bearer request is signed in, and a session
/// write inside the request's transaction commits with the handler's row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_builder_puts_the_layers_in_order() {
    use keycard::auth::{ApiTokens, AuthLayer, BearerAuth, CurrentUser};
    use keycard::cnx::{Cnx, CnxLayer};
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = keycard::SqliteStore::connect(&url).await.expect("open");
    store.migrate().await.expect("migrate");
    sqlx::raw_sql("CREATE TABLE notes (body TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .expect("table");
    let pool = store.pool().clone();
    let sessions = keycard::SessionLayer::new(store.clone()).no_background_purge();
    let tokens = ApiTokens::new(store.clone(), sessions.admin());
    let secret = tokens.create("ada", "ci").await.expect("token").secret;
    let keycard = sessions
        .with_connections(CnxLayer::new(pool.clone()))
        .with_auth(AuthLayer::new().retriever(BearerAuth).authenticator(tokens));
    let app: Router = Router::new()
        .route(
            "/me",
            get(|CurrentUser(user): CurrentUser| async move { user.id }),
        )
        .route(
            "/note",
            axum::routing::post(|session: Session, cnx: Cnx<sqlx::Sqlite>| async move {
                sqlx::query("INSERT INTO notes (body) VALUES ('hello')")
                    .execute(&mut *cnx.write().await?)
                    .await?;
                session.insert("noted", true).await?;
                Ok::<_, keycard::Error>("noted")
            }),
        )
        .layer(keycard);
    let me = Request::get("/me")
        .header("authorization", format!("Bearer {secret}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(app.clone(), me).await, (StatusCode::OK, "ada".into()));
    let note = Request::post("/note").body(Body::empty()).expect("request");
    assert_eq!(send(app, note).await.0, StatusCode::OK);
    let notes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(notes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_sqlite_store_is_one_database_for_the_whole_pool() {
    use keycard::store::{SessionFields, SessionStore};
    let store = keycard::SqliteStore::connect("sqlite::memory:")
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let now = chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros())
        .expect("time");
    let mut fields = SessionFields::new(
        keycard::token::SessionToken::generate()
            .expect("rng")
            .hash(),
        now,
    );
    fields.user_id = Some("ada".into());
    // Many at once, so that the pool opens several connections: each must
    // see the table and the rows.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, fields) = (store.clone(), fields.clone());
            tokio::spawn(async move {
                let id = store.insert(&fields).await.expect("insert");
                store.load(id).await.expect("load").expect("row")
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.expect("task").fields.user_id.as_deref(),
            Some("ada")
        );
    }
}
