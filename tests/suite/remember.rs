//! Remember-me over HTTP: a browser restored after a restart by a rotating
//! server-side token; concurrent restores; a copied cookie; revocation by
//! every pathway; bad cookies.

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::TimeDelta;
use keycard::auth::{
    AuthLayer, PasswordAuthenticator, Remember, RememberMe, RequireRecentAuth, method,
};
use keycard::store::UserStore as _;
use keycard::{Login, Session, SessionId, SessionLayer};

use crate::common::{Client, Reply, TestStore};

/// The application: sign-in (optionally remembered), who, sign-out, "your
/// sessions" and "your remembered browsers", a sudo-guarded route.
struct RememberApp {
    router: Router,
    passwords: PasswordAuthenticator,
    remember: RememberMe,
    cookie: String,
}

fn remember_app(store: &TestStore) -> RememberApp {
    remember_app_on(store, store.layer())
}

fn remember_app_on(store: &TestStore, layer: SessionLayer) -> RememberApp {
    let passwords = PasswordAuthenticator::with_shared_store(store.users.clone(), layer.admin())
        .argon2_params(argon2::Params::new(8, 1, 1, None).expect("params"))
        .clock(store.clock.clone());
    let remember = RememberMe::with_shared_store(store.users.clone(), layer.admin())
        .clock(store.clock.clone());
    let cookie = layer.config().remember_cookie_name().to_owned();
    let confirm_passwords = passwords.clone();
    let router = Router::new()
        .route(
            "/login/{user}",
            post(|session: Session, Path(user): Path<String>| async move {
                session
                    .login_with(Login::new(user).method(method::PASSWORD))
                    .await?;
                Ok::<_, keycard::Error>("in")
            }),
        )
        .route(
            "/login/{user}/remember",
            post(
                |session: Session, remember: Remember, Path(user): Path<String>| async move {
                    session
                        .login_with(Login::new(user).method(method::PASSWORD))
                        .await?;
                    remember.this_device().await?;
                    Ok::<_, keycard::Error>("in")
                },
            ),
        )
        .route(
            "/who",
            get(|session: Session| async move {
                let who = session.identity().await?;
                Ok::<_, keycard::Error>(who.map_or_else(
                    || "nobody".to_owned(),
                    |w| format!("{} {}", w.user_id, w.auth_method.unwrap_or_default()),
                ))
            }),
        )
        .route("/untouched", get(|| async { "ok" }))
        .route(
            "/boom",
            get(|session: Session| async move {
                let who = session.user_id().await?;
                Ok::<_, keycard::Error>((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    who.unwrap_or_default(),
                ))
            }),
        )
        .route(
            "/login/{user}/remember/boom",
            post(
                |session: Session, remember: Remember, Path(user): Path<String>| async move {
                    session.login(user).await?;
                    remember.this_device().await?;
                    Ok::<_, keycard::Error>(StatusCode::INTERNAL_SERVER_ERROR)
                },
            ),
        )
        .route(
            "/write",
            post(|session: Session| async move {
                session.insert("note", "kept").await?;
                Ok::<_, keycard::Error>("written")
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.logout().await?;
                Ok::<_, keycard::Error>("out")
            }),
        )
        .route(
            "/forget",
            post(|remember: Remember| async move {
                remember.forget_this_device().await?;
                Ok::<_, keycard::Error>("forgotten")
            }),
        )
        .route(
            "/end-others",
            post(|session: Session| async move {
                Ok::<_, keycard::Error>(session.end_other_sessions().await?.to_string())
            }),
        )
        .route(
            "/end/{id}",
            post(|session: Session, Path(id): Path<i64>| async move {
                let id = SessionId::new(id).expect("positive");
                Ok::<_, keycard::Error>(session.end_user_session(id).await?.to_string())
            }),
        )
        .route(
            "/session-id",
            get(|session: Session| async move {
                let id = session.id().await?.map_or(0, |id| id.get());
                Ok::<_, keycard::Error>(id.to_string())
            }),
        )
        .route(
            "/devices",
            get(|remember: Remember| async move {
                let devices = remember.devices().await?;
                let listed: Vec<String> = devices
                    .iter()
                    .map(|d| {
                        let current = if d.current { "*" } else { "" };
                        format!("{}{current}", d.id)
                    })
                    .collect();
                Ok::<_, keycard::Error>(listed.join(","))
            }),
        )
        .route(
            "/revoke/{id}",
            post(|remember: Remember, Path(id): Path<i64>| async move {
                Ok::<_, keycard::Error>(remember.revoke(id).await?.to_string())
            }),
        )
        .route(
            "/sudo",
            get(|RequireRecentAuth(user): RequireRecentAuth| async move { user.id }),
        )
        .route(
            "/confirm/{password}",
            post(move |session: Session, Path(password): Path<String>| {
                let passwords = confirm_passwords.clone();
                async move {
                    passwords.confirm(&session, &password).await?;
                    Ok::<_, keycard::Error>("confirmed")
                }
            }),
        )
        .layer(layer.with_auth(AuthLayer::new().remember(remember.clone())));
    RememberApp {
        router,
        passwords,
        remember,
        cookie,
    }
}

impl RememberApp {
    /// A browser signed in as `user` that asked to be remembered.
    async fn remembered_browser(&self, user: &str) -> Client {
        let mut browser = Client::new(self.router.clone());
        let reply = browser.post(&format!("/login/{user}/remember")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(self.cookie_of(&browser).is_some(), "remembered");
        browser
    }

    fn cookie_of(&self, browser: &Client) -> Option<String> {
        browser.jar.get(&self.cookie).map(str::to_owned)
    }

    /// The same browser after a restart: its session cookies are gone,
    /// the remember-me cookie is kept.
    fn restarted(&self, browser: &Client) -> Client {
        let mut restarted = Client::new(self.router.clone());
        if let Some(value) = self.cookie_of(browser) {
            restarted.jar.insert(self.cookie.clone(), value);
        }
        restarted
    }

    /// A browser holding nothing but `value` as its remember-me cookie.
    fn holding(&self, value: &str) -> Client {
        let mut browser = Client::new(self.router.clone());
        browser.jar.insert(self.cookie.clone(), value.to_owned());
        browser
    }

    /// The `Set-Cookie` of the remember-me cookie in `reply`, if any.
    fn set_cookie(&self, reply: &Reply) -> Option<String> {
        reply
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{}=", self.cookie)))
    }
}

/// The number of session rows of `user`.
async fn sessions_of(store: &TestStore, user: &str) -> usize {
    store.store().list_for_user(user).await.expect("list").len()
}

async fn remembered_of(store: &TestStore, user: &str) -> usize {
    store.users.list_remembered(user).await.expect("list").len()
}

/// A remembered browser comes back after a restart: a new session by the
/// method `remember`, a rotated token for the same series (only hashes
/// stored), the old token no longer the current one. Requests that do not
/// use the session cost nothing. A restored sign-in is not recent until
/// the password is confirmed.
pub async fn a_remembered_browser_is_signed_back_in_after_a_restart(store: TestStore) {
    let app = remember_app(&store);
    app.passwords
        .create_user("alice", "secret")
        .await
        .expect("user");
    let mut browser = Client::new(app.router.clone());
    let reply = browser.post("/login/alice/remember").await;
    assert_eq!(reply.body, "in");
    let set = app.set_cookie(&reply).expect("a remember-me cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(
        set.contains(&format!("Max-Age={}", 30 * 24 * 3600)),
        "{set}"
    );
    let first = app.cookie_of(&browser).expect("cookie");
    assert_eq!(first.len(), 43 + 1 + 43, "series.token");
    let rows = store.users.list_remembered("alice").await.expect("list");
    assert_eq!(rows.len(), 1);
    let (series, token) = first.split_once('.').expect("two halves");
    let token: keycard::token::SessionToken = token.parse().expect("token");
    let series: keycard::token::SessionToken = series.parse().expect("series");
    assert_eq!(rows[0].token_hash, token.hash(), "only the hash is stored");
    assert_eq!(rows[0].series_hash, series.hash());
    assert_eq!(
        app.remember.devices_of("alice").await.expect("list").len(),
        1
    );

    // An untouched request with the cookie: no query, no cookie.
    let mut restarted = app.restarted(&browser);
    store.calls().reset();
    let reply = restarted.get("/untouched").await;
    assert_eq!(reply.body, "ok");
    assert!(reply.set_cookies().is_empty());
    assert_eq!(store.calls().total(), 0);

    // The restart: signed in again, by method `remember`, on a new session.
    let reply = restarted.get("/who").await;
    assert_eq!(reply.body, "alice remember");
    let second = app.cookie_of(&restarted).expect("a rotated cookie");
    assert_ne!(second, first, "rotated");
    assert_eq!(
        second.split_once('.').map(|p| p.0),
        first.split_once('.').map(|p| p.0),
        "the same series"
    );
    assert!(restarted.session_id().is_some(), "a session of its own");
    assert_ne!(restarted.session_id(), browser.session_id());
    assert_eq!(sessions_of(&store, "alice").await, 2);
    let row = &store.users.list_remembered("alice").await.expect("list")[0];
    assert_eq!(row.previous_hash, Some(token.hash()));
    assert_ne!(row.token_hash, token.hash());
    assert_eq!(restarted.get("/who").await.body, "alice remember");

    // The token just replaced, within the grace window (another request of
    // the restart): signed in for that request only, no cookie, no alarm;
    // a write there is a clean 400.
    let mut racing = app.holding(&first);
    let reply = racing.get("/who").await;
    assert_eq!(reply.body, "alice remember");
    assert!(reply.set_cookies().is_empty(), "{:?}", reply.set_cookies());
    let reply = racing.post("/write").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(sessions_of(&store, "alice").await, 2);
    assert_eq!(remembered_of(&store, "alice").await, 1);

    // Never recent until confirmed; a confirmation makes it a password one.
    let refused = restarted.get("/sudo").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(restarted.post("/confirm/secret").await.body, "confirmed");
    assert_eq!(restarted.get("/sudo").await.body, "alice");
    assert_eq!(restarted.get("/who").await.body, "alice password");

    // The devices page lists the one browser, marked current on it.
    let id = row.id;
    assert_eq!(restarted.get("/devices").await.body, format!("{id}*"));
    assert_eq!(browser.get("/devices").await.body, format!("{id}*"));

    // Without `AuthLayer::remember`, the extractor answers a clear 500.
    let bare = Router::new()
        .route("/devices", get(|_: Remember| async { "never" }))
        .layer(store.layer().with_auth(AuthLayer::new()));
    let reply = Client::new(bare).get("/devices").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!reply.body.contains("never"));
}

/// Eight requests of one browser after a restart, at once, half through a
/// second app server: one signs in and rotates, the others are signed in
/// for their own request only; one session, no alarm, the series lives on.
pub async fn concurrent_restores_sign_one_browser_in_once(store: TestStore) {
    let twin = store.twin().await;
    let app = remember_app(&store);
    let other = remember_app_on(&store, twin.layer());
    let browser = app.remembered_browser("alice").await;
    let value = app.cookie_of(&browser).expect("cookie");
    // The browser's session ended (its cookie went with the restart).
    store
        .store()
        .delete_for_user("alice", keycard::store::UserSessions::All)
        .await
        .expect("end");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let router = if i % 2 == 0 {
                app.router.clone()
            } else {
                other.router.clone()
            };
            let cookie = app.cookie.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let mut browser = Client::new(router);
                browser.jar.insert(cookie.clone(), value);
                let reply = browser.get("/who").await;
                let rotated = reply
                    .set_cookies()
                    .iter()
                    .any(|c| c.starts_with(&format!("{cookie}=")));
                (
                    reply.status,
                    reply.body,
                    rotated,
                    std::mem::take(&mut browser.jar),
                )
            })
        })
        .collect();
    let mut rotations = 0;
    let mut winner_jar = None;
    for task in tasks {
        let (status, body, rotated, jar) = task.await.expect("task");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "alice remember", "every request is served signed in");
        if rotated {
            rotations += 1;
            winner_jar = Some(jar);
        }
    }
    assert_eq!(rotations, 1, "one request rotates the token");
    assert_eq!(
        sessions_of(&store, "alice").await,
        1,
        "one signed-in browser"
    );
    assert_eq!(remembered_of(&store, "alice").await, 1, "no theft alarm");
    let mut winner = Client::new(app.router.clone());
    winner.jar = winner_jar.expect("the winner's cookies");
    assert_eq!(winner.get("/who").await.body, "alice remember");
    // After the burst, the rotated cookie restores again.
    let mut again = app.restarted(&winner);
    assert_eq!(again.get("/who").await.body, "alice remember");
}

/// A token that was already replaced, used after the grace window, means a
/// copied cookie: every session and remembered browser of the user ends,
/// whichever of the two copies comes second; nobody is signed in.
pub async fn a_replayed_remember_token_ends_every_sign_in_of_the_user(store: TestStore) {
    let app = remember_app(&store);
    // The owner restores first; the thief's copy comes later.
    let owner = app.remembered_browser("alice").await;
    let _bobs = app.remembered_browser("bob").await;
    let copy = app.cookie_of(&owner).expect("cookie");
    let mut owner = app.restarted(&owner);
    assert_eq!(owner.get("/who").await.body, "alice remember");
    store.clock.advance(TimeDelta::minutes(1));
    let mut thief = app.holding(&copy);
    let reply = thief.get("/who").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "nobody");
    assert!(
        app.set_cookie(&reply)
            .is_some_and(|c| c.contains("Max-Age=0")),
        "the cookie is removed"
    );
    assert_eq!(sessions_of(&store, "alice").await, 0, "every session ended");
    assert_eq!(remembered_of(&store, "alice").await, 0);
    assert_eq!(owner.get("/who").await.body, "nobody");
    assert_eq!(
        app.restarted(&owner).get("/who").await.body,
        "nobody",
        "the owner's rotated cookie is dead too"
    );
    assert_eq!(remembered_of(&store, "bob").await, 1, "bob is untouched");
    assert!(sessions_of(&store, "bob").await >= 1);

    // The thief restores first: the owner's copy gives the alarm.
    let owner = app.remembered_browser("carol").await;
    let copy = app.cookie_of(&owner).expect("cookie");
    assert_eq!(app.holding(&copy).get("/who").await.body, "carol remember");
    store.clock.advance(TimeDelta::minutes(1));
    assert_eq!(app.restarted(&owner).get("/who").await.body, "nobody");
    assert_eq!(sessions_of(&store, "carol").await, 0);
    assert_eq!(remembered_of(&store, "carol").await, 0);
}

/// Sign-out on the device, "sign out everywhere else", ending one session,
/// revoking a browser, a password change, a disabled account, a credential
/// version moved behind keycard's back and the lifetime each end a
/// remembered browser: its cookie signs nobody in afterwards.
pub async fn remembered_browsers_end_by_every_pathway(store: TestStore) {
    let app = remember_app(&store);
    app.passwords
        .create_user("alice", "secret")
        .await
        .expect("user");

    // Sign-out on the device.
    let mut browser = app.remembered_browser("alice").await;
    let value = app.cookie_of(&browser).expect("cookie");
    let reply = browser.post("/logout").await;
    assert!(
        app.set_cookie(&reply)
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    assert_eq!(remembered_of(&store, "alice").await, 0);
    assert_eq!(app.holding(&value).get("/who").await.body, "nobody");

    // Unticking "remember me" keeps the session, forgets the browser.
    let mut browser = app.remembered_browser("alice").await;
    let value = app.cookie_of(&browser).expect("cookie");
    assert_eq!(browser.post("/forget").await.body, "forgotten");
    assert_eq!(browser.get("/who").await.body, "alice password");
    assert_eq!(app.holding(&value).get("/who").await.body, "nobody");

    // "Sign out everywhere else" ends the other browser's series, keeps
    // this one's.
    let a = app.remembered_browser("alice").await;
    let mut b = app.remembered_browser("alice").await;
    assert_eq!(b.post("/end-others").await.status, StatusCode::OK);
    assert_eq!(remembered_of(&store, "alice").await, 1);
    assert_eq!(app.restarted(&a).get("/who").await.body, "nobody");
    assert_eq!(app.restarted(&b).get("/who").await.body, "alice remember");

    // Ending the session a remembered browser opened ends its series.
    let mut a = app.remembered_browser("alice").await;
    let a_session = a.get("/session-id").await.body;
    let reply = b.post(&format!("/end/{a_session}")).await;
    assert_eq!(reply.body, "true");
    assert_eq!(a.get("/who").await.body, "nobody");
    assert_eq!(app.restarted(&a).get("/who").await.body, "nobody");

    // Revoking a browser from the devices page ends its session too.
    let mut a = app.remembered_browser("alice").await;
    let listed = b.get("/devices").await.body;
    let a_id = listed
        .split(',')
        .find(|d| !d.ends_with('*'))
        .expect("a's browser listed")
        .to_owned();
    assert_eq!(b.post(&format!("/revoke/{a_id}")).await.body, "true");
    assert_eq!(a.get("/who").await.body, "nobody", "its session ended");
    assert_eq!(app.restarted(&a).get("/who").await.body, "nobody");
    assert_eq!(
        b.post(&format!("/revoke/{a_id}")).await.body,
        "false",
        "gone"
    );
    let mut mallory = app.remembered_browser("mallory").await;
    let b_id = b
        .get("/devices")
        .await
        .body
        .trim_end_matches('*')
        .to_owned();
    assert_eq!(
        mallory.post(&format!("/revoke/{b_id}")).await.body,
        "false",
        "not hers"
    );
    assert_eq!(app.restarted(&b).get("/who").await.body, "alice remember");

    // Revoking this browser itself, remembered in an earlier request:
    // signed out at once, both cookies removed.
    let mut own = app.remembered_browser("alice").await;
    let own_id = own
        .get("/devices")
        .await
        .body
        .split(',')
        .find(|d| d.ends_with('*'))
        .expect("this browser listed")
        .trim_end_matches('*')
        .to_owned();
    let reply = own.post(&format!("/revoke/{own_id}")).await;
    assert_eq!(reply.body, "true");
    assert!(
        app.set_cookie(&reply)
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    assert!(own.session_id().is_none(), "session cookies expired");
    assert_eq!(own.get("/who").await.body, "nobody");

    // A password change, a disabled account.
    let a = app.remembered_browser("alice").await;
    app.passwords
        .set_password("alice", "new")
        .await
        .expect("set");
    assert_eq!(remembered_of(&store, "alice").await, 0);
    assert_eq!(app.restarted(&a).get("/who").await.body, "nobody");
    let a = app.remembered_browser("alice").await;
    app.passwords
        .set_disabled("alice", true)
        .await
        .expect("disable");
    assert_eq!(app.restarted(&a).get("/who").await.body, "nobody");
    app.passwords
        .set_disabled("alice", false)
        .await
        .expect("enable");

    // The credential version moved without keycard's help.
    let a = app.remembered_browser("alice").await;
    store
        .users
        .set_password_hash("alice", "$argon2id$elsewhere")
        .await
        .expect("set");
    let mut restarted = app.restarted(&a);
    let reply = restarted.get("/who").await;
    assert_eq!(reply.body, "nobody");
    assert!(
        app.set_cookie(&reply)
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    assert_eq!(remembered_of(&store, "alice").await, 0, "and deleted");

    // Another user remembered on the same browser replaces its cookie, so
    // the first user's series goes too.
    let mut shared = app.remembered_browser("erin").await;
    assert_eq!(shared.post("/login/frank/remember").await.body, "in");
    assert_eq!(remembered_of(&store, "erin").await, 0);
    assert_eq!(remembered_of(&store, "frank").await, 1);

    // The lifetime, from the sign-in, not extended by use.
    let short = RememberMe::with_shared_store(store.users.clone(), store.layer().admin())
        .clock(store.clock.clone())
        .lifetime(Duration::from_secs(3600));
    let layer = store.layer();
    let router = Router::new()
        .route(
            "/login/{user}",
            post(
                |session: Session, remember: Remember, Path(user): Path<String>| async move {
                    session.login(user).await?;
                    remember.this_device().await?;
                    Ok::<_, keycard::Error>("in")
                },
            ),
        )
        .route(
            "/who",
            get(|session: Session| async move {
                Ok::<_, keycard::Error>(session.user_id().await?.unwrap_or_default())
            }),
        )
        .layer(layer.with_auth(AuthLayer::new().remember(short)));
    let mut browser = Client::new(router.clone());
    browser.post("/login/dave").await;
    let value = browser.jar.get(&app.cookie).expect("cookie").to_owned();
    store.clock.advance(TimeDelta::minutes(50));
    let mut restarted = Client::new(router.clone());
    restarted.jar.insert(app.cookie.clone(), value);
    assert_eq!(restarted.get("/who").await.body, "dave");
    let value = restarted.jar.get(&app.cookie).expect("rotated").to_owned();
    store.clock.advance(TimeDelta::minutes(20));
    let mut late = Client::new(router);
    late.jar.insert(app.cookie.clone(), value);
    assert_eq!(late.get("/who").await.body, "", "expired after an hour");
    assert!(late.jar.get(&app.cookie).is_none(), "and removed");
}

/// Truncated, forged, doubled, oversized and cross-series cookies: never a
/// server error, never a sign-in, and the bad cookie is removed.
pub async fn bad_remember_cookies_are_refused_cleanly(store: TestStore) {
    let app = remember_app(&store);
    let alice = app.remembered_browser("alice").await;
    let bob = app.remembered_browser("bob").await;
    let good = app.cookie_of(&alice).expect("cookie");
    let bobs = app.cookie_of(&bob).expect("cookie");
    let (series, _) = good.split_once('.').expect("series");
    let (_, bobs_token) = bobs.split_once('.').expect("token");
    let fresh = keycard::token::SessionToken::generate()
        .expect("random")
        .expose();
    let garbage = [
        String::new(),
        "x".to_owned(),
        good[..good.len() - 1].to_owned(),
        series.to_owned(),
        format!("{series}."),
        format!(".{bobs_token}"),
        format!("{fresh}.{fresh}"),
        "A".repeat(87),
        "a".repeat(10_000),
        format!("{series}.{bobs_token}x"),
    ];
    for bad in &garbage {
        let mut browser = app.holding(bad);
        let reply = browser.get("/who").await;
        assert_eq!(reply.status, StatusCode::OK, "{bad:.20}");
        assert_eq!(reply.body, "nobody", "{bad:.20}");
        assert!(
            app.set_cookie(&reply)
                .is_some_and(|c| c.contains("Max-Age=0")),
            "the bad cookie is removed: {bad:.20}"
        );
    }
    assert_eq!(remembered_of(&store, "alice").await, 1, "nothing ended yet");
    // The same cookie name twice with two values is ambiguous: ignored.
    let mut doubled = Client::new(app.router.clone());
    doubled.set_headers(vec![(
        "cookie".to_owned(),
        format!("{0}={good}; {0}={bobs}", app.cookie),
    )]);
    let reply = doubled.get("/who").await;
    assert_eq!(reply.body, "nobody");
    assert!(
        app.set_cookie(&reply)
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    // Alice's series with Bob's token: a copied series, alarm for alice.
    let reply = app
        .holding(&format!("{series}.{bobs_token}"))
        .get("/who")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "nobody");
    assert_eq!(remembered_of(&store, "alice").await, 0);
    assert_eq!(remembered_of(&store, "bob").await, 1);
    assert_eq!(app.restarted(&bob).get("/who").await.body, "bob remember");

    // An anonymous request cannot be remembered.
    let remember_anonymous = Router::new()
        .route(
            "/remember",
            post(|remember: Remember| async move {
                remember.this_device().await?;
                Ok::<_, keycard::Error>("remembered")
            }),
        )
        .layer(
            store
                .layer()
                .with_auth(AuthLayer::new().remember(app.remember.clone())),
        );
    let reply = Client::new(remember_anonymous).post("/remember").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

/// While the store is down, a restore fails closed: `503`, nobody signed
/// in, nothing rotated.
pub async fn a_restore_fails_closed_while_the_store_is_down(store: TestStore) {
    use std::sync::atomic::Ordering;

    let app = remember_app(&store);
    let browser = app.remembered_browser("alice").await;
    let before = store.users.list_remembered("alice").await.expect("list");
    store.users.fail.store(true, Ordering::SeqCst);
    let mut restarted = app.restarted(&browser);
    let reply = restarted.get("/who").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.set_cookies().is_empty());
    store.users.fail.store(false, Ordering::SeqCst);
    assert_eq!(
        store.users.list_remembered("alice").await.expect("list"),
        before,
        "nothing rotated"
    );
    assert_eq!(restarted.get("/who").await.body, "alice remember");

    // A restore whose response is a server error is undone: the session
    // layer drops the new session, and the browser's token keeps working
    // (no alarm once the grace window is past).
    let kept = app.cookie_of(&restarted).expect("cookie");
    let mut failing = app.holding(&kept);
    let reply = failing.get("/boom").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies().is_empty(), "{:?}", reply.set_cookies());
    store.clock.advance(TimeDelta::minutes(1));
    let mut retried = app.holding(&kept);
    assert_eq!(retried.get("/who").await.body, "alice remember");
    assert_eq!(remembered_of(&store, "alice").await, 1, "no alarm");

    // A sign-in that asked to be remembered but failed remembers nothing.
    let mut browser = Client::new(app.router.clone());
    let reply = browser.post("/login/bob/remember/boom").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(remembered_of(&store, "bob").await, 0);
}
