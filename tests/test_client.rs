//! `keycard::testing::TestClient` against real applications on a real
//! SQLite file: cookies followed in both cookie modes, the synchronizer
//! token, a signed-in start, and a browser restart that keeps only the
//! persistent (remember-me) cookie.
#![cfg(all(feature = "test-client", feature = "sqlite"))]

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use keycard::auth::{AuthLayer, CurrentUser, Remember, RememberMe};
use keycard::csrf::CsrfForm;
use keycard::testing::TestClient;
use keycard::{Login, Session, SessionLayer, SqliteStore};

#[derive(serde::Deserialize)]
struct Note {
    text: String,
}

async fn store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
    let store = SqliteStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, dir)
}

fn app(layer: SessionLayer, remember: RememberMe) -> Router {
    Router::new()
        .route(
            "/login",
            post(|session: Session, remember: Remember| async move {
                session.login("ada").await?;
                remember.this_device().await?;
                Ok::<_, keycard::Error>("in")
            }),
        )
        .route(
            "/me",
            get(|CurrentUser(user): CurrentUser| async move { user.id }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.logout().await?;
                Ok::<_, keycard::Error>("out")
            }),
        )
        .route(
            "/note",
            post(
                |session: Session, CsrfForm(note): CsrfForm<Note>| async move {
                    session.insert("note", note.text).await?;
                    Ok::<_, keycard::Error>("saved")
                },
            ),
        )
        .route(
            "/note",
            get(|session: Session| async move {
                Ok::<_, keycard::Error>(session.get::<String>("note").await?.unwrap_or_default())
            }),
        )
        .layer(layer.with_auth(AuthLayer::new().remember(remember)))
}

/// The same flow passes whether the layer's cookies are `__Host-` and
/// `Secure` or development ones: the client follows both.
#[tokio::test]
async fn the_client_follows_keycards_cookies_in_both_modes() {
    for insecure in [false, true] {
        let (store, _dir) = store().await;
        let mut layer = SessionLayer::new(store.clone()).no_background_purge();
        if insecure {
            layer = layer.insecure_dev_cookies();
        }
        let remember = RememberMe::new(store.clone(), layer.admin());
        let names = layer.config().clone();
        let mut browser = TestClient::new(app(layer, remember));
        assert_eq!(browser.get("/me").await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(browser.post("/login").await.text(), "in");
        assert!(
            browser.jar.get(names.id_cookie_name()).is_some(),
            "{insecure}"
        );
        assert!(browser.session_id().is_some(), "{insecure}");
        assert_eq!(browser.get("/me").await.text(), "ada");

        // The synchronizer token a page would show.
        let token = browser.csrf_token().expect("a token");
        let saved = browser
            .post_form("/note", &[("text", "hello"), ("csrf_token", &token)])
            .await;
        assert_eq!(saved.text(), "saved", "{insecure}");
        let forged = browser.post_form("/note", &[("text", "x")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(browser.get("/note").await.text(), "hello");

        // A restart keeps the remember-me cookie only: signed in again,
        // on a new session.
        let before = browser.session_id();
        browser.restart_browser();
        assert!(browser.session_id().is_none());
        assert!(browser.jar.get(names.remember_cookie_name()).is_some());
        assert_eq!(browser.get("/me").await.text(), "ada");
        assert_ne!(browser.session_id(), before);
        assert_eq!(browser.get("/note").await.text(), "", "a new session");

        // Another browser shares nothing.
        let mut other = browser.new_browser();
        assert_eq!(other.get("/me").await.status, StatusCode::UNAUTHORIZED);
    }
}

/// `TestClient::signed_in` starts a test signed in, with a real row, and
/// the session is an ordinary one: it signs out like any other.
#[tokio::test]
async fn a_test_can_start_signed_in() {
    let (store, _dir) = store().await;
    let layer = SessionLayer::new(store.clone()).no_background_purge();
    let remember = RememberMe::new(store.clone(), layer.admin());
    let admin = layer.admin();
    let router = app(layer, remember);
    let mut ada = TestClient::signed_in(router.clone(), &admin, Login::new("ada").method("test"))
        .await
        .expect("signed in");
    assert_eq!(ada.get("/me").await.text(), "ada");
    assert_eq!(admin.list("ada").await.expect("list").len(), 1);
    let id = ada.session_id().expect("id");
    assert_eq!(
        admin.list("ada").await.expect("list")[0]
            .auth_method
            .as_deref(),
        Some("test")
    );
    let token = ada.csrf_token().expect("token");
    let saved = ada
        .post_form("/note", &[("text", "hi"), ("csrf_token", &token)])
        .await;
    assert_eq!(saved.text(), "saved");
    assert_eq!(ada.post("/logout").await.text(), "out");
    assert!(ada.jar.is_empty(), "cookies expired: {:?}", ada.jar);
    assert!(admin.list("ada").await.expect("list").is_empty());
    assert!(!admin.end(id).await.expect("end"), "the row is gone");

    // A login the session cannot hold is refused, with no row.
    let refused = TestClient::signed_in(router, &admin, Login::new("")).await;
    assert!(refused.is_err());
}

/// The peer address reaches the application as `ConnectInfo`, unless a
/// request brings its own; a new browser keeps it, and the headers.
#[tokio::test]
async fn the_peer_address_and_headers_go_with_every_request() {
    let app = Router::new().route(
        "/",
        get(
            |ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap| async move {
                let agent = headers.get("user-agent").and_then(|v| v.to_str().ok());
                format!("{peer} {}", agent.unwrap_or("-"))
            },
        ),
    );
    let mut browser = TestClient::new(app).header("user-agent", "tests");
    browser.peer = Some(SocketAddr::from(([192, 0, 2, 1], 5000)));
    assert_eq!(browser.get("/").await.text(), "192.0.2.1:5000 tests");

    let mut own = Request::get("/").body(Body::empty()).expect("request");
    own.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([198, 51, 100, 7], 80))));
    assert_eq!(browser.send(own).await.text(), "198.51.100.7:80 tests");

    let mut other = browser.new_browser();
    assert_eq!(other.get("/").await.text(), "192.0.2.1:5000 tests");
    other.headers.clear();
    assert_eq!(other.get("/").await.text(), "192.0.2.1:5000 -");

    // Without a peer there is no `ConnectInfo`, as with a bare `oneshot`.
    browser.peer = None;
    assert_eq!(
        browser.get("/").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
