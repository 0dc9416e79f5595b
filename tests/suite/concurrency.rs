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

/// 32 increments of one session at once on one server: none is lost, each
/// request gets a distinct count, and they cost fewer writes than there
/// are increments (each write moves the row's version by one) on a store
/// that combines them, because the server applies them in turn and writes
/// them together.
pub async fn concurrent_updates_on_one_server_are_combined_into_fewer_writes(store: TestStore) {
    const UPDATES: usize = 32;
    let client = client_with_session(&store).await; // counter = 1
    let id = client.session_id().expect("id");
    let before = store.row(id).await.expect("row").version;
    let replies = together(UPDATES, |_| {
        let mut client = client.clone();
        async move { client.post("/incr").await }
    })
    .await;
    let mut counts: Vec<u64> = replies
        .iter()
        .map(|reply| {
            assert_eq!(reply.status, StatusCode::OK);
            let body = reply.body.trim().to_owned();
            body.parse().unwrap_or_else(|_| panic!("a count: {body:?}"))
        })
        .collect();
    counts.sort_unstable();
    let expected: Vec<u64> = (2..=1 + UPDATES as u64).collect();
    assert_eq!(counts, expected, "each increment saw its own count");
    let row = store.row(id).await.expect("row");
    assert_eq!(row.fields.data["counter"], 1 + UPDATES as u64);
    let writes = row.version - before;
    if store.store().combines_updates() {
        assert!(
            writes < UPDATES as i64,
            "{UPDATES} concurrent increments took {writes} writes"
        );
    } else {
        // SQLite: each update writes on its own.
        assert!(writes >= UPDATES as i64, "{writes} writes");
    }
}

/// Concurrent increments of one session, every third request cancelled
/// while it waits: the others finish, each counted once; a cancelled one
/// counts once or not at all.
pub async fn cancelled_updates_do_not_hold_up_or_lose_the_others(store: TestStore) {
    const UPDATES: usize = 24;
    let client = client_with_session(&store).await; // counter = 1
    let id = client.session_id().expect("id");
    let tasks: Vec<_> = (0..UPDATES)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.post("/incr").await.status })
        })
        .collect();
    tokio::task::yield_now().await;
    let mut kept = 0;
    let mut waiting = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if i % 3 == 0 {
            task.abort();
        } else {
            waiting.push(task);
        }
    }
    for task in waiting {
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), task)
            .await
            .expect("a cancelled update held the others up")
            .expect("task");
        assert_eq!(status, StatusCode::OK);
        kept += 1;
    }
    let counter = store.row(id).await.expect("row").fields.data["counter"]
        .as_u64()
        .expect("a count");
    assert!(
        (1 + kept..=1 + UPDATES as u64).contains(&counter),
        "{kept} finished of {UPDATES}: counter {counter}"
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
                (reply.status, std::mem::take(&mut client.jar))
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
    let mut on_b = on_a.on(app_b.clone());
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
    let mut slow = client.on(gated::app(store.layer(), gate.clone()));
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

/// More writers at once than one batch holds (SQLite and PostgreSQL
/// combine concurrent value writes into batches of up to 32): every
/// session gets each of its own increments exactly once, and each
/// increment is one version.
pub async fn concurrent_writes_of_many_sessions_are_each_written_once(store: TestStore) {
    const SESSIONS: usize = 40;
    const INCREMENTS: usize = 10;
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        clients.push(client_with_session(&store).await); // counter = 1
    }
    let mut before = Vec::new();
    for client in &clients {
        let id = client.session_id().expect("id");
        before.push(store.row(id).await.expect("row").version);
    }
    let replies = together(SESSIONS, |i| {
        let mut client = clients[i].clone();
        async move {
            let mut bodies = Vec::new();
            for _ in 0..INCREMENTS {
                let reply = client.post("/incr").await;
                assert_eq!(reply.status, StatusCode::OK);
                bodies.push(reply.body);
            }
            bodies
        }
    })
    .await;
    for (i, bodies) in replies.iter().enumerate() {
        let expected: Vec<String> = (2..=INCREMENTS + 1).map(|n| n.to_string()).collect();
        assert_eq!(
            bodies, &expected,
            "session {i} saw its own increments in order"
        );
        let row = store
            .row(clients[i].session_id().expect("id"))
            .await
            .expect("row");
        assert_eq!(
            row.fields.data["counter"],
            INCREMENTS as u64 + 1,
            "session {i}"
        );
        assert_eq!(
            row.version,
            before[i] + INCREMENTS as i64,
            "session {i}: one version per increment, none written twice"
        );
    }
}

/// Runs every `(i, id, version, data)` value write at once, straight on
/// the store; whether each was written, by `i`.
async fn write_all_at_once(
    inner: &std::sync::Arc<dyn keycard::store::SessionStore>,
    writes: Vec<(
        usize,
        keycard::token::SessionId,
        i64,
        keycard::store::SessionData,
    )>,
) -> std::collections::HashMap<usize, bool> {
    let tasks: Vec<_> = writes
        .into_iter()
        .map(|(i, id, version, data)| {
            let inner = inner.clone();
            tokio::spawn(async move {
                let written = inner
                    .update_data(id, version, &data, None)
                    .await
                    .expect("store reachable");
                (i, written)
            })
        })
        .collect();
    let mut written = std::collections::HashMap::new();
    for task in tasks {
        let (i, ok) = task.await.expect("task");
        written.insert(i, ok);
    }
    written
}

/// Value writes of many sessions at once, straight to the store, some with
/// a version that is out of date and two of one session with the same
/// version: each writer is told about its own row only, a stale write
/// changes nothing, and of the two same-version writes exactly one lands.
pub async fn concurrent_value_writes_are_judged_by_their_own_versions(store: TestStore) {
    use keycard::store::{SessionData, SessionStore};
    const SESSIONS: usize = 48;
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        let mut client = client_with_session(&store).await;
        // A second write, so that version 1 is out of date.
        assert_eq!(client.post("/incr").await.body, "2");
        let id = client.session_id().expect("id");
        ids.push((id, store.row(id).await.expect("row").version));
    }
    let value = |n: usize| {
        let mut data = SessionData::new();
        data.insert("counter".into(), serde_json::json!(1000 + n));
        data
    };
    let inner: std::sync::Arc<dyn SessionStore> = store.store().clone();
    // Session i: even i writes with its current version, odd i with the
    // stale version 1; session 0 also gets a second write of its current
    // version, which must lose to the first.
    let mut writes = Vec::new();
    for (i, &(id, version)) in ids.iter().enumerate() {
        let expected = if i % 2 == 0 { version } else { 1 };
        writes.push((i, id, expected, value(i)));
    }
    writes.push((SESSIONS, ids[0].0, ids[0].1, value(SESSIONS)));
    let written = write_all_at_once(&inner, writes).await;
    for (i, &(id, version)) in ids.iter().enumerate().skip(1) {
        let row = store.row(id).await.expect("row");
        if i % 2 == 0 {
            assert!(written[&i], "session {i} wrote with its current version");
            assert_eq!(row.fields.data["counter"], 1000 + i as u64, "session {i}");
            assert_eq!(row.version, version + 1, "session {i}");
        } else {
            assert!(!written[&i], "session {i} wrote with a stale version");
            assert_eq!(row.fields.data["counter"], 2, "session {i} unchanged");
            assert_eq!(row.version, version, "session {i} unchanged");
        }
    }
    let (first, second) = (written[&0], written[&SESSIONS]);
    assert!(
        first != second,
        "exactly one of two same-version writes lands"
    );
    let row = store.row(ids[0].0).await.expect("row");
    let winner = if first { 1000 } else { 1000 + SESSIONS as u64 };
    assert_eq!(row.fields.data["counter"], winner);
    assert_eq!(row.version, ids[0].1 + 1);
}

/// Writers that stop waiting (their requests were cancelled) leave the
/// others' writes and the store intact: nobody else waits for ever, and no
/// write is applied twice.
pub async fn cancelled_writers_do_not_hold_up_the_others(store: TestStore) {
    use keycard::store::{SessionData, SessionStore};
    const SESSIONS: usize = 24;
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        let client = client_with_session(&store).await;
        let id = client.session_id().expect("id");
        ids.push((id, store.row(id).await.expect("row").version));
    }
    let inner: std::sync::Arc<dyn SessionStore> = store.store().clone();
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &(id, version))| {
            let inner = inner.clone();
            let mut data = SessionData::new();
            data.insert("counter".into(), serde_json::json!(500 + i));
            tokio::spawn(async move { inner.update_data(id, version, &data, None).await })
        })
        .collect();
    // Cancel every third writer as soon as it may have queued.
    tokio::task::yield_now().await;
    let mut kept = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if i % 3 == 0 {
            task.abort();
        } else {
            kept.push((i, task));
        }
    }
    for (i, task) in kept {
        let written = tokio::time::timeout(std::time::Duration::from_secs(30), task)
            .await
            .expect("a cancelled writer held the others up")
            .expect("task")
            .expect("store reachable");
        assert!(written, "session {i}");
    }
    for (i, &(id, version)) in ids.iter().enumerate() {
        let row = store.row(id).await.expect("row");
        if i % 3 == 0 {
            // Cancelled: written once or not at all.
            assert!(
                (row.version == version && row.fields.data["counter"] == 1)
                    || (row.version == version + 1 && row.fields.data["counter"] == 500 + i as u64),
                "session {i}: version {} counter {}",
                row.version,
                row.fields.data["counter"]
            );
        } else {
            assert_eq!(row.version, version + 1, "session {i}");
            assert_eq!(row.fields.data["counter"], 500 + i as u64, "session {i}");
        }
    }
    // And the store goes on writing.
    let (id, _) = ids[1];
    let row = store.row(id).await.expect("row");
    let written = inner
        .update_data(id, row.version, &row.fields.data, None)
        .await
        .expect("store reachable");
    assert!(written);
}

/// Many first reads at once (SQLite, PostgreSQL and MySQL combine
/// concurrent loads into one `SELECT … IN`): each request sees its own
/// session only; a forged token for a real session and an id nobody has
/// stay anonymous even when their load shares a statement with real ones.
pub async fn concurrent_loads_each_see_only_their_own_session(store: TestStore) {
    const SESSIONS: usize = 40;
    let mut clients = Vec::new();
    for i in 0..SESSIONS {
        let mut client = client_with_session(&store).await;
        let reply = client.post(&format!("/set/mine/value{i}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        clients.push(client);
    }
    let cookie_name = |suffix: &str| {
        clients[0]
            .jar
            .names()
            .find(|k| k.ends_with(suffix))
            .map(str::to_owned)
    };
    let token_name = cookie_name("-token").expect("token cookie");
    let id_name = cookie_name("-id").expect("id cookie");
    // Every third request: a forged token for a real session; every
    // fifth: an id that no session has.
    let mut visitors = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let mut visitor = client.clone();
        if i % 3 == 1 {
            let forged = keycard::token::SessionToken::generate()
                .expect("rng")
                .expose();
            visitor.jar.insert(token_name.clone(), forged);
        } else if i % 5 == 2 {
            visitor
                .jar
                .insert(id_name.clone(), format!("{}", 900_000_000 + i));
        }
        visitors.push(visitor);
    }
    let replies = together(SESSIONS, |i| {
        let mut visitor = visitors[i].clone();
        async move { visitor.get("/get/mine").await }
    })
    .await;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
        if i % 3 == 1 || i % 5 == 2 {
            assert_eq!(reply.body, "", "request {i} is anonymous");
        } else {
            assert_eq!(
                reply.body,
                format!("value{i}"),
                "request {i} sees its own session"
            );
        }
    }
}

/// Value writes of many sessions at once, straight to the store: some with
/// their current version, some stale, some of sessions deleted meanwhile.
/// Each writer is told about its own row (MySQL batches them as a locked
/// read of the versions and one `UPDATE … JOIN` of the rows that matched);
/// a refused writer that reads its row again and retries is written, and
/// a deleted session stays deleted.
pub async fn refused_batched_writes_retry_and_deleted_sessions_stay_gone(store: TestStore) {
    use keycard::store::{SessionData, SessionStore};
    const SESSIONS: usize = 36;
    let inner: std::sync::Arc<dyn SessionStore> = store.store().clone();
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        let mut client = client_with_session(&store).await;
        assert_eq!(client.post("/incr").await.body, "2");
        let id = client.session_id().expect("id");
        ids.push((id, store.row(id).await.expect("row").version));
    }
    // Session i: i % 3 == 0 writes with its current version, 1 with the
    // stale version 1, 2 is deleted first.
    for (i, &(id, _)) in ids.iter().enumerate() {
        if i % 3 == 2 {
            assert!(inner.delete(id).await.expect("store reachable"));
        }
    }
    let value = |n: usize| {
        let mut data = SessionData::new();
        data.insert("counter".into(), serde_json::json!(n));
        data
    };
    let write_all = |round: Vec<(usize, keycard::token::SessionId, i64)>| {
        let writes = round
            .into_iter()
            .map(|(i, id, version)| (i, id, version, value(2000 + i)))
            .collect();
        write_all_at_once(&inner, writes)
    };
    let first: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &(id, version))| (i, id, if i % 3 == 1 { 1 } else { version }))
        .collect();
    let written = write_all(first).await;
    for i in 0..SESSIONS {
        assert_eq!(written[&i], i % 3 == 0, "session {i}, first round");
    }
    // The refused live ones read their row again and retry, all at once.
    let mut retry = Vec::new();
    for (i, &(id, _)) in ids.iter().enumerate().filter(|(i, _)| i % 3 == 1) {
        let row = store.row(id).await.expect("row");
        assert_eq!(row.fields.data["counter"], 2, "session {i} unchanged");
        retry.push((i, id, row.version));
    }
    let written = write_all(retry).await;
    assert!(written.values().all(|&ok| ok), "every retry is written");
    for (i, &(id, version)) in ids.iter().enumerate() {
        let row = store.row(id).await;
        if i % 3 == 2 {
            assert!(row.is_none(), "session {i} stays deleted");
        } else {
            let row = row.expect("row");
            assert_eq!(row.fields.data["counter"], 2000 + i as u64, "session {i}");
            assert_eq!(row.version, version + 1, "session {i}: written once");
        }
    }
}

/// Renewals of many sessions at once (every store combines concurrent
/// touches into one statement): each is told whether its own row exists,
/// `last_activity` only moves forward, a deleted session is not brought
/// back, and an id nobody has is answered `false`.
pub async fn concurrent_touches_each_renew_their_own_session(store: TestStore) {
    use keycard::store::SessionStore;
    const SESSIONS: usize = 40;
    let inner: std::sync::Arc<dyn SessionStore> = store.store().clone();
    let mut rows = Vec::new();
    for _ in 0..SESSIONS {
        let client = client_with_session(&store).await;
        let id = client.session_id().expect("id");
        rows.push(store.row(id).await.expect("row"));
    }
    // Session i: i % 4 == 3 is deleted first; even i is renewed an hour
    // later, odd i an hour earlier (which must not move it back).
    for (i, row) in rows.iter().enumerate() {
        if i % 4 == 3 {
            assert!(inner.delete(row.id).await.expect("store reachable"));
        }
    }
    let hour = chrono::Duration::hours(1);
    let mut touches: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let at = if i % 2 == 0 {
                row.fields.last_activity + hour
            } else {
                row.fields.last_activity - hour
            };
            (i, row.id, at)
        })
        .collect();
    let nobody = keycard::token::SessionId::new(900_000_001).expect("id");
    touches.push((SESSIONS, nobody, chrono::Utc::now()));
    let tasks: Vec<_> = touches
        .iter()
        .map(|&(i, id, at)| {
            let inner = inner.clone();
            tokio::spawn(async move { (i, inner.touch(id, at).await.expect("store reachable")) })
        })
        .collect();
    let mut exists = std::collections::HashMap::new();
    for task in tasks {
        let (i, found) = task.await.expect("task");
        exists.insert(i, found);
    }
    assert!(!exists[&SESSIONS], "an id nobody has");
    for (i, before) in rows.iter().enumerate() {
        let row = store.row(before.id).await;
        if i % 4 == 3 {
            assert!(!exists[&i], "session {i} was deleted");
            assert!(row.is_none(), "session {i} stays deleted");
            continue;
        }
        assert!(exists[&i], "session {i} exists");
        let row = row.expect("row");
        let expected = if i % 2 == 0 {
            before.fields.last_activity + hour
        } else {
            before.fields.last_activity
        };
        assert_eq!(row.fields.last_activity, expected, "session {i}");
        assert_eq!(
            row.version, before.version,
            "session {i}: a touch is no write"
        );
        assert_eq!(row.fields.data, before.fields.data, "session {i}");
    }
}
