//! Passkeys over HTTP, on every store: registration, a sign-in with a
//! passkey alone, a passkey as the second factor of a password, and what
//! is refused (a replayed or forged answer, an expired or reused ceremony,
//! an unknown credential, a disabled or locked account). The
//! authenticator is webauthn-rs's own software passkey; the browser's
//! ceremonies are in `tests/browser.rs`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Json, Path};
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use keycard::auth::{
    AccountError, AuthLayer, CurrentUser, PasskeyConfig, Passkeys, PasswordAuthenticator,
    SecondFactor, SignInStep, method,
};
use keycard::clock::Clock as _;
use keycard::store::UserStore as _;
use keycard::testing::{TestClient, TestResponse};
use keycard::{Session, SessionLayer};
use serde_json::Value;
use webauthn_authenticator_rs::WebauthnAuthenticator as _;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential, Url};

use crate::common::TestStore;

/// The site the passkeys are for: a domain, as WebAuthn wants.
const ORIGIN: &str = "http://localhost:8080";

#[derive(serde::Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

/// The application under test.
struct PasskeyApp {
    router: Router,
    passwords: PasswordAuthenticator,
}

fn passkey_app(store: &TestStore) -> PasskeyApp {
    passkey_app_on(store, store.layer())
}

fn passkey_app_on(store: &TestStore, layer: SessionLayer) -> PasskeyApp {
    let passwords = PasswordAuthenticator::with_shared_store(store.users.clone(), layer.admin())
        .argon2_params(argon2::Params::new(8, 1, 1, None).expect("params"))
        .clock(store.clock.clone());
    let factors = SecondFactor::new(passwords.clone());
    let config = PasskeyConfig::new("localhost", ORIGIN).name("Example");
    let passkeys = Passkeys::new(factors.clone(), config).expect("a valid relying party");
    let router = Router::new()
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
                        SignInStep::SecondFactorDue(due) => format!("due {due:?}").into_response(),
                    })
                }
            })
        })
        .route("/register/start", {
            let passkeys = passkeys.clone();
            post(move |session: Session| {
                let passkeys = passkeys.clone();
                async move { Ok::<_, AccountError>(Json(passkeys.start_registration(&session).await?)) }
            })
        })
        .route("/register/finish/{label}", {
            let passkeys = passkeys.clone();
            post(
                move |session: Session,
                      Path(label): Path<String>,
                      Json(answer): Json<RegisterPublicKeyCredential>| {
                    let passkeys = passkeys.clone();
                    async move {
                        let done = passkeys
                            .finish_registration(&session, &answer, &label)
                            .await?;
                        let codes = done.recovery_codes.map_or(0, |c| c.codes().len());
                        Ok::<_, AccountError>(format!("{} {} codes {codes}", done.passkey.id, done.passkey.label))
                    }
                },
            )
        })
        .route("/sign-in/start", {
            let passkeys = passkeys.clone();
            post(move |session: Session| {
                let passkeys = passkeys.clone();
                async move { Ok::<_, AccountError>(Json(passkeys.start_sign_in(&session).await?)) }
            })
        })
        .route("/sign-in/finish", {
            let passkeys = passkeys.clone();
            post(move |session: Session, Json(answer): Json<PublicKeyCredential>| {
                let passkeys = passkeys.clone();
                async move {
                    passkeys.finish_sign_in(&session, &answer).await?;
                    Ok::<_, AccountError>("in")
                }
            })
        })
        .route("/second/start", {
            let passkeys = passkeys.clone();
            post(move |session: Session| {
                let passkeys = passkeys.clone();
                async move { Ok::<_, AccountError>(Json(passkeys.start_second_factor(&session).await?)) }
            })
        })
        .route("/second/finish", {
            let passkeys = passkeys.clone();
            post(move |session: Session, Json(answer): Json<PublicKeyCredential>| {
                let passkeys = passkeys.clone();
                async move {
                    passkeys.complete_second_factor(&session, &answer).await?;
                    Ok::<_, AccountError>("in")
                }
            })
        })
        .route("/passkeys", {
            let passkeys = passkeys.clone();
            get(move |session: Session| {
                let passkeys = passkeys.clone();
                async move {
                    let listed = passkeys.list(&session).await?;
                    let labels: Vec<String> = listed.into_iter().map(|p| p.label).collect();
                    Ok::<_, AccountError>(labels.join(","))
                }
            })
        })
        .route("/remove/{id}", {
            let passkeys = passkeys.clone();
            post(move |session: Session, Path(id): Path<i64>| {
                let passkeys = passkeys.clone();
                async move { Ok::<_, AccountError>(passkeys.remove(&session, id).await?.to_string()) }
            })
        })
        .route(
            "/me",
            get(|user: Option<CurrentUser>| async move {
                user.map_or_else(
                    || "nobody".to_owned(),
                    |CurrentUser(u)| format!("{} {}", u.id, u.method.unwrap_or_default()),
                )
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.logout().await?;
                Ok::<_, keycard::Error>("out")
            }),
        )
        .layer(AuthLayer::new().login_url("/login"))
        .layer(layer);
    PasskeyApp { router, passwords }
}

/// `POST uri` with `body` as JSON.
async fn post_json(
    client: &mut TestClient<Router>,
    uri: &str,
    body: &impl serde::Serialize,
) -> TestResponse {
    let body = serde_json::to_vec(body).expect("JSON");
    let request = Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("a request");
    client.send(request).await
}

async fn sign_in_with_password(client: &mut TestClient<Router>, user: &str) -> String {
    let reply = client
        .post_form("/login", &[("user", user), ("password", "a long secret")])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.text()
}

/// Registers a passkey of `authenticator` for the user `client` is signed
/// in as; the finishing response.
async fn register(
    client: &mut TestClient<Router>,
    authenticator: &mut SoftPasskey,
    label: &str,
) -> TestResponse {
    let options = client.post("/register/start").await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.text());
    let options = options.json().expect("creation options");
    let answer = authenticator
        .do_registration(Url::parse(ORIGIN).expect("origin"), options)
        .expect("the authenticator registers");
    post_json(client, &format!("/register/finish/{label}"), &answer).await
}

/// The authenticator's answer to the options `start` hands out. The
/// software passkey keeps no discoverable credentials, so a user-name-less
/// request is given the credential ids it may use, as a browser's picker
/// would pick one.
async fn assertion(
    client: &mut TestClient<Router>,
    start: &str,
    authenticator: &mut SoftPasskey,
    credentials: &[Vec<u8>],
) -> PublicKeyCredential {
    let options = client.post(start).await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.text());
    let mut options: Value = options.json().expect("request options");
    if !credentials.is_empty() {
        let allowed: Vec<Value> = credentials
            .iter()
            .map(|id| serde_json::json!({"type": "public-key", "id": URL_SAFE_NO_PAD.encode(id)}))
            .collect();
        options["publicKey"]["allowCredentials"] = Value::Array(allowed);
    }
    let options = serde_json::from_value(options).expect("request options");
    authenticator
        .do_authentication(Url::parse(ORIGIN).expect("origin"), options)
        .expect("the authenticator signs")
}

/// A user `ada` with one passkey, registered from a signed-in browser that
/// then signed out; the passkey's credential id.
async fn ada_with_a_passkey(
    store: &TestStore,
    app: &PasskeyApp,
    authenticator: &mut SoftPasskey,
) -> Vec<u8> {
    app.passwords
        .create_user("ada", "a long secret")
        .await
        .expect("user");
    let mut browser = TestClient::new(app.router.clone());
    assert_eq!(sign_in_with_password(&mut browser, "ada").await, "done");
    let registered = register(&mut browser, authenticator, "laptop").await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text());
    browser.post("/logout").await;
    let rows = store.users.list_passkeys("ada").await.expect("rows");
    assert_eq!(rows.len(), 1);
    rows[0].credential_id.clone()
}

fn tamper(answer: &PublicKeyCredential, field: &str) -> Value {
    let mut json = serde_json::to_value(answer).expect("JSON");
    let text = json["response"][field]
        .as_str()
        .expect("a base64url field")
        .to_owned();
    let mut bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .expect("base64url");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    json["response"][field] = Value::String(URL_SAFE_NO_PAD.encode(bytes));
    json
}

pub async fn passkeys_register_once_and_sign_in_without_a_user_name(store: TestStore) {
    let app = passkey_app(&store);
    app.passwords
        .create_user("ada", "a long secret")
        .await
        .expect("user");
    let mut authenticator = SoftPasskey::new(true);
    let mut browser = TestClient::new(app.router.clone());
    // Nobody signed in registers nothing.
    assert_eq!(
        browser.post("/register/start").await.status,
        StatusCode::UNAUTHORIZED
    );
    sign_in_with_password(&mut browser, "ada").await;
    let registered = register(&mut browser, &mut authenticator, "laptop").await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text());
    // The first second factor comes with recovery codes.
    assert!(
        registered.text().ends_with("laptop codes 10"),
        "{}",
        registered.text()
    );
    assert_eq!(browser.get("/passkeys").await.text(), "laptop");
    let rows = store.users.list_passkeys("ada").await.expect("rows");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.sign_count, row.last_used_at, row.label.as_str()),
        (0, None, "laptop")
    );
    assert_eq!(
        row.user_handle.len(),
        16,
        "a random user handle, not the name"
    );
    assert_ne!(row.user_handle, b"ada".to_vec());
    let credential_id = row.credential_id.clone();
    browser.post("/logout").await;

    // Another browser, no user name: the passkey alone signs in.
    let mut other = TestClient::new(app.router.clone());
    let answer = assertion(
        &mut other,
        "/sign-in/start",
        &mut authenticator,
        std::slice::from_ref(&credential_id),
    )
    .await;
    let before = other.jar.header();
    let done = post_json(&mut other, "/sign-in/finish", &answer).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(
        other.get("/me").await.text(),
        format!("ada {}", method::PASSKEY)
    );
    assert_ne!(other.jar.header(), before, "a fresh token at sign-in");
    let row = store
        .users
        .find_passkey(&credential_id)
        .await
        .expect("row")
        .expect("kept");
    assert_eq!(row.sign_count, 1, "the authenticator's counter is kept");
    assert!(row.last_used_at.is_some());

    // The same answer again: its ceremony was used up.
    let again = post_json(&mut other, "/sign-in/finish", &answer).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);

    // The authenticator cannot register its credential a second time: it
    // is excluded, and the store refuses a second row for it anyway.
    let mut copy = row.clone();
    copy.user_id = "eve".to_owned();
    assert_eq!(
        store.users.insert_passkey(&copy).await.expect("insert"),
        None
    );
    // A second passkey of the account brings no new codes.
    let mut phone = SoftPasskey::new(true);
    let second = register(&mut other, &mut phone, "phone").await;
    assert!(
        second.text().ends_with("phone codes 0"),
        "{}",
        second.text()
    );
    assert_eq!(other.get("/passkeys").await.text(), "laptop,phone");

    // An account holds at most MAX_PASSKEYS: the 33rd is refused at its
    // start.
    for n in 2..keycard::auth::passkeys::MAX_PASSKEYS {
        let mut more = row.clone();
        more.credential_id = format!("credential {n}").into_bytes();
        more.label = format!("key {n}");
        let id = store.users.insert_passkey(&more).await.expect("insert");
        assert!(id.is_some(), "a new credential id is stored");
    }
    let full = other.post("/register/start").await;
    assert_eq!(full.status, StatusCode::CONFLICT, "{}", full.text());
}

pub async fn passkeys_are_the_second_factor_of_a_password_sign_in(store: TestStore) {
    let app = passkey_app(&store);
    let mut authenticator = SoftPasskey::new(true);
    ada_with_a_passkey(&store, &app, &mut authenticator).await;
    let mut browser = TestClient::new(app.router.clone());
    let due = sign_in_with_password(&mut browser, "ada").await;
    assert!(due.starts_with("due"), "{due}");
    assert!(due.contains("passkey: true"), "{due}");
    assert_eq!(
        browser.get("/me").await.text(),
        "nobody",
        "half-open is anonymous"
    );
    // A user-name-less sign-in's options do not complete it.
    let answer = assertion(&mut browser, "/second/start", &mut authenticator, &[]).await;
    let done = post_json(&mut browser, "/second/finish", &answer).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(
        browser.get("/me").await.text(),
        format!("ada {}", method::PASSWORD_AND_PASSKEY)
    );
    let rows = store.users.list_passkeys("ada").await.expect("rows");
    assert_eq!(rows[0].sign_count, 1);

    // Without a half-open sign-in there is nothing to start.
    let mut stranger = TestClient::new(app.router.clone());
    assert_eq!(
        stranger.post("/second/start").await.status,
        StatusCode::UNAUTHORIZED
    );
}

pub async fn passkey_answers_that_do_not_verify_are_refused_and_counted(store: TestStore) {
    let app = passkey_app(&store);
    let mut authenticator = SoftPasskey::new(true);
    let credential_id = ada_with_a_passkey(&store, &app, &mut authenticator).await;
    let mut browser = TestClient::new(app.router.clone());
    let answer = assertion(
        &mut browser,
        "/sign-in/start",
        &mut authenticator,
        std::slice::from_ref(&credential_id),
    )
    .await;

    // A forged signature.
    let forged = tamper(&answer, "signature");
    let refused = post_json(&mut browser, "/sign-in/finish", &forged).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let account = store
        .users
        .find_user("ada")
        .await
        .expect("user")
        .expect("ada");
    assert_eq!(account.failures, 1, "a known passkey's failure is counted");

    // A genuine answer to another ceremony's challenge (a replay).
    browser.post("/sign-in/start").await;
    let replayed = post_json(&mut browser, "/sign-in/finish", &answer).await;
    assert_eq!(replayed.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.get("/me").await.text(), "nobody");

    // A credential keycard does not know: refused, nobody to count.
    let mut unknown = serde_json::to_value(&answer).expect("JSON");
    let other_id = URL_SAFE_NO_PAD.encode(b"a credential nobody registered");
    unknown["id"] = Value::String(other_id.clone());
    unknown["rawId"] = Value::String(other_id);
    browser.post("/sign-in/start").await;
    let refused = post_json(&mut browser, "/sign-in/finish", &unknown).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // A finish without a start, and garbage: clean answers, no panic.
    let mut fresh = TestClient::new(app.router.clone());
    assert_eq!(
        post_json(&mut fresh, "/sign-in/finish", &answer)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let garbage = post_json(&mut fresh, "/sign-in/finish", &serde_json::json!({"id": 1})).await;
    assert!(garbage.status.is_client_error(), "{}", garbage.status);

    // The store records a use only if the counter moved forward (or stays
    // 0, for an authenticator that keeps none).
    let row = store
        .users
        .find_passkey(&credential_id)
        .await
        .expect("row")
        .expect("kept");
    assert_eq!(row.sign_count, 0, "no refused answer was recorded");
    let with = |count: i64| {
        let mut used = row.clone();
        used.sign_count = count;
        used.last_used_at = Some(store.clock.now());
        used
    };
    assert!(
        store.users.use_passkey(&with(0)).await.expect("update"),
        "0 and 0"
    );
    assert!(
        store.users.use_passkey(&with(5)).await.expect("update"),
        "0 to 5"
    );
    assert!(
        !store.users.use_passkey(&with(5)).await.expect("update"),
        "5 again"
    );
    assert!(
        !store.users.use_passkey(&with(3)).await.expect("update"),
        "5 to 3"
    );
    assert!(
        !store.users.use_passkey(&with(0)).await.expect("update"),
        "5 to 0"
    );
    let row = store
        .users
        .find_passkey(&credential_id)
        .await
        .expect("row")
        .expect("kept");
    assert_eq!(row.sign_count, 5);
    let account = store
        .users
        .find_user("ada")
        .await
        .expect("user")
        .expect("ada");
    assert_eq!(
        account.failures, 2,
        "the replay counted, the unknown credential did not"
    );
}

pub async fn passkey_ceremonies_expire_and_belong_to_their_kind(store: TestStore) {
    let app = passkey_app(&store);
    let mut authenticator = SoftPasskey::new(true);
    let credential_id = ada_with_a_passkey(&store, &app, &mut authenticator).await;
    let mut browser = TestClient::new(app.router.clone());
    let answer = assertion(
        &mut browser,
        "/sign-in/start",
        &mut authenticator,
        std::slice::from_ref(&credential_id),
    )
    .await;
    store
        .clock
        .advance(TimeDelta::minutes(5) + TimeDelta::seconds(1));
    let late = post_json(&mut browser, "/sign-in/finish", &answer).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST, "{}", late.text());
    // A second-factor ceremony does not finish a sign-in.
    let mut ada = TestClient::new(app.router.clone());
    sign_in_with_password(&mut ada, "ada").await;
    let answer = assertion(&mut ada, "/second/start", &mut authenticator, &[]).await;
    let wrong_kind = post_json(&mut ada, "/sign-in/finish", &answer).await;
    assert_eq!(wrong_kind.status, StatusCode::BAD_REQUEST);
    assert_eq!(ada.get("/me").await.text(), "nobody");
}

pub async fn passkeys_of_disabled_locked_or_removed_accounts_do_not_sign_in(store: TestStore) {
    let app = passkey_app(&store);
    let mut authenticator = SoftPasskey::new(true);
    let credential_id = ada_with_a_passkey(&store, &app, &mut authenticator).await;
    let ids = [credential_id.clone()];
    let mut browser = TestClient::new(app.router.clone());

    app.passwords
        .set_disabled("ada", true)
        .await
        .expect("disable");
    let answer = assertion(&mut browser, "/sign-in/start", &mut authenticator, &ids).await;
    assert_eq!(
        post_json(&mut browser, "/sign-in/finish", &answer)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    app.passwords
        .set_disabled("ada", false)
        .await
        .expect("enable");

    // Locked by wrong passwords: the right passkey is refused too.
    for _ in 0..10 {
        browser
            .post_form("/login", &[("user", "ada"), ("password", "wrong")])
            .await;
    }
    let locked = store
        .users
        .find_user("ada")
        .await
        .expect("user")
        .expect("ada");
    assert!(locked.locked_until.is_some(), "the lockout engaged");
    let answer = assertion(&mut browser, "/sign-in/start", &mut authenticator, &ids).await;
    assert_eq!(
        post_json(&mut browser, "/sign-in/finish", &answer)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(browser.get("/me").await.text(), "nobody");
    store.users.clear_failures("ada").await.expect("unlock");

    // Removed: only by its owner, and then it signs in no more.
    let row = store
        .users
        .find_passkey(&credential_id)
        .await
        .expect("row")
        .expect("kept");
    let mut eve = TestClient::new(app.router.clone());
    app.passwords
        .create_user("eve", "a long secret")
        .await
        .expect("eve");
    sign_in_with_password(&mut eve, "eve").await;
    assert_eq!(
        eve.post(&format!("/remove/{}", row.id)).await.text(),
        "false"
    );
    let mut ada = TestClient::new(app.router.clone());
    let answer = assertion(&mut ada, "/sign-in/start", &mut authenticator, &ids).await;
    assert_eq!(
        post_json(&mut ada, "/sign-in/finish", &answer).await.status,
        StatusCode::OK
    );
    assert_eq!(
        ada.post(&format!("/remove/{}", row.id)).await.text(),
        "true"
    );
    assert!(
        store
            .users
            .list_passkeys("ada")
            .await
            .expect("rows")
            .is_empty()
    );
    ada.post("/logout").await;
    let answer = assertion(&mut ada, "/sign-in/start", &mut authenticator, &ids).await;
    assert_eq!(
        post_json(&mut ada, "/sign-in/finish", &answer).await.status,
        StatusCode::FORBIDDEN
    );
    // Without a passkey the password alone signs in again.
    assert_eq!(sign_in_with_password(&mut ada, "ada").await, "done");
}

pub async fn passkey_store_failure_is_503_and_signs_nobody_in(store: TestStore) {
    let app = passkey_app(&store);
    let mut authenticator = SoftPasskey::new(true);
    let credential_id = ada_with_a_passkey(&store, &app, &mut authenticator).await;
    let mut browser = TestClient::new(app.router.clone());
    let answer = assertion(
        &mut browser,
        "/sign-in/start",
        &mut authenticator,
        std::slice::from_ref(&credential_id),
    )
    .await;
    store
        .users
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let down = post_json(&mut browser, "/sign-in/finish", &answer).await;
    store
        .users
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(browser.get("/me").await.text(), "nobody");
    let row = store
        .users
        .find_passkey(&credential_id)
        .await
        .expect("row")
        .expect("kept");
    assert_eq!(
        (row.sign_count, row.last_used_at),
        (0, None),
        "nothing was used"
    );
}
