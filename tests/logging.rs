//! What keycard logs: the events a session's life produces, and never a
//! token or its full hash.

mod common;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use common::{Client, app};

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

/// Alone in its test binary: the subscriber is global, so no other test's
/// thread can hide an event from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_a_token_or_its_hash() {
    let store = common::stores::sqlite().await.expect("SQLite");
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
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
    let csrf = client.get("/csrf").await.body;
    assert_eq!(csrf.len(), 43);
    client.headers = vec![("sec-fetch-site".into(), "same-origin".into())];
    client
        .post_form("/guarded/note", "note=x&csrf_token=wrong-token")
        .await;
    client
        .post_form("/guarded/note", &format!("note=x&csrf_token={csrf}"))
        .await;
    client.headers = vec![
        ("sec-fetch-site".into(), "cross-site".into()),
        ("origin".into(), "https://evil.example".into()),
    ];
    client.post("/incr").await;
    client.headers.clear();
    store.counting.fail_loads.store(true, Ordering::SeqCst);
    client.get("/read").await;
    store.counting.fail_loads.store(false, Ordering::SeqCst);
    client.post("/logout").await;

    let logs = String::from_utf8(captured.0.lock().expect("logs").clone()).expect("utf-8");
    assert!(logs.contains("session created"), "{logs}");
    assert!(logs.contains("session token rotated"), "{logs}");
    assert!(logs.contains("session cookie rejected"), "{logs}");
    assert!(logs.contains("session ended"), "{logs}");
    assert!(
        logs.contains("synchronizer token missing or wrong"),
        "{logs}"
    );
    assert!(logs.contains("cross-origin request refused"), "{logs}");
    assert!(!logs.contains(&csrf), "synchronizer token in logs");
    assert!(!logs.contains("wrong-token"), "a presented token in logs");
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
