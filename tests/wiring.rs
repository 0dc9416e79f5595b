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

#[tokio::test]
async fn auth_layer_without_session_layer_says_what_to_do() {
    use keycard::auth::{AuthLayer, BasicAuth};
    let app: Router = Router::new()
        .route("/", get(|| async { "unreachable" }))
        .layer(AuthLayer::new().retriever(BasicAuth));
    let request = Request::get("/")
        .header("authorization", "Basic YTpi")
        .body(Body::empty())
        .expect("request");
    let (status, body) = send(app, request).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("without `SessionLayer`"), "{body}");
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
