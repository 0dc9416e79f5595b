//! Pluggable authentication over HTTP: retrievers, authenticators, guards,
//! API client sessions and lockout.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Path};
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::TimeDelta;
use keycard::auth::{
    ApiTokens, AuthLayer, AuthUser, BasicAuth, BearerAuth, CurrentUser, LockoutPolicy,
    PasswordAuthenticator, Permission, Permissions, RequireAuthMethod, RequirePermission,
    RequireUser, TrustedHeader, method, methods,
};
use keycard::{BoxError, Login, Session};

use crate::common::{Client, Reply, TestStore, send_raw};

#[derive(Debug)]
struct AlicesRules;

#[async_trait]
impl Permissions for AlicesRules {
    async fn allowed(&self, user: &AuthUser, permission: &str) -> Result<bool, BoxError> {
        Ok(permission == "admin" && user.id == "alice")
    }
}

struct Admin;
impl Permission for Admin {
    const NAME: &'static str = "admin";
}

#[derive(serde::Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

/// The application under test, with its authenticators.
struct AuthApp {
    router: Router,
    passwords: PasswordAuthenticator,
    tokens: ApiTokens,
}

fn auth_app(store: &TestStore) -> AuthApp {
    let passwords = PasswordAuthenticator::with_shared_store(store.users.clone())
        .argon2_params(argon2::Params::new(8, 1, 1, None).expect("params"))
        .clock(store.clock.clone());
    let tokens = ApiTokens::with_shared_store(store.users.clone()).clock(store.clock.clone());
    let form_passwords = passwords.clone();
    let form_login = move |session: Session, Form(form): Form<Credentials>| {
        let passwords = form_passwords.clone();
        async move {
            match passwords.verify(&form.user, &form.password).await {
                Ok(user) => {
                    session
                        .login_with(Login::new(user).method(methods::PASSWORD))
                        .await?;
                    Ok::<_, keycard::Error>("signed in".into_response())
                }
                Err(keycard::auth::AuthenticationError::Unavailable(_)) => {
                    Ok(StatusCode::SERVICE_UNAVAILABLE.into_response())
                }
                Err(_) => Ok(StatusCode::UNAUTHORIZED.into_response()),
            }
        }
    };
    let create_tokens = tokens.clone();
    let create = move |RequireUser(user): RequireUser, Path(name): Path<String>| {
        let tokens = create_tokens.clone();
        async move {
            let new = tokens.create(&user.id, &name).await?;
            Ok::<_, keycard::Error>(new.secret)
        }
    };
    let revoke_tokens = tokens.clone();
    let revoke = move |RequireUser(user): RequireUser, Path(id): Path<i64>| {
        let tokens = revoke_tokens.clone();
        async move { Ok::<_, keycard::Error>(tokens.revoke(&user.id, id).await?.to_string()) }
    };
    let router = Router::new()
        .route(
            "/me",
            get(|RequireUser(user): RequireUser| async move {
                let marks: Vec<_> = user.marks.into_iter().collect();
                format!(
                    "{} {} {} [{}]",
                    user.id,
                    user.method.unwrap_or_default(),
                    if user.is_api { "api" } else { "human" },
                    marks.join(",")
                )
            }),
        )
        .route(
            "/maybe",
            get(|CurrentUser(user): CurrentUser| async move {
                user.map_or_else(|| "anonymous".to_owned(), |u| u.id)
            }),
        )
        .route("/form-login", post(form_login))
        .route(
            "/password",
            post(|_: RequireAuthMethod<method::Password>| async { "may change password" }),
        )
        .route(
            "/admin",
            get(
                |RequirePermission(user, PhantomData): RequirePermission<Admin>| async move {
                    format!("admin {}", user.id)
                },
            ),
        )
        .route("/tokens/{name}", post(create))
        .route("/tokens/{id}/revoke", post(revoke))
        .layer(
            AuthLayer::new()
                .retriever(BasicAuth)
                .retriever(BearerAuth)
                .retriever(ApiKeyHeader)
                .trusted_header(TrustedHeader::new(
                    "x-remote-user",
                    ["10.0.0.0/8".parse().expect("net")],
                ))
                .authenticator(passwords.clone())
                .authenticator(tokens.clone())
                .authenticator(TrustProxy)
                .authenticator(ApiKeys)
                .on_authenticated(|_, info| {
                    if info.method == methods::TRUSTED_HEADER {
                        vec!["via-proxy".to_owned()]
                    } else {
                        Vec::new()
                    }
                })
                .permissions(AlicesRules)
                .login_url("/login"),
        )
        .layer(store.layer());
    AuthApp {
        router,
        passwords,
        tokens,
    }
}

/// An application's own retriever: `X-Api-Key: <key>`.
#[derive(Debug)]
struct ApiKeyHeader;

/// What [`ApiKeyHeader`] finds.
struct ApiKey(String);

impl keycard::auth::Retriever for ApiKeyHeader {
    fn method(&self) -> &'static str {
        "api-key"
    }

    fn retrieve(&self, request: &keycard::auth::RequestHead<'_>) -> keycard::auth::Retrieved {
        match request.headers.get("x-api-key").map(|v| v.to_str()) {
            None => keycard::auth::Retrieved::Nothing,
            Some(Ok(key)) => keycard::auth::Retrieved::Found(keycard::auth::Credentials::Custom(
                Box::new(ApiKey(key.to_owned())),
            )),
            Some(Err(_)) => keycard::auth::Retrieved::Malformed("X-Api-Key is not text"),
        }
    }
}

/// The application's own authenticator for [`ApiKey`]s.
#[derive(Debug)]
struct ApiKeys;

#[async_trait]
impl keycard::auth::Authenticator for ApiKeys {
    async fn authenticate(
        &self,
        credentials: &keycard::auth::Credentials,
    ) -> Result<keycard::auth::Authenticated, keycard::auth::AuthenticationError> {
        let keycard::auth::Credentials::Custom(custom) = credentials else {
            return Err(keycard::auth::AuthenticationError::NotMine);
        };
        let Some(ApiKey(key)) = custom.downcast_ref::<ApiKey>() else {
            return Err(keycard::auth::AuthenticationError::NotMine);
        };
        match key.as_str() {
            "key-of-frank" => Ok(keycard::auth::Authenticated {
                user_id: "frank".into(),
            }),
            _ => Err(keycard::auth::AuthenticationError::Rejected),
        }
    }
}

/// Accepts whom the trusted proxy names (the proxy authenticated them).
#[derive(Debug)]
struct TrustProxy;

#[async_trait]
impl keycard::auth::Authenticator for TrustProxy {
    async fn authenticate(
        &self,
        credentials: &keycard::auth::Credentials,
    ) -> Result<keycard::auth::Authenticated, keycard::auth::AuthenticationError> {
        match credentials {
            keycard::auth::Credentials::TrustedUser(user) => Ok(keycard::auth::Authenticated {
                user_id: user.clone(),
            }),
            _ => Err(keycard::auth::AuthenticationError::NotMine),
        }
    }
}

fn basic(user: &str, password: &str) -> (String, String) {
    let value = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    ("authorization".to_owned(), value)
}

async fn form_login(client: &mut Client, user: &str, password: &str) -> Reply {
    let body = format!("user={user}&password={password}");
    let mut request = Request::post("/form-login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookies) = client.cookie_header() {
        request = request.header(header::COOKIE, cookies);
    }
    let reply = send_raw(
        &client.app,
        request.body(Body::from(body)).expect("request"),
    )
    .await;
    client.absorb(&reply);
    reply
}

async fn with_headers(client: &mut Client, uri: &str, headers: Vec<(String, String)>) -> Reply {
    client.headers = headers;
    let reply = client.get(uri).await;
    client.headers.clear();
    reply
}

pub async fn basic_auth_signs_in_an_api_session_once_per_session(store: TestStore) {
    let app = auth_app(&store);
    app.passwords
        .create_user("alice", "secret")
        .await
        .expect("user");
    let mut client = Client::new(app.router.clone());
    let reply = with_headers(&mut client, "/me", vec![basic("alice", "secret")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "alice basic api []");
    assert_eq!(reply.set_cookies().len(), 2, "an API session with cookies");
    let id = client.session_id().expect("id");
    let row = store.row(id).await.expect("row");
    assert!(row.fields.is_api);
    assert_eq!(row.fields.auth_method.as_deref(), Some("basic"));
    // Next request with the cookie and the credentials: same session.
    let reply = with_headers(&mut client, "/me", vec![basic("alice", "secret")]).await;
    assert_eq!(reply.body, "alice basic api []");
    assert!(
        reply.set_cookies().is_empty(),
        "no rotation for the same API user"
    );
    assert_eq!(client.session_id(), Some(id));
}

pub async fn wrong_credentials_get_the_same_401_and_end_the_api_session(store: TestStore) {
    let app = auth_app(&store);
    app.passwords
        .create_user("alice", "secret")
        .await
        .expect("user");
    let mut client = Client::new(app.router.clone());
    with_headers(&mut client, "/me", vec![basic("alice", "secret")]).await;
    let id = client.session_id().expect("id");
    let wrong = with_headers(&mut client, "/me", vec![basic("alice", "nope")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = wrong
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic realm=")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer realm=")),
        "{challenges:?}"
    );
    assert!(
        store.row(id).await.is_none(),
        "wrong credentials end the API session"
    );
    let mut stranger = Client::new(app.router.clone());
    let unknown = with_headers(&mut stranger, "/me", vec![basic("nobody", "nope")]).await;
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(unknown.body, wrong.body, "no user enumeration");
    assert_eq!(
        unknown
            .headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .count(),
        challenges.len()
    );
}

pub async fn malformed_authorization_values_get_a_clean_400(store: TestStore) {
    let app = auth_app(&store);
    let huge = format!("Basic {}", "QUFB".repeat(2000));
    let cases: Vec<Vec<u8>> = vec![
        b"Basic !!!".to_vec(),
        format!("Basic {}", STANDARD.encode("no-colon")).into_bytes(),
        format!("Basic {}", STANDARD.encode(b"\xff\xfe:pw")).into_bytes(),
        huge.into_bytes(),
        b"Basic \xe9t\xe9".to_vec(),
        b"Bearer not-a-keycard-token".to_vec(),
        b"Bearer kc_short".to_vec(),
    ];
    for value in cases {
        let request = Request::get("/me")
            .header(header::AUTHORIZATION, value.as_slice())
            .body(Body::empty())
            .expect("request");
        let reply = send_raw(&app.router, request).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(&value)
        );
        assert!(reply.set_cookies().is_empty());
    }
    let two = Request::get("/me")
        .header(header::AUTHORIZATION, basic("a", "b").1)
        .header(header::AUTHORIZATION, basic("c", "d").1)
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        send_raw(&app.router, two).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(store.calls().total(), 0, "no session touched for junk");
}

pub async fn credentials_in_the_query_string_are_ignored(store: TestStore) {
    let app = auth_app(&store);
    app.passwords
        .create_user("alice", "secret")
        .await
        .expect("user");
    let secret = app
        .tokens
        .create("alice", "ci")
        .await
        .expect("token")
        .secret;
    let mut client = Client::new(app.router.clone());
    for uri in [
        format!("/me?access_token={secret}"),
        "/me?user=alice&password=secret".to_owned(),
        format!("/me?authorization=Bearer%20{secret}"),
    ] {
        assert_eq!(
            client.get(&uri).await.status,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
}

pub async fn an_api_client_with_another_users_cookie_is_swapped_in_one_request(store: TestStore) {
    let app = auth_app(&store);
    app.passwords
        .create_user("alice", "a-secret")
        .await
        .expect("user");
    app.passwords
        .create_user("bob", "b-secret")
        .await
        .expect("user");
    let mut client = Client::new(app.router.clone());
    // A browser session of alice, signed in through the form.
    assert_eq!(
        form_login(&mut client, "alice", "a-secret").await.status,
        StatusCode::OK
    );
    let alice_id = client.session_id().expect("id");
    let alice_cookies = client.jar.clone();
    // The same cookies, but bob's Basic credentials.
    let reply = with_headers(&mut client, "/me", vec![basic("bob", "b-secret")]).await;
    assert_eq!(reply.body, "bob basic api []");
    assert_eq!(
        reply.set_cookies().len(),
        2,
        "new cookies in the same response"
    );
    let bob_id = client.session_id().expect("id");
    assert_ne!(bob_id, alice_id);
    assert!(
        store.row(alice_id).await.is_none(),
        "alice's session was ended"
    );
    let bob_row = store.row(bob_id).await.expect("bob's row");
    assert_eq!(bob_row.fields.user_id.as_deref(), Some("bob"));
    let mut replay = Client::new(app.router.clone());
    replay.jar = alice_cookies;
    assert_eq!(replay.get("/maybe").await.body, "anonymous");
}

pub async fn bearer_tokens_are_created_used_listed_and_revoked(store: TestStore) {
    let app = auth_app(&store);
    app.passwords
        .create_user("alice", "secret")
        .await
        .expect("user");
    let mut browser = Client::new(app.router.clone());
    form_login(&mut browser, "alice", "secret").await;
    let secret = browser.post("/tokens/laptop").await.body;
    assert!(secret.starts_with("kc_") && secret.len() == 46, "{secret}");
    let listed = app.tokens.list("alice").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "laptop");
    assert_eq!(listed[0].last_used_at, None);
    let mut api = Client::new(app.router.clone());
    let bearer = ("authorization".to_owned(), format!("Bearer {secret}"));
    store.clock.advance(TimeDelta::seconds(5));
    let reply = with_headers(&mut api, "/me", vec![bearer.clone()]).await;
    assert_eq!(reply.body, "alice bearer api []");
    let used = app.tokens.list("alice").await.expect("list");
    assert!(used[0].last_used_at.is_some(), "last use recorded");
    // Only the hash is stored.
    let hash = secret
        .trim_start_matches("kc_")
        .parse::<keycard::token::SessionToken>()
        .expect("token")
        .hash();
    assert!(
        store
            .users
            .inner
            .find_api_token(&hash)
            .await
            .expect("find")
            .is_some()
    );
    // Bob cannot revoke alice's token; alice can.
    assert!(!app.tokens.revoke("bob", used[0].id).await.expect("revoke"));
    let id = used[0].id;
    assert_eq!(
        browser.post(&format!("/tokens/{id}/revoke")).await.body,
        "true"
    );
    let reply = with_headers(&mut api, "/me", vec![bearer]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let forged = format!(
        "Bearer kc_{}",
        keycard::token::SessionToken::generate()
            .expect("rng")
            .expose()
    );
    let reply = with_headers(&mut api, "/me", vec![("authorization".into(), forged)]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

pub async fn a_trusted_proxy_header_signs_in_only_from_the_proxy(store: TestStore) {
    let app = auth_app(&store);
    let remote = |user: &str| vec![("x-remote-user".to_owned(), user.to_owned())];
    let mut client = Client::new(app.router.clone());
    client.peer = Some(SocketAddr::from(([10, 0, 0, 7], 443)));
    let reply = with_headers(&mut client, "/me", remote("carol")).await;
    assert_eq!(reply.body, "carol trusted-header human [via-proxy]");
    let id = client.session_id().expect("id");
    // Spoofed from elsewhere: ignored.
    let mut spoofer = Client::new(app.router.clone());
    spoofer.peer = Some(SocketAddr::from(([192, 0, 2, 66], 443)));
    assert_eq!(
        with_headers(&mut spoofer, "/maybe", remote("carol"))
            .await
            .body,
        "anonymous"
    );
    // Sent twice: nobody.
    let mut twice = Client::new(app.router.clone());
    twice.peer = client.peer;
    let both = vec![
        ("x-remote-user".to_owned(), "carol".to_owned()),
        ("x-remote-user".to_owned(), "dave".to_owned()),
    ];
    assert_eq!(
        with_headers(&mut twice, "/maybe", both).await.body,
        "anonymous"
    );
    // Another user in the header: the session is swapped.
    let reply = with_headers(&mut client, "/me", remote("dave")).await;
    assert_eq!(reply.body, "dave trusted-header human [via-proxy]");
    assert!(store.row(id).await.is_none());
    // The header disappears: the session ends.
    let dave = client.session_id().expect("id");
    assert_eq!(client.get("/maybe").await.body, "anonymous");
    assert!(store.row(dave).await.is_none());
}

pub async fn require_user_redirects_browsers_and_challenges_api_clients(store: TestStore) {
    let app = auth_app(&store);
    let browser = Request::get("/me?tab=keys&x=%2F")
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .body(Body::empty())
        .expect("request");
    let reply = send_raw(&app.router, browser).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        reply
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok()),
        Some("/login?next=/me%3Ftab%3Dkeys%26x%3D%252F")
    );
    let sneaky = Request::get("//evil.example/me")
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .expect("request");
    let reply = send_raw(&app.router, sneaky).await;
    let location = reply
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok());
    assert!(
        location.is_none_or(|l| !l.contains("evil.example")),
        "no open redirect: {location:?}"
    );
    let api = send_raw(
        &app.router,
        Request::get("/me").body(Body::empty()).expect("r"),
    )
    .await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert!(api.headers.contains_key(header::WWW_AUTHENTICATE));
}

pub async fn guards_check_method_and_permission(store: TestStore) {
    let app = auth_app(&store);
    app.passwords
        .create_user("alice", "a-secret")
        .await
        .expect("user");
    app.passwords
        .create_user("bob", "b-secret")
        .await
        .expect("user");
    let mut alice = Client::new(app.router.clone());
    form_login(&mut alice, "alice", "a-secret").await;
    assert_eq!(alice.post("/password").await.status, StatusCode::OK);
    assert_eq!(alice.get("/admin").await.body, "admin alice");
    let mut bob_api = Client::new(app.router.clone());
    bob_api.headers = vec![basic("bob", "b-secret")];
    assert_eq!(
        bob_api.post("/password").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(bob_api.get("/admin").await.status, StatusCode::FORBIDDEN);
    let mut nobody = Client::new(app.router.clone());
    assert_eq!(nobody.get("/admin").await.status, StatusCode::UNAUTHORIZED);
}

pub async fn lockout_applies_on_every_pathway_and_escalates(store: TestStore) {
    let app = auth_app(&store);
    app.passwords
        .create_user("alice", "secret")
        .await
        .expect("user");
    let mut browser = Client::new(app.router.clone());
    for _ in 0..10 {
        assert_eq!(
            form_login(&mut browser, "alice", "wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked: the right password gets the wrong password's answer, by form
    // and by Basic.
    assert_eq!(
        form_login(&mut browser, "alice", "secret").await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut api = Client::new(app.router.clone());
    let locked = with_headers(&mut api, "/me", vec![basic("alice", "secret")]).await;
    let wrong = with_headers(&mut api, "/me", vec![basic("alice", "wrong")]).await;
    assert_eq!((locked.status, &locked.body), (wrong.status, &wrong.body));
    let account = app
        .passwords
        .account("alice")
        .await
        .expect("account")
        .expect("exists");
    assert_eq!(account.failures, 13);
    // Ten minutes later it opens again.
    store.clock.advance(TimeDelta::minutes(11));
    assert_eq!(
        form_login(&mut browser, "alice", "secret").await.status,
        StatusCode::OK
    );
    let account = app
        .passwords
        .account("alice")
        .await
        .expect("account")
        .expect("exists");
    assert_eq!(
        (account.failures, account.locked_until),
        (0, None),
        "success clears"
    );
    // Twenty failures lock for twenty minutes.
    for _ in 0..20 {
        form_login(&mut api, "alice", "wrong").await;
    }
    store.clock.advance(TimeDelta::minutes(11));
    assert_eq!(
        form_login(&mut api, "alice", "secret").await.status,
        StatusCode::UNAUTHORIZED
    );
    store.clock.advance(TimeDelta::minutes(10));
    assert_eq!(
        form_login(&mut api, "alice", "secret").await.status,
        StatusCode::OK
    );
}

pub async fn concurrent_wrong_passwords_are_all_counted(store: TestStore) {
    let app = auth_app(&store);
    app.passwords
        .create_user("alice", "secret")
        .await
        .expect("user");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let mut client = Client::new(app.router.clone());
            tokio::spawn(async move { form_login(&mut client, "alice", "wrong").await.status })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), StatusCode::UNAUTHORIZED);
    }
    let account = app
        .passwords
        .account("alice")
        .await
        .expect("account")
        .expect("exists");
    assert_eq!(account.failures, 20, "none lost");
    assert!(LockoutPolicy::is_locked(
        account.locked_until,
        keycard::clock::Clock::now(&store.clock)
    ));
}

pub async fn a_store_failure_during_login_is_503_and_no_failure(store: TestStore) {
    let app = auth_app(&store);
    app.passwords
        .create_user("alice", "secret")
        .await
        .expect("user");
    store.users.fail.store(true, Ordering::SeqCst);
    let mut client = Client::new(app.router.clone());
    let reply = with_headers(&mut client, "/me", vec![basic("alice", "wrong")]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        form_login(&mut client, "alice", "wrong").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    store.users.fail.store(false, Ordering::SeqCst);
    let account = app
        .passwords
        .account("alice")
        .await
        .expect("account")
        .expect("exists");
    assert_eq!(account.failures, 0, "not counted as failures");
}

pub async fn accounts_have_one_canonical_name_and_can_be_disabled(store: TestStore) {
    let app = auth_app(&store);
    assert_eq!(
        app.passwords
            .create_user("  Ada ", "secret")
            .await
            .expect("user"),
        "ada"
    );
    assert!(matches!(
        app.passwords.create_user("ADA", "other").await,
        Err(keycard::auth::AccountError::Exists)
    ));
    assert!(matches!(
        app.passwords.create_user("ｅｖｅ", "secret").await,
        Ok(ref id) if id == "eve"
    ));
    for bad in ["", "a:b", "tab\there", &"x".repeat(256)] {
        assert!(
            app.passwords.create_user(bad, "secret").await.is_err(),
            "{bad:?}"
        );
    }
    assert!(app.passwords.create_user("zed", "").await.is_err());
    let mut client = Client::new(app.router.clone());
    assert_eq!(
        form_login(&mut client, "ADA", "secret").await.status,
        StatusCode::OK
    );
    assert_eq!(client.get("/maybe").await.body, "ada");
    assert!(
        app.passwords
            .set_disabled("ada", true)
            .await
            .expect("disable")
    );
    let mut other = Client::new(app.router.clone());
    assert_eq!(
        form_login(&mut other, "ada", "secret").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        app.passwords
            .set_disabled("ada", false)
            .await
            .expect("enable")
    );
    assert!(
        app.passwords
            .set_password("ada", "new secret")
            .await
            .expect("set")
    );
    assert_eq!(
        form_login(&mut other, "ada", "secret").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        form_login(&mut other, "ada", "new%20secret").await.status,
        StatusCode::OK
    );
    let row = app
        .passwords
        .account("ada")
        .await
        .expect("account")
        .expect("exists");
    assert!(
        row.password_hash.starts_with("$argon2id$"),
        "argon2id PHC string"
    );
    assert!(!row.password_hash.contains("secret"));
}

pub async fn an_application_retriever_and_authenticator_plug_in(store: TestStore) {
    let app = auth_app(&store);
    let mut client = Client::new(app.router.clone());
    let key = |k: &str| vec![("x-api-key".to_owned(), k.to_owned())];
    let reply = with_headers(&mut client, "/me", key("key-of-frank")).await;
    assert_eq!(reply.body, "frank api-key api []");
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    assert_eq!(row.fields.auth_method.as_deref(), Some("api-key"));
    let reply = with_headers(&mut client, "/me", key("wrong")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        store.row(row.id).await.is_none(),
        "a rejected key ends the API session"
    );
    let request = Request::get("/me")
        .header("x-api-key", &b"\xff"[..])
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        send_raw(&app.router, request).await.status,
        StatusCode::BAD_REQUEST
    );
}
