//! Hostile input the store never sees: invalid identities, oversized
//! values, rows no keycard would write.

use axum::http::{StatusCode, header};

use crate::common::{Client, TestStore, app};
use crate::suite::client_with_session;

pub async fn invalid_identities_are_refused_the_same_on_every_store(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let id = client.session_id().expect("id");
    let before = store.row(id).await.expect("row");
    for user in ["%00", "a%00b", "line%0Abreak", "tab%09", "%7F", "%C2%85"] {
        let reply = client.post(&format!("/login/{user}")).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{user}: {}",
            reply.body
        );
        assert!(reply.set_cookies().is_empty(), "{user}");
    }
    for method in ["pass%00word", "a%0Db"] {
        let reply = client.post(&format!("/login-with/alice/{method}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method}");
    }
    assert_eq!(store.row(id).await.expect("row"), before, "nothing changed");
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    // Printable Unicode is a fine user id.
    let reply = client.post("/login/%C3%A9l%C3%A8ve").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(client.get("/whoami").await.body, "élève");
}

pub async fn oversized_values_are_refused_with_413_before_any_write(store: TestStore) {
    let layer = store.layer().max_session_bytes(10_000);
    let mut client = Client::new(app(layer));
    client.post("/incr").await;
    let id = client.session_id().expect("id");
    assert_eq!(client.post("/fill/5000").await.status, StatusCode::OK);
    let before = store.row(id).await.expect("row");
    store.calls().reset();
    for path in ["/fill/20000", "/fill-by-update/20000"] {
        let reply = client.post(path).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert!(reply.set_cookies().is_empty());
    }
    assert_eq!(store.calls().writes(), 0, "refused before any write");
    assert_eq!(store.row(id).await.expect("row"), before, "unchanged");
    assert_eq!(
        client.post("/fill-by-update/6000").await.status,
        StatusCode::OK
    );
    // A new session too large to start is not started.
    let mut fresh = client.new_browser();
    let reply = fresh.post("/fill/20000").await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.set_cookies().is_empty());
    assert!(fresh.session_id().is_none());
    // The default limit is 64 KiB.
    let mut default = Client::new(app(store.layer()));
    assert_eq!(default.post("/fill/60000").await.status, StatusCode::OK);
    assert_eq!(
        default.post("/fill/70000").await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

pub async fn a_corrupt_row_is_deleted_and_never_fails_its_neighbours(store: TestStore) {
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(client_with_session(&store).await);
    }
    let bad = clients[3].session_id().expect("id");
    store.corrupt_row(bad).await;
    // Loaded together (batched where the store batches): the bad row
    // fails nobody else, and its own request goes on anonymous.
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .map(|mut client| tokio::spawn(async move { client.get("/read").await }))
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let reply = task.await.expect("task");
        assert_eq!(reply.status, StatusCode::OK, "client {n}: {}", reply.body);
        assert_eq!(reply.body, if n == 3 { "0" } else { "1" }, "client {n}");
    }
    assert!(store.row(bad).await.is_none(), "the corrupt row is deleted");
    let others = clients[4].session_id().expect("id");
    assert!(store.row(others).await.is_some());
}

pub async fn unavailable_answers_ask_the_client_to_retry(store: TestStore) {
    let mut client = client_with_session(&store).await;
    store
        .counting
        .fail_loads
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let reply = client.get("/read").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.parse::<u32>().is_ok()),
        "{:?}",
        reply.headers
    );
    assert!(reply.set_cookies().is_empty());
}
