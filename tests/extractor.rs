//! The `Session` extractor without its layer, and `Error` as a response.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use keycard::Session;
use tower::ServiceExt;

#[tokio::test]
async fn extractor_without_layer_says_what_to_do() {
    let app: Router = Router::new().route("/", get(|_session: Session| async { "unreachable" }));
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
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
    let response = app.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("without `SessionLayer`"), "{body}");
}
