//! Per-user control: the concurrent-session policy, listing and ending a
//! user's sessions, credential versions, and the admin handle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::http::StatusCode;
use chrono::TimeDelta;
use keycard::clock::Clock as _;
use keycard::store::SessionFields;
use keycard::token::SessionToken;
use keycard::{AuthVersions, BoxError, ConcurrentSessions, SessionId};

use crate::common::{Client, TestStore, app};

/// Signs `user` in on a new client of `app`.
async fn signed_in(app: &axum::Router, user: &str) -> Client {
    let mut client = Client::new(app.clone());
    let reply = client.post(&format!("/login/{user}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    client
}

/// Puts an API client's session of `user` straight into the store.
async fn api_session(store: &TestStore, user: &str) -> SessionId {
    let now = store.clock.now();
    let now = chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).expect("time");
    let mut fields = SessionFields::new(SessionToken::generate().expect("rng").hash(), now);
    fields.user_id = Some(user.to_owned());
    fields.is_api = true;
    fields.auth_method = Some("basic".into());
    fields.authenticated_at = Some(now);
    store.store().insert(&fields).await.expect("insert")
}

async fn user_rows(store: &TestStore, user: &str) -> usize {
    store.store().list_for_user(user).await.expect("list").len()
}

pub async fn one_per_user_ends_the_other_human_sessions(store: TestStore) {
    let app = app(store
        .layer()
        .concurrent_sessions(ConcurrentSessions::OnePerUser));
    let mut laptop = signed_in(&app, "alice").await;
    let api = api_session(&store, "alice").await;
    let mut other_user = signed_in(&app, "bob").await;
    store.clock.advance(TimeDelta::seconds(1));
    let mut phone = signed_in(&app, "alice").await;
    assert_eq!(phone.get("/whoami").await.body, "alice");
    assert_eq!(laptop.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert!(store.row(api).await.is_some(), "API sessions are exempt");
    assert_eq!(
        other_user.get("/whoami").await.body,
        "bob",
        "other users untouched"
    );
    assert_eq!(user_rows(&store, "alice").await, 2, "phone + API client");
}

pub async fn max_per_user_ends_the_least_recently_active(store: TestStore) {
    let app = app(store
        .layer()
        .concurrent_sessions(ConcurrentSessions::MaxPerUser(2)));
    let mut first = signed_in(&app, "alice").await;
    store.clock.advance(TimeDelta::seconds(1));
    let mut second = signed_in(&app, "alice").await;
    // Activity is recorded at most once per touch interval (60 s here).
    store.clock.advance(TimeDelta::seconds(61));
    // The first is used again: now the second is the least recently active.
    first.post("/incr").await;
    store.clock.advance(TimeDelta::seconds(1));
    let mut third = signed_in(&app, "alice").await;
    assert_eq!(third.get("/whoami").await.body, "alice");
    assert_eq!(first.get("/whoami").await.body, "alice");
    assert_eq!(second.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(user_rows(&store, "alice").await, 2);
}

pub async fn unlimited_keeps_every_session_and_the_default_caps_at_32(store: TestStore) {
    let unlimited = app(store
        .layer()
        .concurrent_sessions(ConcurrentSessions::Unlimited));
    for _ in 0..3 {
        signed_in(&unlimited, "alice").await;
    }
    assert_eq!(user_rows(&store, "alice").await, 3);
    let default = app(store.layer());
    for _ in 0..33 {
        store.clock.advance(TimeDelta::milliseconds(1));
        signed_in(&default, "bob").await;
    }
    assert_eq!(user_rows(&store, "bob").await, 32);
}

pub async fn racing_logins_leave_exactly_one_session(store: TestStore) {
    let app = app(store
        .layer()
        .concurrent_sessions(ConcurrentSessions::OnePerUser));
    for round in 0..3 {
        let user = format!("racer{round}");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let app = app.clone();
                let user = user.clone();
                tokio::spawn(async move {
                    let mut client = Client::new(app);
                    client.post("/incr").await;
                    let status = client.post(&format!("/login/{user}")).await.status;
                    (status, client)
                })
            })
            .collect();
        let mut clients = Vec::new();
        for task in tasks {
            let (status, client) = task.await.expect("task");
            assert_eq!(status, StatusCode::OK, "never a 500");
            clients.push(client);
        }
        assert_eq!(user_rows(&store, &user).await, 1, "one survivor");
        let mut signed_in = 0;
        for mut client in clients {
            if client.get("/whoami").await.status == StatusCode::OK {
                signed_in += 1;
            }
        }
        assert_eq!(signed_in, 1);
    }
}

pub async fn user_sessions_lists_without_secrets_and_marks_this_one(store: TestStore) {
    let app = app(store.layer());
    let mut laptop = signed_in(&app, "alice").await;
    store.clock.advance(TimeDelta::seconds(1));
    let mut phone = signed_in(&app, "alice").await;
    let api = api_session(&store, "alice").await;
    signed_in(&app, "bob").await;
    let listing = phone.get("/sessions").await.body;
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 3, "{listing}");
    let phone_id = phone.session_id().expect("id");
    let laptop_id = laptop.session_id().expect("id");
    assert!(
        lines.contains(&format!("{phone_id} current human").as_str()),
        "{listing}"
    );
    assert!(
        lines.contains(&format!("{laptop_id} other human").as_str()),
        "{listing}"
    );
    assert!(
        lines.contains(&format!("{api} other api").as_str()),
        "{listing}"
    );
    assert!(!listing.contains(&phone.token().expect("token")));
    let info = store
        .layer()
        .admin()
        .list("alice")
        .await
        .expect("admin list");
    assert_eq!(info.len(), 3);
    assert!(
        info.iter().all(|s| !s.current),
        "the admin has no current session"
    );
    assert_eq!(info[0].id, api, "most recently active first");
    // Anonymous: nothing to list.
    assert_eq!(Client::new(app.clone()).get("/sessions").await.body, "");
    assert_eq!(laptop.get("/whoami").await.body, "alice");
}

pub async fn end_other_sessions_signs_out_everywhere_else(store: TestStore) {
    let second_server = store.twin().await;
    let app_a = app(store.layer());
    let app_b = app(second_server.layer());
    let mut here = signed_in(&app_a, "alice").await;
    let mut elsewhere = signed_in(&app_b, "alice").await;
    let mut bob = signed_in(&app_a, "bob").await;
    assert_eq!(here.post("/sessions/end-others").await.body, "1");
    assert_eq!(here.get("/whoami").await.body, "alice");
    assert_eq!(
        elsewhere.get("/whoami").await.status,
        StatusCode::UNAUTHORIZED,
        "on B too"
    );
    assert_eq!(bob.get("/whoami").await.body, "bob");
}

pub async fn end_user_session_ends_only_the_users_own(store: TestStore) {
    let app = app(store.layer());
    let mut here = signed_in(&app, "alice").await;
    let mut there = signed_in(&app, "alice").await;
    let mut bob = signed_in(&app, "bob").await;
    let bob_id = bob.session_id().expect("id");
    assert_eq!(
        here.post(&format!("/sessions/{bob_id}/end")).await.body,
        "false"
    );
    assert_eq!(bob.get("/whoami").await.body, "bob", "not alice's to end");
    let there_id = there.session_id().expect("id");
    assert_eq!(
        here.post(&format!("/sessions/{there_id}/end")).await.body,
        "true"
    );
    assert_eq!(there.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        here.post("/sessions/0/end").await.status,
        StatusCode::BAD_REQUEST
    );
    // Ending this session is a logout.
    let here_id = here.session_id().expect("id");
    let reply = here.post(&format!("/sessions/{here_id}/end")).await;
    assert_eq!(reply.body, "true");
    assert_eq!(reply.set_cookies().len(), 2);
    assert!(store.row(here_id).await.is_none());
}

pub async fn admin_ends_all_sessions_of_a_user(store: TestStore) {
    let app = app(store.layer());
    let mut a = signed_in(&app, "mallory").await;
    let mut b = signed_in(&app, "mallory").await;
    let mut carol = signed_in(&app, "carol").await;
    let admin = store.layer().admin();
    let keep = b.session_id().expect("id");
    assert_eq!(
        admin
            .end_sessions_of("mallory", Some(keep))
            .await
            .expect("end"),
        1
    );
    assert_eq!(a.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.get("/whoami").await.body, "mallory");
    assert_eq!(
        admin.end_sessions_of("mallory", None).await.expect("end"),
        1
    );
    assert_eq!(b.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(carol.get("/whoami").await.body, "carol");
    let carol_id = carol.session_id().expect("id");
    assert!(admin.end(carol_id).await.expect("end"));
    assert!(!admin.end(carol_id).await.expect("end"), "already ended");
    assert_eq!(carol.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    // Everybody, every user.
    let mut dave = signed_in(&app, "dave").await;
    let mut erin = signed_in(&app, "erin").await;
    assert_eq!(admin.end_all().await.expect("end all"), 2);
    assert_eq!(dave.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(erin.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

/// The application's users table, reduced to a credential version each.
#[derive(Debug, Default, Clone)]
struct Versions {
    current: Arc<Mutex<HashMap<String, i64>>>,
    broken: Arc<Mutex<bool>>,
}

#[async_trait]
impl AuthVersions for Versions {
    async fn current(&self, user_id: &str) -> Result<Option<i64>, BoxError> {
        if *self.broken.lock().expect("lock") {
            return Err("users database unreachable".into());
        }
        Ok(self.current.lock().expect("lock").get(user_id).copied())
    }
}

pub async fn a_credential_change_invalidates_older_sessions_even_restored_ones(store: TestStore) {
    let versions = Versions::default();
    versions
        .current
        .lock()
        .expect("lock")
        .insert("alice".into(), 1);
    let app = app(store.layer().auth_versions(versions.clone()));
    // A sign-in that records the version, through the store's own path.
    let mut client = Client::new(app.clone());
    client.post("/login/alice").await;
    let id = client.session_id().expect("id");
    let mut row = store.row(id).await.expect("row");
    assert_eq!(row.fields.auth_version, None, "plain login records none");
    assert_eq!(
        client.get("/whoami").await.status,
        StatusCode::UNAUTHORIZED,
        "a versioned user's session without a version is refused"
    );
    row.fields.auth_version = Some(1);
    let token = SessionToken::generate().expect("rng");
    row.fields.token_hash = token.hash();
    let restored_fields = row.fields.clone();
    let restored = store.store().insert(&row.fields).await.expect("insert");
    let mut backup = Client::new(app.clone());
    backup.jar = client.jar.clone();
    let id_name = backup
        .jar
        .names()
        .find(|k| k.ends_with("-id"))
        .map(str::to_owned)
        .expect("id");
    let token_name = backup
        .jar
        .names()
        .find(|k| k.ends_with("-token"))
        .map(str::to_owned)
        .expect("t");
    backup.jar.insert(id_name.clone(), restored.to_string());
    backup.jar.insert(token_name.clone(), token.expose());
    assert_eq!(
        backup.get("/whoami").await.body,
        "alice",
        "version 1 is current"
    );
    // The password changes: version 2. Old sessions die, even a row brought
    // back from a backup taken before the change.
    versions
        .current
        .lock()
        .expect("lock")
        .insert("alice".into(), 2);
    assert_eq!(backup.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    let again = store
        .store()
        .insert(&restored_fields)
        .await
        .expect("restore");
    backup.jar.insert(id_name, again.to_string());
    assert_eq!(backup.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    // Unversioned users are unaffected; a broken users table fails closed.
    let mut bob = signed_in(&app, "bob").await;
    assert_eq!(bob.get("/whoami").await.body, "bob");
    *versions.broken.lock().expect("lock") = true;
    assert_eq!(
        bob.get("/whoami").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

pub async fn login_with_records_method_and_version(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    client.post("/login-with/alice/password").await;
    let at = store.clock.now().timestamp_micros();
    assert_eq!(client.get("/auth").await.body, format!("password {at}"));
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    assert_eq!(row.fields.auth_method.as_deref(), Some("password"));
    let long_method = "m".repeat(65);
    let reply = client
        .post(&format!("/login-with/alice/{long_method}"))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

/// Each session keeps a short label of the device it was created on, from
/// its `User-Agent` (kept through sign-in, on the row, in the listing);
/// no header, or one with nothing printable, leaves none; a hostile one
/// gives a bounded, printable label.
pub async fn sessions_are_labelled_with_the_device_they_were_created_on(store: TestStore) {
    let app = app(store.layer());
    let agent = |value: &str| vec![("user-agent".to_owned(), value.to_owned())];
    let mut laptop = Client::new(app.clone());
    laptop.set_headers(agent(
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ));
    laptop.post("/incr").await;
    laptop.post("/login/alice").await;
    let mut phone = Client::new(app.clone());
    phone.set_headers(agent(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
         (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    ));
    phone.post("/login/alice").await;
    let mut script = Client::new(app.clone());
    script.set_headers(agent(&format!("evil\tcaf\u{e9}{}", "x".repeat(5_000))));
    script.post("/login/alice").await;
    let mut bare = Client::new(app.clone());
    bare.post("/login/alice").await;

    let rows = store.store();
    let label = |client: &Client| {
        let id = client.session_id().expect("id");
        let rows = rows.clone();
        async move {
            let row = rows.load(id).await.expect("load").expect("row");
            row.fields.device
        }
    };
    assert_eq!(
        label(&laptop).await.as_deref(),
        Some("Firefox on Linux"),
        "kept through sign-in"
    );
    assert_eq!(label(&phone).await.as_deref(), Some("Safari on iOS"));
    let hostile = label(&script).await.expect("a label");
    assert!(
        hostile.len() <= keycard::MAX_DEVICE_CHARS,
        "{}",
        hostile.len()
    );
    assert!(
        hostile.chars().all(|c| c.is_ascii_graphic() || c == ' '),
        "{hostile:?}"
    );
    assert_eq!(label(&bare).await, None);
    let listed = store.layer().admin().list("alice").await.expect("list");
    let devices: Vec<Option<String>> = listed.into_iter().map(|s| s.device).collect();
    assert_eq!(devices.len(), 4);
    assert!(devices.contains(&Some("Firefox on Linux".to_owned())));
}
