//! Store failures fail closed; logs keep secrets out.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

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

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub async fn logs_never_contain_a_token_or_its_hash(store: TestStore) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut client = Client::new(app(store.layer()));
    client.post("/incr").await;
    let first = client.token().expect("token");
    client.post("/login/alice").await;
    let second = client.token().expect("token");
    let mut forged = client.clone();
    let name = forged
        .jar
        .keys()
        .find(|k| k.ends_with("-token"))
        .cloned()
        .expect("name");
    forged.jar.insert(name, first.clone());
    forged.get("/whoami").await;
    store.counting.fail_loads.store(true, Ordering::SeqCst);
    client.get("/read").await;
    store.counting.fail_loads.store(false, Ordering::SeqCst);
    client.post("/logout").await;

    let logs = String::from_utf8(captured.0.lock().expect("logs").clone()).expect("utf-8");
    assert!(logs.contains("session created"), "{logs}");
    assert!(logs.contains("session token rotated"), "{logs}");
    assert!(logs.contains("session cookie rejected"), "{logs}");
    assert!(logs.contains("session ended"), "{logs}");
    for token in [&first, &second] {
        let token: keycard::token::SessionToken = token.parse().expect("token");
        let hash = token.hash();
        let hex: String = hash.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert!(!logs.contains(&token.expose()), "token in logs");
        assert!(!logs.contains(&hex), "full hash in logs");
        assert!(
            !logs.contains(&format!("{:?}", hash.as_bytes())),
            "hash bytes in logs"
        );
    }
    assert!(
        logs.contains("fingerprint="),
        "a short fingerprint may appear"
    );
}
