//! Store failures fail closed; logs keep secrets out.

use std::sync::atomic::Ordering;

use axum::http::{StatusCode, header};

use crate::common::{Client, TestStore, app};
use crate::suite::client_with_session;

pub async fn load_failure_is_503_whatever_the_handler_says(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let jar = client.jar.clone();
    store.counting.fail_loads.store(true, Ordering::SeqCst);
    let reply = client.get("/ignore-errors").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!reply.body.contains("handler says ok"));
    assert!(
        !reply.body.to_lowercase().contains("pool"),
        "generic body: {}",
        reply.body
    );
    assert!(reply.set_cookies().is_empty());
    assert_eq!(client.jar, jar, "the client keeps its session for later");
    store.counting.fail_loads.store(false, Ordering::SeqCst);
    assert_eq!(client.get("/read").await.body, "1", "nothing was replaced");
}

pub async fn save_failure_is_503_without_cookies(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    store.counting.fail_writes.store(true, Ordering::SeqCst);
    let reply = client.post("/login/alice").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.set_cookies().is_empty());
    assert_eq!(
        reply
            .headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    store.counting.fail_writes.store(false, Ordering::SeqCst);
    let mut client = client_with_session(&store).await;
    store.counting.fail_writes.store(true, Ordering::SeqCst);
    let reply = client.post("/set/a/b").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    store.counting.fail_writes.store(false, Ordering::SeqCst);
    assert_eq!(client.get("/get/a").await.body, "");
}

pub async fn handler_sees_the_store_error(store: TestStore) {
    let mut client = client_with_session(&store).await;
    store.counting.fail_loads.store(true, Ordering::SeqCst);
    // `/read` propagates the error with `?`: the handler got an Err.
    let reply = client.get("/read").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.body.contains("temporarily unavailable"),
        "{}",
        reply.body
    );
}
