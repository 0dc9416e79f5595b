//! What keycard logs: the events a session's life produces, and never a
//! token or its full hash, an API token, a password or its hash.

mod common;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use base64::Engine as _;
use keycard::auth::{
    ApiTokens, AuthLayer, BasicAuth, BearerAuth, CurrentUser, PasswordAuthenticator,
};
use keycard::cnx::{Cnx, CnxLayer};
use keycard::token::SessionToken;
use keycard::{Session, SessionLayer};

use common::{Client, TestStore, app};

/// The password of the account the flows below sign in to.
const PASSWORD: &str = "Tr0ub4dor&3-horse-battery";

/// An app that takes HTTP Basic and bearer tokens, as `tests/suite/auth.rs`
/// builds it, with the accounts and tokens it checks them against.
fn auth_app(store: &TestStore) -> (Router, PasswordAuthenticator, ApiTokens) {
    let layer = store.layer();
    let passwords = PasswordAuthenticator::with_shared_store(store.users.clone(), layer.admin())
        .argon2_params(argon2::Params::new(8, 1, 1, None).expect("params"))
        .clock(store.clock.clone());
    let tokens =
        ApiTokens::with_shared_store(store.users.clone(), layer.admin()).clock(store.clock.clone());
    let router = Router::new()
        .route(
            "/maybe",
            get(|user: Option<CurrentUser>| async move {
                user.map_or_else(|| "anonymous".to_owned(), |CurrentUser(u)| u.id)
            }),
        )
        .layer(
            AuthLayer::new()
                .retriever(BasicAuth)
                .retriever(BearerAuth)
                .authenticator(passwords.clone())
                .authenticator(tokens.clone()),
        )
        .layer(layer);
    (router, passwords, tokens)
}

fn basic(user: &str, password: &str) -> (String, String) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    ("authorization".into(), format!("Basic {encoded}"))
}

/// Every form of `token` that must stay out of the logs: the token, its
/// SHA-256 in hex and as bytes.
fn token_forms(token: &SessionToken) -> Vec<String> {
    let hash = token.hash();
    let hex: String = hash.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    vec![token.expose(), hex, format!("{:?}", hash.as_bytes())]
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

/// Alone in its test binary: the subscriber is global, so no other test's
/// thread can hide an event from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_a_token_or_its_hash() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Set before the store is made, whose `KEYCARD_TEST_LOG` subscriber
    // would otherwise be the global one.
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let store = common::stores::sqlite().await.expect("SQLite");
    let mut client = Client::new(app(store.layer()));
    client.post("/incr").await;
    let first = client.token().expect("token");
    client.post("/login/alice").await;
    let second = client.token().expect("token");
    let mut forged = client.clone();
    let name = forged
        .jar
        .names()
        .find(|k| k.ends_with("-token"))
        .map(str::to_owned)
        .expect("name");
    forged.jar.insert(name, first.clone());
    forged.get("/whoami").await;
    let csrf = client.get("/csrf").await.body;
    assert_eq!(csrf.len(), 43);
    client.set_headers(vec![("sec-fetch-site".into(), "same-origin".into())]);
    client
        .post_form(
            "/guarded/note",
            &[("note", "x"), ("csrf_token", "wrong-token")],
        )
        .await;
    client
        .post_form("/guarded/note", &[("note", "x"), ("csrf_token", &csrf)])
        .await;
    client.set_headers(vec![
        ("sec-fetch-site".into(), "cross-site".into()),
        ("origin".into(), "https://evil.example".into()),
    ]);
    client.post("/incr").await;
    client.headers.clear();
    store.counting.fail_loads.store(true, Ordering::SeqCst);
    client.get("/read").await;
    store.counting.fail_loads.store(false, Ordering::SeqCst);
    client.post("/logout").await;

    // Secrets the flows below handle, none of which may be logged.
    let mut secrets: Vec<(String, &str)> = Vec::new();

    // API tokens: created, used as a bearer token, a forged one refused,
    // revoked and refused.
    let (auth, passwords, tokens) = auth_app(&store);
    passwords
        .create_user("carol", PASSWORD)
        .await
        .expect("account");
    let secret = tokens
        .create("carol", "laptop")
        .await
        .expect("token")
        .secret;
    let bare: SessionToken = secret
        .strip_prefix("kc_")
        .expect("kc_ prefix")
        .parse()
        .expect("a token");
    secrets.push((secret.clone(), "API token secret"));
    for form in token_forms(&bare) {
        secrets.push((form, "API token (bare, or its hash)"));
    }
    let mut api = Client::new(auth.clone());
    api.set_headers(vec![("authorization".into(), format!("Bearer {secret}"))]);
    assert_eq!(api.get("/maybe").await.body, "carol");
    let forged = format!("kc_{}", SessionToken::generate().expect("rng").expose());
    secrets.push((forged.clone(), "forged API token"));
    api.set_headers(vec![("authorization".into(), format!("Bearer {forged}"))]);
    assert_eq!(api.get("/maybe").await.status, StatusCode::UNAUTHORIZED);
    let id = tokens.list("carol").await.expect("list")[0].id;
    assert!(tokens.revoke("carol", id).await.expect("revoke"));
    api.set_headers(vec![("authorization".into(), format!("Bearer {secret}"))]);
    assert_eq!(api.get("/maybe").await.status, StatusCode::UNAUTHORIZED);

    // Passwords: a right one, then wrong ones until the account locks, then
    // the right one again (refused while locked).
    api.set_headers(vec![basic("carol", PASSWORD)]);
    assert_eq!(api.get("/maybe").await.body, "carol");
    secrets.push((PASSWORD.to_owned(), "password"));
    secrets.push((basic("carol", PASSWORD).1, "Basic credentials"));
    for n in 0..11 {
        let wrong = format!("wrong-password-{n}-zq");
        api.set_headers(vec![basic("carol", &wrong)]);
        assert_eq!(api.get("/maybe").await.status, StatusCode::UNAUTHORIZED);
        secrets.push((basic("carol", &wrong).1, "Basic credentials"));
        secrets.push((wrong, "wrong password"));
    }
    api.set_headers(vec![basic("carol", PASSWORD)]);
    assert_eq!(
        api.get("/maybe").await.status,
        StatusCode::UNAUTHORIZED,
        "locked"
    );
    let account = passwords
        .account("carol")
        .await
        .expect("account")
        .expect("exists");
    assert!(account.locked_until.is_some(), "locked");
    let phc = account.password_hash.clone();
    let phc_hash = phc.rsplit('$').next().expect("PHC hash").to_owned();
    secrets.push((phc, "password hash"));
    secrets.push((phc_hash, "password hash"));

    // A request transaction: a sign-in and an application row committed
    // together, then a failing request rolled back.
    let fixture = common::cnx::sqlite(2).await.expect("SQLite");
    let insert = format!(
        "INSERT INTO {}_notes (owner, body) VALUES ('dave', 'x')",
        fixture.table.as_str()
    );
    let (ok_insert, failing_insert) = (insert.clone(), insert);
    let cnx_app: Router = Router::new()
        .route(
            "/login-note",
            post(move |session: Session, cnx: Cnx<sqlx::Sqlite>| async move {
                session.login("dave").await?;
                sqlx::query(sqlx::AssertSqlSafe(ok_insert))
                    .execute(&mut *cnx.write().await?)
                    .await?;
                Ok::<_, keycard::Error>("ok")
            }),
        )
        .route(
            "/fail",
            post(move |session: Session, cnx: Cnx<sqlx::Sqlite>| async move {
                session.insert("doomed", true).await?;
                sqlx::query(sqlx::AssertSqlSafe(failing_insert))
                    .execute(&mut *cnx.write().await?)
                    .await?;
                Ok::<_, keycard::Error>(StatusCode::CONFLICT)
            }),
        )
        .layer(SessionLayer::new(fixture.store.clone()).no_background_purge())
        .layer(CnxLayer::new(fixture.pool.clone()));
    let mut dave = Client::new(cnx_app);
    assert_eq!(dave.post("/login-note").await.status, StatusCode::OK);
    assert_eq!(dave.post("/fail").await.status, StatusCode::CONFLICT);
    let token: SessionToken = dave.token().expect("token").parse().expect("token");
    for form in token_forms(&token) {
        secrets.push((form, "session token in a transaction (or its hash)"));
    }
    secrets.push((token.csrf_token().as_str().to_owned(), "synchronizer token"));

    let logs = String::from_utf8(captured.0.lock().expect("logs").clone()).expect("utf-8");
    for (secret, what) in &secrets {
        assert!(!logs.contains(secret.as_str()), "{what} in logs: {secret}");
    }
    assert!(logs.contains("API token created"), "{logs}");
    assert!(logs.contains("API token revoked"), "{logs}");
    assert!(logs.contains("account locked"), "{logs}");
    assert!(logs.contains("sign-in refused"), "{logs}");
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
