//! Errors per domain: each answers with the status its documentation names
//! and a generic, uncached body, alone or inside `keycard::Error`.

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use keycard::auth::{AccountError, ApiTokens};
use keycard::cnx::CnxError;
use keycard::cnx::Veto;
use keycard::{Error, SessionError, SessionLayer, SqliteStore};

mod common;

use common::Client;

/// The status, body and `Cache-Control` of a response; asserts that a
/// `503` asks the client to retry.
async fn body_of(response: axum::response::Response) -> (StatusCode, String, Option<String>) {
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cache = header("cache-control");
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(header("retry-after").is_some(), "a 503 says when to retry");
    }
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned(), cache)
}

/// Every domain's errors answer their documented statuses, the same alone
/// and wrapped in `keycard::Error`, with a generic body that never holds
/// the error's details.
#[tokio::test]
async fn each_domain_answers_its_documented_status_alone_and_wrapped() {
    let cases: Vec<(Error, StatusCode)> = vec![
        (SessionError::Conflict.into(), StatusCode::CONFLICT),
        (
            SessionError::InvalidLogin("x").into(),
            StatusCode::BAD_REQUEST,
        ),
        (SessionError::RequestOnly.into(), StatusCode::BAD_REQUEST),
        (
            SessionError::TooLarge { limit: 1 }.into(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            SessionError::Unavailable.into(),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            SessionError::Randomness.into(),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (CnxError::Closed.into(), StatusCode::INTERNAL_SERVER_ERROR),
        (
            sqlx::Error::RowNotFound.into(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            Veto::new("closed")
                .with_status(StatusCode::IM_A_TEAPOT)
                .into(),
            StatusCode::IM_A_TEAPOT,
        ),
        (Veto::new("closed").into(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            AccountError::InvalidUsername.into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            AccountError::InvalidTokenName.into(),
            StatusCode::BAD_REQUEST,
        ),
        (AccountError::Exists.into(), StatusCode::CONFLICT),
        (AccountError::WrongPassword.into(), StatusCode::FORBIDDEN),
        (AccountError::NotSignedIn.into(), StatusCode::UNAUTHORIZED),
        (AccountError::PasskeyRefused.into(), StatusCode::FORBIDDEN),
        (
            AccountError::NoPasskeyCeremony.into(),
            StatusCode::BAD_REQUEST,
        ),
        (AccountError::PasskeyExists.into(), StatusCode::CONFLICT),
        (AccountError::TooManyPasskeys.into(), StatusCode::CONFLICT),
        (
            AccountError::Hashing.into(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            AccountError::Unavailable("db down at 10.0.0.5".into()).into(),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            AccountError::Sessions(SessionError::Conflict).into(),
            StatusCode::CONFLICT,
        ),
        (
            CnxError::Session(SessionError::Unavailable).into(),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ];
    for (error, status) in cases {
        assert_eq!(error.status(), status, "{error}");
        let detail = error.to_string();
        let (got, body, cache) = body_of(error.into_response()).await;
        assert_eq!(got, status, "{detail}");
        assert_eq!(cache.as_deref(), Some("no-store"), "{detail}");
        assert!(!body.contains("10.0.0.5"), "no details in the body: {body}");
    }
    // Each domain's own type answers the same as when wrapped.
    let (alone, _, _) = body_of(AccountError::Exists.into_response()).await;
    assert_eq!(alone, StatusCode::CONFLICT);
    let (alone, _, _) = body_of(CnxError::Closed.into_response()).await;
    assert_eq!(alone, StatusCode::INTERNAL_SERVER_ERROR);
    let (alone, _, _) = body_of(SessionError::Conflict.into_response()).await;
    assert_eq!(alone, StatusCode::CONFLICT);
}

/// A handler that meets two domains returns `keycard::Error` and uses `?`
/// on both: a bad token name is the account domain's `400`, and nothing is
/// stored.
#[tokio::test]
async fn a_handler_mixing_domains_answers_the_failing_ones_status() {
    let store = SqliteStore::connect("sqlite::memory:")
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let layer = SessionLayer::new(store.clone()).insecure_dev_cookies();
    let tokens = ApiTokens::new(store.clone(), layer.admin());
    let app = Router::new()
        .route(
            "/tokens/{name}",
            post({
                let tokens = tokens.clone();
                move |session: keycard::Session,
                      axum::extract::Path(name): axum::extract::Path<String>| {
                    let tokens = tokens.clone();
                    async move {
                        session.login("ada").await?;
                        let made = tokens.create("ada", &name).await?;
                        Ok::<_, Error>(made.record.name)
                    }
                }
            }),
        )
        .layer(layer);
    let mut client = Client::new(app.clone());
    let reply = client.post("/tokens/laptop").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "laptop")
    );
    let mut client = Client::new(app);
    let reply = client.post("/tokens/%07bell").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(
        tokens.list("ada").await.expect("list").len(),
        1,
        "nothing stored"
    );
}
