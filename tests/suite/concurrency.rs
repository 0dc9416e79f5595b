//! Concurrent requests of one session, and several app servers on one store.

use std::collections::HashSet;

use axum::http::StatusCode;

use crate::common::{Client, TestStore, app};
use crate::suite::client_with_session;

/// Runs `n` copies of `f` at once on the runtime's worker threads.
async fn together<F, Fut, T>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

pub async fn concurrent_updates_of_one_session_lose_nothing(store: TestStore) {
    let client = client_with_session(&store).await; // counter = 1
    let statuses = together(8, |_| {
        let mut client = client.clone();
        async move {
            let mut statuses = Vec::new();
            for _ in 0..100 {
                statuses.push(client.post("/incr").await.status);
            }
            statuses
        }
    })
    .await;
    for status in statuses.into_iter().flatten() {
        assert_eq!(status, StatusCode::OK);
    }
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    assert_eq!(
        row.fields.data["counter"], 801,
        "8 x 100 increments, none lost"
    );
}

pub async fn concurrent_writes_to_different_keys_are_all_kept(store: TestStore) {
    let client = client_with_session(&store).await;
    together(16, |i| {
        let mut client = client.clone();
        async move {
            let reply = client.post(&format!("/set/key{i}/value{i}")).await;
            assert_eq!(reply.status, StatusCode::OK);
        }
    })
    .await;
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    for i in 0..16 {
        assert_eq!(
            row.fields.data[&format!("key{i}")],
            format!("value{i}"),
            "key{i}"
        );
    }
    assert_eq!(row.fields.data["counter"], 1);
}

pub async fn logout_racing_a_write_leaves_the_session_dead(store: TestStore) {
    for _ in 0..10 {
        let mut client = client_with_session(&store).await;
        client.post("/login/alice").await;
        let id = client.session_id().expect("id");
        let captured = client.clone();
        let results = together(2, |i| {
            let mut client = captured.clone();
            async move {
                if i == 0 {
                    client.post("/logout").await.status
                } else {
                    client.post("/set/late/write").await.status
                }
            }
        })
        .await;
        assert_eq!(results[0], StatusCode::OK);
        assert!(
            results[1] == StatusCode::OK || results[1] == StatusCode::CONFLICT,
            "{:?}",
            results[1]
        );
        assert!(store.row(id).await.is_none(), "logout wins: no row");
        let mut replay = captured.clone();
        assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    }
}

pub async fn rotation_racing_a_write_never_revives_the_old_token(store: TestStore) {
    for _ in 0..10 {
        let client = client_with_session(&store).await;
        let id = client.session_id().expect("id");
        let old = client.clone();
        let results = together(2, |i| {
            let mut client = old.clone();
            async move {
                let reply = if i == 0 {
                    client.post("/login/alice").await
                } else {
                    client.post("/set/late/write").await
                };
                (reply.status, client.jar)
            }
        })
        .await;
        assert_eq!(results[0].0, StatusCode::OK);
        assert!(
            results[1].0 == StatusCode::OK || results[1].0 == StatusCode::CONFLICT,
            "{:?}",
            results[1].0
        );
        let row = store.row(id).await.expect("row");
        assert_eq!(row.fields.user_id.as_deref(), Some("alice"));
        let mut replay = old.clone();
        assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
        let mut new = old.clone();
        new.jar = results[0].1.clone();
        assert_eq!(new.get("/whoami").await.body, "alice");
    }
}

pub async fn concurrent_first_visits_create_distinct_sessions(store: TestStore) {
    let app = app(store.layer());
    let ids = together(50, |i| {
        let mut client = Client::new(app.clone());
        async move {
            let reply = client.post(&format!("/set/visitor/{i}")).await;
            assert_eq!(reply.status, StatusCode::OK);
            (client.session_id().expect("id"), client)
        }
    })
    .await;
    let distinct: HashSet<_> = ids.iter().map(|(id, _)| *id).collect();
    assert_eq!(distinct.len(), 50);
    for (i, (_, mut client)) in ids.into_iter().enumerate() {
        assert_eq!(client.get("/get/visitor").await.body, i.to_string());
    }
}

pub async fn two_app_servers_share_one_store(store: TestStore) {
    let second = store.twin().await;
    let app_a = app(store.layer());
    let app_b = app(second.layer());
    let mut on_a = Client::new(app_a.clone());
    on_a.post("/login/alice").await;
    let mut on_b = on_a.clone();
    on_b.app = app_b.clone();
    assert_eq!(
        on_b.get("/whoami").await.body,
        "alice",
        "login on A seen on B"
    );
    // Concurrent writes through A and B keep both.
    let (a, b) = tokio::join!(
        {
            let mut c = on_a.clone();
            async move { c.post("/set/from/a").await.status }
        },
        {
            let mut c = on_b.clone();
            async move { c.post("/set/via/b").await.status }
        }
    );
    assert_eq!((a, b), (StatusCode::OK, StatusCode::OK));
    assert_eq!(on_a.get("/get/via").await.body, "b");
    assert_eq!(on_b.get("/get/from").await.body, "a");
    // A logout on B is effective on A's next request.
    on_b.post("/logout").await;
    assert_eq!(on_a.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

/// A handler that loads the session, then waits for the test's go-ahead
/// before writing: lets a test put another request exactly in between.
mod gated {
    use std::sync::Arc;

    use axum::Router;
    use axum::extract::{Extension, Path};
    use axum::routing::post;
    use keycard::{Session, SessionLayer};
    use tokio::sync::Notify;

    #[derive(Default)]
    pub struct Gate {
        pub loaded: Notify,
        pub go: Notify,
    }

    async fn slow_set(
        session: Session,
        Extension(gate): Extension<Arc<Gate>>,
        Path(key): Path<String>,
    ) -> Result<&'static str, keycard::Error> {
        session.get_value("counter").await?;
        gate.loaded.notify_one();
        gate.go.notified().await;
        session.insert(&key, "slow").await?;
        Ok("set")
    }

    async fn slow_incr(
        session: Session,
        Extension(gate): Extension<Arc<Gate>>,
    ) -> Result<String, keycard::Error> {
        session.get_value("counter").await?;
        gate.loaded.notify_one();
        gate.go.notified().await;
        let n = session
            .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
            .await?;
        Ok(n.to_string())
    }

    pub fn app(layer: SessionLayer, gate: Arc<Gate>) -> Router {
        Router::new()
            .route("/slow-set/{key}", post(slow_set))
            .route("/slow-incr", post(slow_incr))
            .layer(layer)
            .layer(Extension(gate))
    }
}

/// Starts a gated request and returns once it has loaded its session.
async fn start_gated(
    client: &Client,
    gate: &std::sync::Arc<gated::Gate>,
    store: &TestStore,
    path: &str,
) -> tokio::task::JoinHandle<crate::common::Reply> {
    let mut slow = client.clone();
    slow.app = gated::app(store.layer(), gate.clone());
    let path = path.to_owned();
    let task = tokio::spawn(async move { slow.post(&path).await });
    gate.loaded.notified().await;
    task
}

pub async fn stale_write_is_merged_with_a_newer_one(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let gate = std::sync::Arc::new(gated::Gate::default());
    let slow = start_gated(&client, &gate, &store, "/slow-set/a").await;
    assert_eq!(client.post("/set/b/fast").await.status, StatusCode::OK);
    store.calls().reset();
    gate.go.notify_one();
    assert_eq!(slow.await.expect("slow request").status, StatusCode::OK);
    assert_eq!(
        crate::common::Calls::get(&store.calls().update),
        2,
        "one refused optimistic write, one locked merge"
    );
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    assert_eq!(row.fields.data["a"], "slow");
    assert_eq!(row.fields.data["b"], "fast");
    assert_eq!(row.fields.data["counter"], 1);
}

pub async fn stale_update_reapplies_on_the_newer_value(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let gate = std::sync::Arc::new(gated::Gate::default());
    let slow = start_gated(&client, &gate, &store, "/slow-incr").await;
    assert_eq!(client.post("/incr").await.body, "2");
    gate.go.notify_one();
    assert_eq!(
        slow.await.expect("slow").body,
        "3",
        "ran again on 2, not on 1"
    );
    assert_eq!(client.get("/read").await.body, "3");
}

pub async fn stale_write_after_logout_is_a_conflict_and_no_resurrection(store: TestStore) {
    let mut client = client_with_session(&store).await;
    client.post("/login/alice").await;
    let id = client.session_id().expect("id");
    let gate = std::sync::Arc::new(gated::Gate::default());
    let slow = start_gated(&client, &gate, &store, "/slow-set/a").await;
    let captured = client.clone();
    assert_eq!(client.post("/logout").await.status, StatusCode::OK);
    gate.go.notify_one();
    let reply = slow.await.expect("slow");
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply.set_cookies().is_empty());
    assert!(store.row(id).await.is_none(), "not re-inserted");
    let mut replay = captured;
    assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

pub async fn stale_write_after_rotation_is_a_conflict(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let id = client.session_id().expect("id");
    let gate = std::sync::Arc::new(gated::Gate::default());
    let slow = start_gated(&client, &gate, &store, "/slow-set/a").await;
    let old = client.clone();
    client.post("/login/alice").await;
    gate.go.notify_one();
    assert_eq!(slow.await.expect("slow").status, StatusCode::CONFLICT);
    let row = store.row(id).await.expect("row");
    assert!(
        !row.fields.data.contains_key("a"),
        "the stale write was dropped"
    );
    let mut replay = old;
    assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(client.get("/whoami").await.body, "alice");
}

pub async fn stale_update_after_logout_is_a_conflict(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let id = client.session_id().expect("id");
    let gate = std::sync::Arc::new(gated::Gate::default());
    let slow = start_gated(&client, &gate, &store, "/slow-incr").await;
    client.post("/logout").await;
    gate.go.notify_one();
    assert_eq!(slow.await.expect("slow").status, StatusCode::CONFLICT);
    assert!(store.row(id).await.is_none());
}
