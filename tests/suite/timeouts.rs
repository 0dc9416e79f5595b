//! Idle and absolute timeouts, the clock, IP binding, purge and counting.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::TimeDelta;
use keycard::clock::Clock as _;
use keycard::store::ExpiryCutoffs;

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
    let now = store.clock.now();
    let cutoffs = ExpiryCutoffs {
        idle_before: now - TimeDelta::minutes(30),
        created_before: now - TimeDelta::hours(12),
    };
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
