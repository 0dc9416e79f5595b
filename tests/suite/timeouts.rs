//! Idle and absolute timeouts, the clock, IP binding, purge and counting.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::TimeDelta;
use keycard::clock::Clock as _;

use crate::common::{Client, TestStore, app};
use crate::suite::client_with_session;

pub async fn idle_timeout_ends_the_session(store: TestStore) {
    let layer = store.layer().idle_timeout(Duration::from_secs(600));
    let mut client = Client::new(app(layer));
    client.post("/login/alice").await;
    store.clock.advance(TimeDelta::seconds(590));
    assert_eq!(client.get("/whoami").await.body, "alice", "still within");
    // That read renewed last_activity (past the touch interval).
    store.clock.advance(TimeDelta::seconds(590));
    assert_eq!(client.get("/whoami").await.body, "alice", "renewed by use");
    store.clock.advance(TimeDelta::seconds(601));
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

pub async fn absolute_timeout_ends_a_busy_session(store: TestStore) {
    let layer = store
        .layer()
        .idle_timeout(Duration::from_secs(600))
        .absolute_timeout(Duration::from_secs(3600));
    let mut client = Client::new(app(layer));
    client.post("/login/alice").await;
    for _ in 0..11 {
        store.clock.advance(TimeDelta::seconds(300));
        assert_eq!(client.get("/whoami").await.body, "alice");
    }
    store.clock.advance(TimeDelta::seconds(301));
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

pub async fn future_activity_from_a_stepped_back_clock_is_refused(store: TestStore) {
    let mut client = client_with_session(&store).await;
    client.post("/login/alice").await;
    store.clock.advance(TimeDelta::seconds(-1));
    assert_eq!(
        client.get("/whoami").await.body,
        "alice",
        "within tolerated skew"
    );
    store.clock.advance(TimeDelta::minutes(-10));
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

pub async fn ip_binding_refuses_another_address(store: TestStore) {
    let mut client = Client::new(app(store.layer().bind_ip(true)));
    client.peer = Some(SocketAddr::from(([192, 0, 2, 1], 5000)));
    client.post("/login/alice").await;
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    assert_eq!(row.fields.ip_address.as_deref(), Some("192.0.2.1"));
    client.peer = Some(SocketAddr::from(([192, 0, 2, 1], 6000)));
    assert_eq!(client.get("/whoami").await.body, "alice", "port may change");
    // The same address in IPv4-mapped IPv6 form is the same client.
    client.peer = Some("[::ffff:192.0.2.1]:7000".parse().expect("addr"));
    assert_eq!(client.get("/whoami").await.body, "alice");
    client.peer = Some(SocketAddr::from(([198, 51, 100, 7], 5000)));
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

/// IP binding that cannot see the client's address fails closed: the
/// session is refused (and kept for the client that can show its
/// address), not served to whoever holds the cookie.
pub async fn ip_binding_without_the_client_address_refuses_the_session(store: TestStore) {
    let mut client = Client::new(app(store.layer().bind_ip(true)));
    client.peer = Some(SocketAddr::from(([192, 0, 2, 1], 5000)));
    client.post("/login/alice").await;
    let id = client.session_id().expect("id");
    client.peer = None;
    let reply = client.get("/whoami").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert!(reply.set_cookies().is_empty(), "nothing written for it");
    assert!(store.row(id).await.is_some(), "the session itself stays");
    client.peer = Some(SocketAddr::from(([192, 0, 2, 1], 5001)));
    assert_eq!(client.get("/whoami").await.body, "alice");

    // Signed in without an address, a session is never usable: loud, not
    // silently unbound.
    let mut blind = Client::new(app(store.layer().bind_ip(true)));
    blind.post("/login/bob").await;
    assert_eq!(blind.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    blind.peer = Some(SocketAddr::from(([192, 0, 2, 1], 5000)));
    assert_eq!(blind.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

pub async fn ip_binding_off_by_default(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    client.peer = Some(SocketAddr::from(([192, 0, 2, 1], 5000)));
    client.post("/login/alice").await;
    client.peer = Some(SocketAddr::from(([198, 51, 100, 7], 5000)));
    assert_eq!(client.get("/whoami").await.body, "alice");
}

pub async fn purge_deletes_only_expired_rows(store: TestStore) {
    let app = app(store.layer());
    let mut old = Client::new(app.clone());
    old.post("/incr").await;
    let mut ancient = Client::new(app.clone());
    ancient.post("/incr").await;
    store.clock.advance(TimeDelta::hours(1));
    let mut fresh = Client::new(app.clone());
    fresh.post("/incr").await;
    let cutoffs =
        keycard::store::ExpiryCutoffs::at(&keycard::SessionConfig::default(), store.clock.now());
    let purged = store
        .store()
        .delete_expired(cutoffs, 1)
        .await
        .expect("purge");
    assert_eq!(purged, 1, "bounded by the batch size");
    let purged = store
        .store()
        .delete_expired(cutoffs, 100)
        .await
        .expect("purge");
    assert_eq!(purged, 1);
    assert!(store.row(old.session_id().expect("id")).await.is_none());
    assert!(store.row(ancient.session_id().expect("id")).await.is_none());
    assert!(store.row(fresh.session_id().expect("id")).await.is_some());
    assert_eq!(fresh.get("/read").await.body, "1");
}

pub async fn count_active_since_counts_recent_rows(store: TestStore) {
    let app = app(store.layer());
    let start = store.clock.now();
    for _ in 0..3 {
        Client::new(app.clone()).post("/incr").await;
    }
    store.clock.advance(TimeDelta::minutes(5));
    let later = store.clock.now();
    Client::new(app.clone()).post("/incr").await;
    assert_eq!(
        store
            .store()
            .count_active_since(start)
            .await
            .expect("count"),
        4
    );
    assert_eq!(
        store
            .store()
            .count_active_since(later)
            .await
            .expect("count"),
        1
    );
}

pub async fn persistent_sessions_have_their_own_timeouts(store: TestStore) {
    let layer = store
        .layer()
        .idle_timeout(Duration::from_secs(600))
        .persistent_timeouts(Duration::from_secs(3600), Duration::from_secs(7200));
    let app = app(layer);
    let mut remembered = Client::new(app.clone());
    remembered.post("/login/alice").await;
    remembered.post("/persistent/true").await;
    let mut browser = Client::new(app.clone());
    browser.post("/login/bob").await;
    store.clock.advance(TimeDelta::seconds(1200));
    assert_eq!(
        browser.get("/whoami").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        remembered.get("/whoami").await.body,
        "alice",
        "persistent idle: 1 h"
    );
    store.clock.advance(TimeDelta::seconds(3500));
    assert_eq!(remembered.get("/whoami").await.body, "alice");
    store.clock.advance(TimeDelta::seconds(2600));
    assert_eq!(
        remembered.get("/whoami").await.status,
        StatusCode::UNAUTHORIZED,
        "persistent absolute: 2 h"
    );
}

pub async fn purge_runs_in_bounded_batches_and_respects_persistent_limits(store: TestStore) {
    let layer = store
        .layer()
        .idle_timeout(Duration::from_secs(600))
        .persistent_timeouts(Duration::from_secs(3600), Duration::from_secs(7200))
        .purge_batch_size(2);
    let app = app(layer.clone());
    let mut expired = Vec::new();
    for _ in 0..5 {
        let mut client = Client::new(app.clone());
        client.post("/incr").await;
        expired.push(client.session_id().expect("id"));
    }
    let mut remembered = Client::new(app.clone());
    remembered.post("/persistent/true").await;
    store.clock.advance(TimeDelta::seconds(1200));
    let mut fresh = Client::new(app.clone());
    fresh.post("/incr").await;
    let before = store
        .counting
        .purge_attempts
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(layer.admin().purge_expired().await.expect("purge"), 5);
    let batches = store
        .counting
        .purge_attempts
        .load(std::sync::atomic::Ordering::SeqCst)
        - before;
    assert_eq!(batches, 3, "5 rows in batches of 2: 2 + 2 + 1");
    for id in expired {
        assert!(store.row(id).await.is_none());
    }
    assert_eq!(remembered.get("/read").await.body, "0");
    assert!(
        store
            .row(remembered.session_id().expect("id"))
            .await
            .is_some()
    );
    assert_eq!(fresh.get("/read").await.body, "1");
    assert_eq!(layer.admin().purge_expired().await.expect("purge"), 0);
}

pub async fn purge_task_survives_errors_and_stops_on_shutdown(store: TestStore) {
    use std::sync::atomic::Ordering;
    let layer = store.layer().idle_timeout(Duration::from_secs(600));
    let mut client = Client::new(app(layer.clone()));
    client.post("/incr").await;
    let id = client.session_id().expect("id");
    store.clock.advance(TimeDelta::seconds(1200));
    store.counting.fail_purges.store(true, Ordering::SeqCst);
    let task = layer.admin().spawn_purge_task(Duration::from_millis(5));
    let attempts = || store.counting.purge_attempts.load(Ordering::SeqCst);
    wait_until(|| attempts() >= 3).await;
    assert!(!task.is_finished(), "failures do not kill the task");
    assert!(store.row(id).await.is_some());
    store.counting.fail_purges.store(false, Ordering::SeqCst);
    let mut purged = false;
    for _ in 0..400 {
        if store.row(id).await.is_none() {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(purged, "the task purged once the store recovered");
    task.shutdown().await;
    let after = attempts();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(attempts(), after, "no purge after shutdown");
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

pub async fn ip_binding_behind_trusted_proxies_uses_the_forwarded_client(store: TestStore) {
    let layer = store
        .layer()
        .bind_ip(true)
        .trusted_proxies(["10.0.0.0/8".parse().expect("net")]);
    let mut client = Client::new(app(layer));
    client.peer = Some(SocketAddr::from(([10, 0, 0, 1], 443)));
    client.set_headers(vec![(
        "x-forwarded-for".into(),
        "6.6.6.6, 203.0.113.9".into(),
    )]);
    client.post("/login/alice").await;
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    assert_eq!(row.fields.ip_address.as_deref(), Some("203.0.113.9"));
    // Another proxy of ours, the same client: still bound.
    client.peer = Some(SocketAddr::from(([10, 0, 0, 2], 443)));
    client.set_headers(vec![("x-forwarded-for".into(), "203.0.113.9".into())]);
    assert_eq!(client.get("/whoami").await.body, "alice");
    // The proxy passes the client's own `Forwarded` through: it is not
    // read (only `X-Forwarded-For`, the header the proxy writes).
    client.set_headers(vec![
        ("forwarded".into(), "for=203.0.113.9".into()),
        ("x-forwarded-for".into(), "203.0.113.10".into()),
    ]);
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    // The client moved: refused.
    client.set_headers(vec![("x-forwarded-for".into(), "203.0.113.10".into())]);
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    // A spoofed header straight from an untrusted peer changes nothing.
    client.peer = Some(SocketAddr::from(([198, 51, 100, 1], 443)));
    client.set_headers(vec![("x-forwarded-for".into(), "203.0.113.9".into())]);
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}
