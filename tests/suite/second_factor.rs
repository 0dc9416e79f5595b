//! A second factor over HTTP: half-open sign-ins, TOTP (replay, ±1 step,
//! concurrency), recovery codes, the shared lockout, HTTP Basic, and the
//! per-user session cap.

use axum::Router;
use axum::extract::{Form, Path};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, Utc};
use keycard::auth::{
    AccountError, AuthLayer, BasicAuth, CurrentUser, OneTimeTokens, PasswordAuthenticator,
    SecondFactor, SignInStep, method,
};
use keycard::clock::Clock as _;
use keycard::{ConcurrentSessions, Session, SessionLayer};

use crate::common::{Client, Reply, TestStore};

#[derive(serde::Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

#[derive(serde::Deserialize)]
struct Code {
    code: String,
}

#[derive(serde::Deserialize)]
struct Password {
    password: String,
}

/// The application under test.
struct FactorApp {
    router: Router,
    passwords: PasswordAuthenticator,
    factors: SecondFactor,
    links: OneTimeTokens,
}

/// The application on the suite's layer.
fn factor_app(store: &TestStore) -> FactorApp {
    factor_app_with(store, store.layer(), |passwords| passwords)
}

/// The application on `layer`, its authenticator changed by `tweak`.
fn factor_app_with(
    store: &TestStore,
    layer: SessionLayer,
    tweak: impl FnOnce(PasswordAuthenticator) -> PasswordAuthenticator,
) -> FactorApp {
    let passwords = PasswordAuthenticator::with_shared_store(store.users.clone(), layer.admin())
        .argon2_params(argon2::Params::new(8, 1, 1, None).expect("params"))
        .clock(store.clock.clone());
    let passwords = tweak(passwords);
    let factors = SecondFactor::new(passwords.clone()).issuer("Example: Site");
    let links = OneTimeTokens::with_shared_store(store.users.clone(), passwords.clone())
        .clock(store.clock.clone());
    let router = Router::new()
        .route("/link/{secret}", {
            let links = links.clone();
            post(move |session: Session, Path(secret): Path<String>| {
                let links = links.clone();
                async move {
                    let step = links.sign_in(&session, &secret).await?;
                    Ok::<_, AccountError>(match step {
                        None => "false",
                        Some(SignInStep::Done) => "true",
                        Some(SignInStep::SecondFactorDue(_)) => "code due",
                    })
                }
            })
        })
        .route("/login", {
            let (passwords, factors) = (passwords.clone(), factors.clone());
            post(move |session: Session, Form(form): Form<Credentials>| {
                let (passwords, factors) = (passwords.clone(), factors.clone());
                async move {
                    let Ok(user) = passwords.verify(&form.user, &form.password).await else {
                        return Ok::<_, keycard::Error>(StatusCode::UNAUTHORIZED.into_response());
                    };
                    let step = factors.sign_in(&session, &user, method::PASSWORD).await?;
                    Ok(match step {
                        SignInStep::Done => "done".into_response(),
                        SignInStep::SecondFactorDue(_) => "code due".into_response(),
                    })
                }
            })
        })
        .route("/login/totp", {
            let factors = factors.clone();
            post(move |session: Session, Form(form): Form<Code>| {
                let factors = factors.clone();
                async move {
                    factors.complete_with_totp(&session, &form.code).await?;
                    Ok::<_, AccountError>("in")
                }
            })
        })
        .route("/login/recovery", {
            let factors = factors.clone();
            post(move |session: Session, Form(form): Form<Code>| {
                let factors = factors.clone();
                async move {
                    factors
                        .complete_with_recovery_code(&session, &form.code)
                        .await?;
                    Ok::<_, AccountError>("in")
                }
            })
        })
        .route(
            "/me",
            get(|CurrentUser(user): CurrentUser| async move {
                format!("{} {}", user.id, user.method.unwrap_or_default())
            }),
        )
        .route(
            "/whoami",
            get(|session: Session| async move {
                let user = session.user_id().await?;
                Ok::<_, keycard::Error>(user.unwrap_or_else(|| "nobody".to_owned()))
            }),
        )
        .route("/pending", {
            let factors = factors.clone();
            get(move |session: Session| {
                let factors = factors.clone();
                async move {
                    let pending = factors.pending(&session).await?;
                    Ok::<_, AccountError>(pending.map_or_else(|| "none".to_owned(), |p| p.user_id))
                }
            })
        })
        .route("/enrol", {
            let factors = factors.clone();
            post(move |session: Session| {
                let factors = factors.clone();
                async move {
                    let enrolment = factors.enrol_totp(&session).await?;
                    #[cfg(feature = "qr")]
                    let qr = enrolment
                        .qr_png()
                        .is_some_and(|png| png.starts_with(b"\x89PNG"));
                    #[cfg(not(feature = "qr"))]
                    let qr = true;
                    Ok::<_, AccountError>(format!(
                        "{}\n{}\n{enrolment:?}\nqr {qr}",
                        enrolment.secret_base32(),
                        enrolment.uri()
                    ))
                }
            })
        })
        .route("/enrol/confirm", {
            let factors = factors.clone();
            post(move |session: Session, Form(form): Form<Code>| {
                let factors = factors.clone();
                async move {
                    let codes = factors.confirm_totp(&session, &form.code).await?;
                    let debug = format!("{codes:?}");
                    let mut lines = codes.into_iter().collect::<Vec<_>>();
                    lines.push(debug);
                    Ok::<_, AccountError>(lines.join("\n"))
                }
            })
        })
        .route("/codes/regenerate", {
            let factors = factors.clone();
            post(move |session: Session, Form(form): Form<Password>| {
                let factors = factors.clone();
                async move {
                    let codes = factors
                        .regenerate_recovery_codes(&session, &form.password)
                        .await?;
                    Ok::<_, AccountError>(codes.codes().join("\n"))
                }
            })
        })
        .route("/factor/remove", {
            let factors = factors.clone();
            post(move |session: Session, Form(form): Form<Password>| {
                let factors = factors.clone();
                async move {
                    let removed = factors.remove(&session, &form.password).await?;
                    Ok::<_, AccountError>(removed.to_string())
                }
            })
        })
        .route(
            "/logout",
            post(|session: Session| async move {
                session.logout().await?;
                Ok::<_, keycard::Error>("out")
            }),
        )
        .layer(
            AuthLayer::new()
                .retriever(BasicAuth)
                .authenticator(passwords.clone())
                .login_url("/login"),
        )
        .layer(layer);
    FactorApp {
        router,
        passwords,
        factors,
        links,
    }
}

/// Sets the clock 5 seconds into a time step, so that "now" and "30
/// seconds later" are whole steps apart.
fn start_clock(store: &TestStore) {
    let start = DateTime::from_timestamp(1_900_000_005, 0).expect("time");
    store.clock.set(start);
}

/// The code of the TOTP of `secret` (base32) at `at`, computed as an
/// authenticator app would.
fn code_at(secret: &str, at: DateTime<Utc>) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).expect("base32 secret");
    let totp = totp_rs::Builder::new()
        .with_secret(secret)
        .build()
        .expect("a valid TOTP");
    totp.generate(u64::try_from(at.timestamp()).expect("after 1970"))
        .to_string()
}

/// The current code of `secret`, `steps` time steps away.
fn code(store: &TestStore, secret: &str, steps: i64) -> String {
    code_at(secret, store.clock.now() + TimeDelta::seconds(30 * steps))
}

async fn login(client: &mut Client, user: &str, password: &str) -> Reply {
    client
        .post_form("/login", &[("user", user), ("password", password)])
        .await
}

async fn totp(client: &mut Client, code: &str) -> Reply {
    client.post_form("/login/totp", &[("code", code)]).await
}

async fn recovery(client: &mut Client, code: &str) -> Reply {
    client.post_form("/login/recovery", &[("code", code)]).await
}

/// Creates `user` with `password`, enrols and confirms a TOTP from a
/// signed-in session, and moves the clock to the next step (the
/// confirmation used this one). The secret, the recovery codes and the
/// signed-in client.
async fn enrolled(
    app: &FactorApp,
    store: &TestStore,
    user: &str,
    password: &str,
) -> (String, Vec<String>, Client) {
    app.passwords
        .create_user(user, password)
        .await
        .expect("create user");
    let mut client = Client::new(app.router.clone());
    assert_eq!(login(&mut client, user, password).await.body, "done");
    let reply = client.post("/enrol").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let secret = reply.body.lines().next().expect("secret").to_owned();
    let reply = client
        .post_form("/enrol/confirm", &[("code", &code(store, &secret, 0))])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut codes: Vec<String> = reply.body.lines().map(str::to_owned).collect();
    codes.pop(); // the `Debug` line
    store.clock.advance(TimeDelta::seconds(30));
    (secret, codes, client)
}

async fn failures(app: &FactorApp, user: &str) -> u32 {
    app.passwords
        .account(user)
        .await
        .expect("account")
        .expect("exists")
        .failures
}

fn basic(user: &str, password: &str) -> (String, String) {
    let value = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    ("authorization".to_owned(), value)
}

/// A right password for an account with a second factor leaves the
/// session half-open: anonymous to `CurrentUser` (a `303` for browsers, a
/// `401` for API clients) and to `user_id()`, not counted among the user's
/// sessions. The code completes it with a fresh token (the half-open
/// cookie is dead) and the method `totp`.
pub async fn second_factor_due_leaves_the_session_half_open_and_anonymous(store: TestStore) {
    start_clock(&store);
    let app = factor_app(&store);
    let (secret, codes, _enrolling) = enrolled(&app, &store, "alice", "secret").await;
    assert_eq!(codes.len(), 10);
    assert!(app.factors.has_second_factor("Alice").await.expect("check"));
    assert!(
        app.passwords
            .has_second_factor("alice")
            .await
            .expect("check")
    );

    let mut browser = Client::new(app.router.clone());
    let reply = login(&mut browser, "alice", "secret").await;
    assert_eq!(reply.body, "code due");
    assert!(browser.token().is_some(), "the half-open session is stored");
    browser.set_headers(vec![("accept".to_owned(), "text/html".to_owned())]);
    let guarded = browser.get("/me").await;
    browser.headers.clear();
    assert_eq!(guarded.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.get("/whoami").await.body, "nobody");
    assert_eq!(browser.get("/pending").await.body, "alice");
    let rows = store.store().list_for_user("alice").await.expect("list");
    assert_eq!(rows.len(), 1, "only the enrolling session is alice's");

    let half_open = browser.jar.clone();
    let reply = totp(&mut browser, &code(&store, &secret, 0)).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "in"));
    assert_eq!(reply.set_cookies().len(), 2, "a fresh token");
    assert_eq!(browser.get("/me").await.body, "alice totp");
    assert_eq!(browser.get("/pending").await.body, "none");
    let mut replay = Client::new(app.router.clone());
    replay.jar = half_open;
    assert_eq!(
        replay.get("/whoami").await.body,
        "nobody",
        "old cookie dead"
    );
    assert_eq!(
        totp(&mut replay, &code(&store, &secret, 1)).await.status,
        StatusCode::UNAUTHORIZED,
        "nothing waits on the old cookie"
    );
    // A session that was signed in and gives a password again starts
    // afresh, half-open.
    let reply = login(&mut browser, "alice", "secret").await;
    assert_eq!(reply.body, "code due");
    assert_eq!(browser.get("/whoami").await.body, "nobody");
}

/// A half-open sign-in waits five minutes, then a right code is refused
/// (`401`, nothing signed in, no failure counted).
pub async fn second_factor_half_open_sign_ins_expire_after_five_minutes(store: TestStore) {
    start_clock(&store);
    let app = factor_app(&store);
    let (secret, _, _) = enrolled(&app, &store, "alice", "secret").await;
    let mut browser = Client::new(app.router.clone());
    assert_eq!(
        login(&mut browser, "alice", "secret").await.body,
        "code due"
    );
    store.clock.advance(TimeDelta::seconds(4 * 60 + 59));
    assert_eq!(browser.get("/pending").await.body, "alice");
    store.clock.advance(TimeDelta::seconds(2));
    assert_eq!(browser.get("/pending").await.body, "none");
    let reply = totp(&mut browser, &code(&store, &secret, 0)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(browser.get("/whoami").await.body, "nobody");
    assert_eq!(failures(&app, "alice").await, 0);
    // Without any half-open sign-in: the same clean refusal.
    let mut stranger = Client::new(app.router.clone());
    let reply = totp(&mut stranger, &code(&store, &secret, 0)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

/// Each code is accepted once; the step before and after count, two steps
/// off do not; malformed input is a clean `403`, never a `5xx`, and signs
/// nothing in.
pub async fn second_factor_totp_codes_work_once_and_one_step_either_side(store: TestStore) {
    start_clock(&store);
    let app = factor_app(&store);
    let (secret, _, _) = enrolled(&app, &store, "alice", "secret").await;
    let half_open = || async {
        let mut client = Client::new(app.router.clone());
        assert_eq!(login(&mut client, "alice", "secret").await.body, "code due");
        client
    };
    let mut client = half_open().await;
    let refused = totp(&mut client, &code(&store, &secret, -1)).await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "the confirmation's code is used"
    );
    assert_eq!(
        totp(&mut client, &code(&store, &secret, 0)).await.body,
        "in"
    );
    let mut again = half_open().await;
    assert_eq!(
        totp(&mut again, &code(&store, &secret, 0)).await.status,
        StatusCode::FORBIDDEN,
        "replayed"
    );

    store.clock.advance(TimeDelta::seconds(30));
    for steps in [-2, 2] {
        let reply = totp(&mut again, &code(&store, &secret, steps)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{steps} steps away");
    }
    assert_eq!(totp(&mut again, &code(&store, &secret, 1)).await.body, "in");
    let mut late = half_open().await;
    assert_eq!(
        totp(&mut late, &code(&store, &secret, 0)).await.status,
        StatusCode::FORBIDDEN,
        "older than the step used last"
    );
    store.clock.advance(TimeDelta::seconds(90));
    assert_eq!(
        totp(&mut late, &code(&store, &secret, -1)).await.body,
        "in",
        "the step before is accepted"
    );

    let mut client = half_open().await;
    let long = "1".repeat(10_000);
    for bad in [
        "",
        "12345",
        "1234567",
        "abcdef",
        "12+456",
        // Arabic-Indic digits.
        "\u{663}\u{663}\u{663}\u{663}\u{663}\u{663}",
        &long,
    ] {
        let reply = totp(&mut client, bad).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{bad:.12}: {}",
            reply.body
        );
    }
    assert_eq!(client.get("/whoami").await.body, "nobody");
    assert_eq!(client.get("/pending").await.body, "alice", "still waiting");
}

/// Eight concurrent requests with one code, each on its own half-open
/// session: exactly one signs in.
pub async fn second_factor_concurrent_uses_of_one_totp_code_sign_in_exactly_one(store: TestStore) {
    start_clock(&store);
    let app = factor_app(&store);
    let (secret, _, _) = enrolled(&app, &store, "alice", "secret").await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut client = Client::new(app.router.clone());
        assert_eq!(login(&mut client, "alice", "secret").await.body, "code due");
        clients.push(client);
    }
    let code = code(&store, &secret, 0);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let code = code.clone();
            tokio::spawn(async move {
                let reply = totp(&mut client, &code).await;
                (reply.status, client.get("/whoami").await.body)
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("task") {
            (StatusCode::OK, who) => {
                assert_eq!(who, "alice");
                wins += 1;
            }
            (status, who) => {
                assert_eq!(status, StatusCode::FORBIDDEN);
                assert_eq!(who, "nobody");
            }
        }
    }
    assert_eq!(wins, 1);
}

/// Wrong passwords and wrong codes add up to one lockout; a right password
/// alone clears nothing; a locked account refuses even the right code;
/// the completed sign-in clears the count.
pub async fn second_factor_failures_count_toward_the_password_lockout(store: TestStore) {
    start_clock(&store);
    let app = factor_app(&store);
    let (secret, _, _) = enrolled(&app, &store, "alice", "secret").await;
    let mut browser = Client::new(app.router.clone());
    for _ in 0..4 {
        let reply = login(&mut browser, "alice", "wrong").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login(&mut browser, "alice", "secret").await.body,
        "code due"
    );
    assert_eq!(
        failures(&app, "alice").await,
        4,
        "a password alone clears nothing"
    );
    for wrong in 0..6 {
        let reply = totp(&mut browser, &format!("{wrong:06}")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(failures(&app, "alice").await, 10);
    let right = code(&store, &secret, 0);
    let locked = totp(&mut browser, &right).await;
    assert_eq!(
        locked.status,
        StatusCode::FORBIDDEN,
        "locked: even the right code"
    );
    assert_eq!(browser.get("/whoami").await.body, "nobody");
    assert_eq!(
        login(&mut Client::new(app.router.clone()), "alice", "secret")
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "and the password"
    );

    store.clock.advance(TimeDelta::minutes(11));
    let mut later = Client::new(app.router.clone());
    assert_eq!(login(&mut later, "alice", "secret").await.body, "code due");
    assert_eq!(totp(&mut later, &code(&store, &secret, 0)).await.body, "in");
    let account = app
        .passwords
        .account("alice")
        .await
        .expect("ok")
        .expect("exists");
    assert_eq!(
        (account.failures, account.locked_until),
        (0, None),
        "success clears"
    );
}

/// Recovery codes sign in once each (dashes, spaces and case aside), with
/// the method `recovery-code`; of eight concurrent uses of one, exactly one
/// wins; garbage is a clean `403`.
pub async fn second_factor_recovery_codes_sign_in_once_each(store: TestStore) {
    start_clock(&store);
    let app = factor_app(&store);
    let (_, codes, _) = enrolled(&app, &store, "alice", "secret").await;
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    for code in &codes {
        assert_eq!(code.len(), 14, "{code}");
        assert_eq!(code.matches('-').count(), 2, "{code}");
    }
    let half_open = || async {
        let mut client = Client::new(app.router.clone());
        assert_eq!(login(&mut client, "alice", "secret").await.body, "code due");
        client
    };
    let mut client = half_open().await;
    let typed = format!(" {} ", codes[0].to_uppercase().replace('-', " "));
    assert_eq!(recovery(&mut client, &typed).await.body, "in");
    assert_eq!(client.get("/me").await.body, "alice recovery-code");
    assert_eq!(
        app.factors.recovery_codes_left("alice").await.expect("n"),
        9
    );
    let mut again = half_open().await;
    let reply = recovery(&mut again, &codes[0]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "used once");

    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(half_open().await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let code = codes[1].clone();
            tokio::spawn(async move { recovery(&mut client, &code).await.status })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        let status = task.await.expect("task");
        assert!(
            status == StatusCode::OK || status == StatusCode::FORBIDDEN,
            "{status}"
        );
        wins += usize::from(status == StatusCode::OK);
    }
    assert_eq!(wins, 1);
    assert_eq!(
        app.factors.recovery_codes_left("alice").await.expect("n"),
        8
    );
    let long = "a".repeat(10_000);
    for bad in ["", "abcd", "abcd-efgh-ijkl", &long] {
        let reply = recovery(&mut again, bad).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{bad:.12}");
    }
    assert_eq!(again.get("/whoami").await.body, "nobody");

    // New codes, with the password: the old ones are dead. (The failures
    // above may have locked the account: wait that out.)
    store.clock.advance(TimeDelta::minutes(11));
    let mut owner = half_open().await;
    assert_eq!(recovery(&mut owner, &codes[2]).await.body, "in");
    let wrong = owner
        .post_form("/codes/regenerate", &[("password", "wrong")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let reply = owner
        .post_form("/codes/regenerate", &[("password", "secret")])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let fresh: Vec<String> = reply.body.lines().map(str::to_owned).collect();
    assert_eq!(fresh.len(), 10);
    assert_eq!(
        app.factors.recovery_codes_left("alice").await.expect("n"),
        10
    );
    let mut client = half_open().await;
    let reply = recovery(&mut client, &codes[3]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "replaced");
    assert_eq!(recovery(&mut client, &fresh[0]).await.body, "in");
}

/// A store that fails while a code is checked gives a `503`, counts no
/// failure and uses no code.
pub async fn second_factor_store_failure_is_503_and_uses_nothing(store: TestStore) {
    start_clock(&store);
    let app = factor_app(&store);
    let (secret, _, _) = enrolled(&app, &store, "alice", "secret").await;
    let mut browser = Client::new(app.router.clone());
    assert_eq!(
        login(&mut browser, "alice", "secret").await.body,
        "code due"
    );
    let right = code(&store, &secret, 0);
    store
        .users
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let reply = totp(&mut browser, &right).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    store
        .users
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(failures(&app, "alice").await, 0);
    assert_eq!(browser.get("/whoami").await.body, "nobody");
    assert_eq!(totp(&mut browser, &right).await.body, "in", "still unused");
}

/// HTTP Basic cannot carry a second factor: for an account with one, the
/// right password gets the wrong password's answer, unless the application
/// allowed that account.
pub async fn second_factor_accounts_are_refused_http_basic_unless_allowed(store: TestStore) {
    start_clock(&store);
    let app = factor_app_with(&store, store.layer(), |p| {
        p.allow_basic_with_second_factor(["Robot"])
    });
    enrolled(&app, &store, "alice", "secret").await;
    enrolled(&app, &store, "robot", "beep").await;
    app.passwords
        .create_user("bob", "b-secret")
        .await
        .expect("create");
    let mut api = Client::new(app.router.clone());
    api.set_headers(vec![basic("alice", "secret")]);
    let right = api.get("/me").await;
    api.set_headers(vec![basic("alice", "wrong")]);
    let wrong = api.get("/me").await;
    assert_eq!(right.status, StatusCode::UNAUTHORIZED);
    assert_eq!((right.status, &right.body), (wrong.status, &wrong.body));
    api.set_headers(vec![basic("bob", "b-secret")]);
    assert_eq!(api.get("/me").await.body, "bob basic");
    api.set_headers(vec![basic("robot", "wrong")]);
    assert_eq!(api.get("/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(failures(&app, "robot").await, 1);
    api.set_headers(vec![basic("robot", "beep")]);
    assert_eq!(api.get("/me").await.body, "robot basic", "allowed");
    assert_eq!(failures(&app, "robot").await, 0, "its success clears");
    assert_eq!(failures(&app, "alice").await, 2, "refusals are counted");
}

/// A stolen password alone ends none of the owner's sessions: the per-user
/// limit applies when the sign-in completes, not while it is half-open.
pub async fn second_factor_per_user_limit_waits_for_the_code(store: TestStore) {
    start_clock(&store);
    let layer = store
        .layer()
        .concurrent_sessions(ConcurrentSessions::OnePerUser);
    let app = factor_app_with(&store, layer, |p| p);
    let (secret, _, mut owner) = enrolled(&app, &store, "alice", "secret").await;
    assert_eq!(owner.get("/me").await.body, "alice password");
    let mut thief = Client::new(app.router.clone());
    assert_eq!(login(&mut thief, "alice", "secret").await.body, "code due");
    assert_eq!(
        owner.get("/me").await.body,
        "alice password",
        "still signed in"
    );
    let rows = store.store().list_for_user("alice").await.expect("list");
    assert_eq!(rows.len(), 1);
    // With the code, the sign-in completes and the limit applies.
    assert_eq!(totp(&mut thief, &code(&store, &secret, 0)).await.body, "in");
    assert_eq!(owner.get("/me").await.status, StatusCode::UNAUTHORIZED);
}

/// An enrolment shows its secret once (not in `Debug`), takes effect only
/// when a first valid code confirms it, survives password changes and
/// disabling, and is removed with the password.
pub async fn second_factor_enrolment_takes_effect_when_confirmed_and_is_removed_with_the_password(
    store: TestStore,
) {
    start_clock(&store);
    let app = factor_app(&store);
    app.passwords
        .create_user("alice", "secret")
        .await
        .expect("create");
    let mut client = Client::new(app.router.clone());
    assert_eq!(login(&mut client, "alice", "secret").await.body, "done");
    let reply = client.post("/enrol").await;
    let mut lines = reply.body.lines();
    let secret = lines.next().expect("secret").to_owned();
    let uri = lines.next().expect("uri");
    let debug = lines.next().expect("debug");
    assert_eq!(secret.len(), 32, "160 bits of base32");
    assert!(
        uri.starts_with("otpauth://totp/Example%20Site:alice?secret="),
        "{uri}"
    );
    assert!(
        uri.contains(&secret) && uri.contains("issuer=Example%20Site"),
        "{uri}"
    );
    assert!(!debug.contains(&secret), "{debug}");
    assert_eq!(lines.next(), Some("qr true"), "a PNG QR code with `qr`");
    // Not confirmed yet: no second factor.
    assert!(!app.factors.has_second_factor("alice").await.expect("check"));
    assert_eq!(
        login(&mut Client::new(app.router.clone()), "alice", "secret")
            .await
            .body,
        "done"
    );
    for bad in ["000000", "12345", "abcdef"] {
        let reply = client.post_form("/enrol/confirm", &[("code", bad)]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{bad}");
    }
    assert_eq!(
        failures(&app, "alice").await,
        0,
        "enrolment counts no failure"
    );
    // A new enrolment replaces the unconfirmed one.
    let reply = client.post("/enrol").await;
    let fresh = reply.body.lines().next().expect("secret").to_owned();
    assert_ne!(fresh, secret);
    let stale = client
        .post_form("/enrol/confirm", &[("code", &code(&store, &secret, 0))])
        .await;
    assert_eq!(
        stale.status,
        StatusCode::FORBIDDEN,
        "the old secret is gone"
    );
    let reply = client
        .post_form("/enrol/confirm", &[("code", &code(&store, &fresh, 0))])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let debug = reply.body.lines().last().expect("debug");
    assert_eq!(debug, "RecoveryCodes(<10 redacted>)");
    assert!(app.factors.has_second_factor("alice").await.expect("check"));
    assert_eq!(client.post("/enrol").await.status, StatusCode::CONFLICT);
    let again = client
        .post_form("/enrol/confirm", &[("code", &code(&store, &fresh, 0))])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "nothing to confirm");

    // Neither a new password nor disabling removes it.
    app.passwords
        .set_password("alice", "new secret")
        .await
        .expect("set");
    app.passwords
        .set_disabled("alice", true)
        .await
        .expect("off");
    app.passwords
        .set_disabled("alice", false)
        .await
        .expect("on");
    assert!(app.factors.has_second_factor("alice").await.expect("check"));

    store.clock.advance(TimeDelta::seconds(30));
    let mut client = Client::new(app.router.clone());
    assert_eq!(
        login(&mut client, "alice", "new secret").await.body,
        "code due"
    );
    assert_eq!(totp(&mut client, &code(&store, &fresh, 0)).await.body, "in");
    let wrong = client
        .post_form("/factor/remove", &[("password", "wrong")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(failures(&app, "alice").await, 1, "counted");
    let removed = client
        .post_form("/factor/remove", &[("password", "new secret")])
        .await;
    assert_eq!(removed.body, "true");
    assert!(!app.factors.has_second_factor("alice").await.expect("check"));
    assert_eq!(
        app.factors.recovery_codes_left("alice").await.expect("n"),
        0
    );
    assert_eq!(
        login(&mut Client::new(app.router.clone()), "alice", "new secret")
            .await
            .body,
        "done"
    );
    assert!(!app.factors.remove_for("alice").await.expect("remove"));
}

/// A sign-in link is a first factor too: for an account with a second
/// factor it leaves the session half-open, and the code completes it.
pub async fn second_factor_is_due_after_a_sign_in_link_too(store: TestStore) {
    use keycard::auth::one_time::SIGN_IN;

    start_clock(&store);
    let app = factor_app(&store);
    let (secret, _, _) = enrolled(&app, &store, "alice", "secret").await;
    app.passwords
        .create_user("bob", "b-secret")
        .await
        .expect("create");
    let lifetime = std::time::Duration::from_secs(900);
    let link = |user: &'static str| {
        let links = app.links.clone();
        async move {
            links
                .mint(user, SIGN_IN, lifetime)
                .await
                .expect("mint")
                .expect("a secret")
        }
    };
    let mut browser = Client::new(app.router.clone());
    let alices = link("alice").await;
    assert_eq!(
        browser.post(&format!("/link/{alices}")).await.body,
        "code due"
    );
    assert_eq!(browser.get("/whoami").await.body, "nobody", "half-open");
    assert_eq!(browser.get("/pending").await.body, "alice");
    assert_eq!(
        totp(&mut browser, &code(&store, &secret, 0)).await.body,
        "in"
    );
    assert_eq!(browser.get("/me").await.body, "alice totp");
    let mut other = Client::new(app.router.clone());
    let bobs = link("bob").await;
    assert_eq!(other.post(&format!("/link/{bobs}")).await.body, "true");
    assert_eq!(other.get("/me").await.body, "bob link", "no second factor");

    // A half-open sign-in left behind when the browser signs in another
    // way is over: it never switches the session to its user.
    let mut shared = Client::new(app.router.clone());
    assert_eq!(login(&mut shared, "alice", "secret").await.body, "code due");
    let bobs = link("bob").await;
    assert_eq!(shared.post(&format!("/link/{bobs}")).await.body, "true");
    assert_eq!(shared.get("/pending").await.body, "none");
    store.clock.advance(TimeDelta::seconds(30));
    let refused = totp(&mut shared, &code(&store, &secret, 0)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(shared.get("/me").await.body, "bob link");
}
