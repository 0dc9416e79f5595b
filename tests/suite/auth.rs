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
    RequireRecentAuth, StoredSession, TrustedHeader, method,
};
use keycard::store::UserStore as _;
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
struct Confirmation {
    password: String,
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

/// The application with request-only Basic and bearer sign-ins (the
/// default).
fn auth_app(store: &TestStore) -> AuthApp {
    auth_app_with(store, false)
}

/// The application whose Basic and bearer clients get stored API sessions
/// ([`StoredSession`]), as CamCOPS' tablets do.
fn stored_auth_app(store: &TestStore) -> AuthApp {
    auth_app_with(store, true)
}

fn auth_app_with(store: &TestStore, stored_sessions: bool) -> AuthApp {
    let layer = store.layer();
    let passwords = PasswordAuthenticator::with_shared_store(store.users.clone(), layer.admin())
        .argon2_params(argon2::Params::new(8, 1, 1, None).expect("params"))
        .clock(store.clock.clone());
    let tokens =
        ApiTokens::with_shared_store(store.users.clone(), layer.admin()).clock(store.clock.clone());
    let form_passwords = passwords.clone();
    let form_login = move |session: Session, Form(form): Form<Credentials>| {
        let passwords = form_passwords.clone();
        async move {
            match passwords.verify(&form.user, &form.password).await {
                Ok(user) => {
                    session
                        .login_with(Login::new(user).method(method::PASSWORD))
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
    let create = move |CurrentUser(user): CurrentUser, Path(name): Path<String>| {
        let tokens = create_tokens.clone();
        async move {
            let new = tokens.create(&user.id, &name).await?;
            Ok::<_, keycard::Error>(new.secret)
        }
    };
    let revoke_tokens = tokens.clone();
    let revoke = move |CurrentUser(user): CurrentUser, Path(id): Path<i64>| {
        let tokens = revoke_tokens.clone();
        async move { Ok::<_, keycard::Error>(tokens.revoke(&user.id, id).await?.to_string()) }
    };
    let router = Router::new()
        .route(
            "/me",
            get(|CurrentUser(user): CurrentUser| async move {
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
            get(|user: Option<CurrentUser>| async move {
                user.map_or_else(|| "anonymous".to_owned(), |CurrentUser(u)| u.id)
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
        .route(
            "/sudo",
            post(|RequireRecentAuth(user): RequireRecentAuth| async move {
                format!("sudo {}", user.id)
            }),
        )
        .route("/confirm", {
            let passwords = passwords.clone();
            post(move |session: Session, Form(form): Form<Confirmation>| {
                let passwords = passwords.clone();
                async move {
                    match passwords.confirm(&session, &form.password).await {
                        Ok(()) => Ok("confirmed".into_response()),
                        Err(keycard::auth::AccountError::WrongPassword) => {
                            Ok(StatusCode::UNAUTHORIZED.into_response())
                        }
                        Err(error) => Err(keycard::Error::from(error)),
                    }
                }
            })
        })
        .route("/tokens/{name}", post(create))
        .route("/tokens/{id}/revoke", post(revoke))
        .route(
            "/set/{key}/{value}",
            post(
                |session: Session, Path((key, value)): Path<(String, String)>| async move {
                    session.insert(&key, value).await?;
                    Ok::<_, keycard::Error>("ok")
                },
            ),
        )
        .route(
            "/remove/{key}",
            post(|session: Session, Path(key): Path<String>| async move {
                let old = session.remove(&key).await?;
                Ok::<_, keycard::Error>(format!("{old:?}"))
            }),
        )
        .route(
            "/end-others",
            post(|session: Session| async move {
                Ok::<_, keycard::Error>(session.end_other_sessions().await?.to_string())
            }),
        )
        .route(
            "/guarded",
            post(
                |user: Option<CurrentUser>,
                 _: keycard::csrf::CsrfForm<std::collections::HashMap<String, String>>| async move {
                    user.map_or_else(|| "anonymous".to_owned(), |CurrentUser(u)| u.id)
                },
            ),
        )
        .route("/change-password", {
            let passwords = passwords.clone();
            post(move |session: Session, Form(form): Form<PasswordChange>| {
                let passwords = passwords.clone();
                async move { change_password(&passwords, &session, &form).await }
            })
        })
        .layer(
            if stored_sessions {
                AuthLayer::new()
                    .retriever(StoredSession(BasicAuth))
                    .retriever(StoredSession(BearerAuth))
                    .retriever(StoredSession(ApiKeyHeader))
            } else {
                AuthLayer::new()
                    .retriever(BasicAuth)
                    .retriever(BearerAuth)
                    .retriever(ApiKeyHeader)
            }
            .trusted_header(TrustedHeader::new(
                "x-remote-user",
                ["10.0.0.0/8".parse().expect("net")],
            ))
            .authenticator(passwords.clone())
            .authenticator(tokens.clone())
            .authenticator(keycard::auth::TrustedProxyUsers)
            .authenticator(ApiKeys)
            .on_authenticated(|_, info| {
                if info.method == method::TRUSTED_HEADER {
                    vec!["via-proxy".to_owned()]
                } else {
                    Vec::new()
                }
            })
            .permissions(AlicesRules)
            .login_url("/login"),
        )
        .layer(layer);
    AuthApp {
        router,
        passwords,
        tokens,
    }
}

/// `POST /change-password` with `current` and `new` in the form.
async fn change_password(
    passwords: &PasswordAuthenticator,
    session: &Session,
    form: &PasswordChange,
) -> StatusCode {
    match passwords
        .change_password(session, &form.current, &form.new)
        .await
    {
        Ok(()) => StatusCode::OK,
        Err(keycard::auth::AccountError::WrongPassword) => StatusCode::FORBIDDEN,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

#[derive(serde::Deserialize)]
struct PasswordChange {
    current: String,
    new: String,
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
            "key-of-frank" => Ok(keycard::auth::Authenticated::new("frank")),
            _ => Err(keycard::auth::AuthenticationError::Rejected),
        }
    }
}

fn basic(user: &str, password: &str) -> (String, String) {
    let value = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    ("authorization".to_owned(), value)
}

async fn form_login(client: &mut Client, user: &str, password: &str) -> Reply {
    // The body as written (a password may come percent-encoded).
    let body = format!("user={user}&password={password}");
    let request = Request::post("/form-login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request");
    client.send(request).await
}

/// The `WWW-Authenticate` challenges of a reply, in order.
fn challenges(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect()
}

async fn with_headers(client: &mut Client, uri: &str, headers: Vec<(String, String)>) -> Reply {
    client.set_headers(headers);
    let reply = client.get(uri).await;
    client.headers.clear();
    reply
}

pub async fn basic_auth_signs_in_an_api_session_once_per_session(store: TestStore) {
    let app = stored_auth_app(&store);
    create_user(&app, "alice", "secret").await;
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
    let app = stored_auth_app(&store);
    create_user(&app, "alice", "secret").await;
    let mut client = Client::new(app.router.clone());
    with_headers(&mut client, "/me", vec![basic("alice", "secret")]).await;
    let id = client.session_id().expect("id");
    let wrong = with_headers(&mut client, "/me", vec![basic("alice", "nope")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let challenges = challenges(&wrong);
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
    create_user(&app, "alice", "secret").await;
    let secret = token_secret(&app, "alice", "ci").await;
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
    let app = stored_auth_app(&store);
    create_user(&app, "alice", "a-secret").await;
    create_user(&app, "bob", "b-secret").await;
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
    create_user(&app, "alice", "secret").await;
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

/// An application that signs in through its own forms only (no Basic, no
/// bearer retriever) still answers a script's `fetch` with a `401` and a
/// challenge, as HTTP asks, but not one for a scheme it does not take:
/// `Basic` would make the browser open its own password dialog and send
/// the password, in every later request, to a server that ignores it.
pub async fn a_401_offers_no_scheme_the_application_does_not_take(store: TestStore) {
    let layer = store.layer();
    let form_login = |session: Session| async move {
        session.login("alice").await?;
        Ok::<_, keycard::Error>("signed in")
    };
    let router: Router = Router::new()
        .route(
            "/me",
            get(|CurrentUser(user): CurrentUser| async move { user.id }),
        )
        .route("/form-login", post(form_login))
        .layer(AuthLayer::new())
        .layer(layer);
    let fetch = Request::get("/me")
        .header(header::ACCEPT, "*/*")
        .header("sec-fetch-mode", "cors")
        .header("sec-fetch-dest", "empty")
        .body(Body::empty())
        .expect("request");
    let reply = send_raw(&router, fetch).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&reply),
        ["Cookie realm=\"keycard\""],
        "one challenge, no prompt"
    );
    let plain = send_raw(&router, Request::get("/me").body(Body::empty()).expect("r")).await;
    assert_eq!(plain.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        plain.headers.get(header::WWW_AUTHENTICATE),
        reply.headers.get(header::WWW_AUTHENTICATE)
    );
    // Signed in through the form, the same request is served.
    let mut client = Client::new(router.clone());
    assert_eq!(client.post("/form-login").await.status, StatusCode::OK);
    assert_eq!(client.get("/me").await.body, "alice");
}

pub async fn guards_check_method_and_permission(store: TestStore) {
    let app = auth_app(&store);
    create_user(&app, "alice", "a-secret").await;
    create_user(&app, "bob", "b-secret").await;
    let mut alice = Client::new(app.router.clone());
    form_login(&mut alice, "alice", "a-secret").await;
    assert_eq!(alice.post("/password").await.status, StatusCode::OK);
    assert_eq!(alice.get("/admin").await.body, "admin alice");
    let mut bob_api = Client::new(app.router.clone());
    bob_api.set_headers(vec![basic("bob", "b-secret")]);
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
    create_user(&app, "alice", "secret").await;
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
    create_user(&app, "alice", "secret").await;
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
    create_user(&app, "alice", "secret").await;
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
    let app = stored_auth_app(&store);
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

/// A new API token of `user`, named `name`: its secret.
async fn token_secret(app: &AuthApp, user: &str, name: &str) -> String {
    app.tokens.create(user, name).await.expect("token").secret
}

/// An account with this password.
async fn create_user(app: &AuthApp, user: &str, password: &str) {
    app.passwords
        .create_user(user, password)
        .await
        .expect("user");
}

/// The number of session rows of `user`.
async fn rows_of(store: &TestStore, user: &str) -> usize {
    store.store().list_for_user(user).await.expect("list").len()
}

fn bearer(secret: &str) -> (String, String) {
    ("authorization".to_owned(), format!("Bearer {secret}"))
}

fn cache_control(reply: &Reply) -> Option<&str> {
    reply
        .headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
}

pub async fn bearer_requests_without_a_cookie_jar_store_nothing(store: TestStore) {
    let app = auth_app(&store);
    let secret = token_secret(&app, "alice", "ci").await;
    store.calls().reset();
    for _ in 0..1000 {
        let mut client = Client::new(app.router.clone());
        let reply = with_headers(&mut client, "/me", vec![bearer(&secret)]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "alice bearer api []");
        assert!(reply.set_cookies().is_empty(), "no cookie");
        assert_eq!(cache_control(&reply), Some("no-store"), "private");
    }
    assert_eq!(store.calls().total(), 0, "no session query at all");
    assert_eq!(rows_of(&store, "alice").await, 0, "no session row");
    let listed = app.tokens.list("alice").await.expect("list");
    assert!(listed[0].last_used_at.is_some(), "last use still recorded");
}

pub async fn basic_requests_store_nothing_and_leave_the_cookie_session_alone(store: TestStore) {
    let app = auth_app(&store);
    for (user, password) in [("alice", "a-secret"), ("bob", "b-secret")] {
        app.passwords
            .create_user(user, password)
            .await
            .expect("user");
    }
    for _ in 0..5 {
        let mut client = Client::new(app.router.clone());
        let reply = with_headers(&mut client, "/me", vec![basic("alice", "a-secret")]).await;
        assert_eq!(reply.body, "alice basic api []");
        assert!(reply.set_cookies().is_empty());
    }
    assert_eq!(rows_of(&store, "alice").await, 0);
    // A browser session of alice; then bob's credentials with alice's
    // cookies: the handler sees bob, and alice's session is neither loaded,
    // changed nor ended.
    let mut browser = Client::new(app.router.clone());
    form_login(&mut browser, "alice", "a-secret").await;
    let alice_id = browser.session_id().expect("id");
    let before = store.row(alice_id).await.expect("row");
    store.calls().reset();
    let reply = with_headers(&mut browser, "/me", vec![basic("bob", "b-secret")]).await;
    assert_eq!(reply.body, "bob basic api []");
    assert!(reply.set_cookies().is_empty(), "alice's cookies stay");
    assert_eq!(store.calls().total(), 0, "alice's session not even loaded");
    assert_eq!(store.row(alice_id).await.expect("row"), before);
    assert_eq!(rows_of(&store, "bob").await, 0);
    // Wrong credentials with the cookie: refused, the cookie's session alone.
    let reply = with_headers(&mut browser, "/me", vec![basic("bob", "wrong")]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(store.row(alice_id).await.is_some());
    assert_eq!(browser.get("/maybe").await.body, "alice");
}

pub async fn a_request_only_session_refuses_writes_with_a_clear_error(store: TestStore) {
    let app = auth_app(&store);
    let secret = token_secret(&app, "alice", "ci").await;
    let mut client = Client::new(app.router.clone());
    client.set_headers(vec![bearer(&secret)]);
    let reply = client.post("/set/colour/blue").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(reply.body.contains("own credentials"), "{}", reply.body);
    assert!(reply.set_cookies().is_empty());
    assert_eq!(rows_of(&store, "alice").await, 0);
    // Removing from a session that holds no values removes nothing.
    let reply = client.post("/remove/flash").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "None")
    );
    // An API credential does not sign its user out of their browsers.
    let mut browser = Client::new(app.router.clone());
    create_user(&app, "alice", "pw").await;
    form_login(&mut browser, "alice", "pw").await;
    let reply = client.post("/end-others").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(browser.get("/maybe").await.body, "alice");
    client.headers.clear();
    // A password change from a request-only session ends every session of
    // the account (there is none to keep) and sets no cookie.
    create_user(&app, "bob", "old").await;
    let mut browser = Client::new(app.router.clone());
    form_login(&mut browser, "bob", "old").await;
    let mut api = Client::new(app.router.clone());
    api.set_headers(vec![basic("bob", "old")]);
    let reply = api
        .post_form("/change-password", &[("current", "old"), ("new", "newer")])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.set_cookies().is_empty());
    assert_eq!(browser.get("/maybe").await.body, "anonymous");
}

pub async fn the_opt_in_api_session_with_a_cookie_jar_is_one_row(store: TestStore) {
    let app = stored_auth_app(&store);
    let secret = token_secret(&app, "alice", "tablet").await;
    let mut tablet = Client::new(app.router.clone());
    for _ in 0..50 {
        let reply = with_headers(&mut tablet, "/me", vec![bearer(&secret)]).await;
        assert_eq!(reply.body, "alice bearer api []");
    }
    assert_eq!(rows_of(&store, "alice").await, 1, "one API session");
    let row = store
        .row(tablet.session_id().expect("id"))
        .await
        .expect("row");
    assert!(row.fields.is_api);
    let token_id = app.tokens.list("alice").await.expect("list")[0].id;
    assert_eq!(
        row.fields.credential.as_deref(),
        Some(format!("api-token:{token_id}").as_str()),
        "the token that opened it is recorded"
    );
}

pub async fn api_sessions_are_capped_per_user(store: TestStore) {
    let layer = store
        .layer()
        .api_sessions_per_user(keycard::ConcurrentSessions::MaxPerUser(3));
    let tokens =
        ApiTokens::with_shared_store(store.users.clone(), layer.admin()).clock(store.clock.clone());
    let router = Router::new()
        .route(
            "/me",
            get(|CurrentUser(user): CurrentUser| async move { user.id }),
        )
        .layer(
            AuthLayer::new()
                .retriever(StoredSession(BearerAuth))
                .authenticator(tokens.clone()),
        )
        .layer(layer);
    let secret = tokens.create("alice", "fleet").await.expect("token").secret;
    for _ in 0..10 {
        store.clock.advance(TimeDelta::seconds(1));
        let mut client = Client::new(router.clone());
        let reply = with_headers(&mut client, "/me", vec![bearer(&secret)]).await;
        assert_eq!(reply.body, "alice");
    }
    assert_eq!(rows_of(&store, "alice").await, 3, "bounded");
}

pub async fn revoking_a_token_ends_the_sessions_it_opened(store: TestStore) {
    let app = stored_auth_app(&store);
    let secret = token_secret(&app, "alice", "tablet").await;
    let other = token_secret(&app, "alice", "phone").await;
    let mut tablet = Client::new(app.router.clone());
    with_headers(&mut tablet, "/me", vec![bearer(&secret)]).await;
    let mut phone = Client::new(app.router.clone());
    with_headers(&mut phone, "/me", vec![bearer(&other)]).await;
    // From now on the tablet uses its cookie alone.
    assert_eq!(tablet.get("/maybe").await.body, "alice");
    let id = app.tokens.list("alice").await.expect("list")[0].id;
    assert!(app.tokens.revoke("alice", id).await.expect("revoke"));
    assert!(store.row(tablet.session_id().expect("id")).await.is_none());
    assert_eq!(tablet.get("/maybe").await.body, "anonymous", "revoked");
    assert_eq!(phone.get("/maybe").await.body, "alice", "the other token's");
    let reply = with_headers(&mut tablet, "/me", vec![bearer(&secret)]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

pub async fn disabling_an_account_ends_its_sessions(store: TestStore) {
    let app = stored_auth_app(&store);
    create_user(&app, "alice", "secret").await;
    let mut browser = Client::new(app.router.clone());
    form_login(&mut browser, "alice", "secret").await;
    let mut tablet = Client::new(app.router.clone());
    with_headers(&mut tablet, "/me", vec![basic("alice", "secret")]).await;
    assert_eq!(rows_of(&store, "alice").await, 2);
    assert!(
        app.passwords
            .set_disabled("alice", true)
            .await
            .expect("disable")
    );
    assert_eq!(rows_of(&store, "alice").await, 0);
    assert_eq!(browser.get("/maybe").await.body, "anonymous");
    assert_eq!(tablet.get("/maybe").await.body, "anonymous");
    let account = app
        .passwords
        .account("alice")
        .await
        .expect("account")
        .expect("exists");
    assert_eq!(account.credential_version, 1, "bumped");
}

pub async fn a_password_change_keeps_this_session_and_ends_the_others(store: TestStore) {
    let app = auth_app(&store);
    create_user(&app, "alice", "old").await;
    let mut here = Client::new(app.router.clone());
    form_login(&mut here, "alice", "old").await;
    let mut elsewhere = Client::new(app.router.clone());
    form_login(&mut elsewhere, "alice", "old").await;
    let here_id = here.session_id().expect("id");
    let old_token = here.token().expect("token");
    let captured = here.jar.clone();
    // A wrong current password changes nothing.
    let reply = here
        .post_form("/change-password", &[("current", "nope"), ("new", "newer")])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(elsewhere.get("/maybe").await.body, "alice");
    let reply = here
        .post_form("/change-password", &[("current", "old"), ("new", "newer")])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.set_cookies().len(), 2, "a fresh token");
    assert_eq!(here.session_id(), Some(here_id), "the same session");
    assert_ne!(here.token().expect("token"), old_token);
    assert_eq!(here.get("/maybe").await.body, "alice", "kept");
    assert_eq!(elsewhere.get("/maybe").await.body, "anonymous", "ended");
    let mut replay = Client::new(app.router.clone());
    replay.jar = captured;
    assert_eq!(
        replay.get("/maybe").await.body,
        "anonymous",
        "old token dead"
    );
    assert_eq!(rows_of(&store, "alice").await, 1);
    let mut login = Client::new(app.router.clone());
    assert_eq!(
        form_login(&mut login, "alice", "newer").await.status,
        StatusCode::OK
    );
    // Anonymous sessions cannot change anybody's password.
    let mut anonymous = Client::new(app.router.clone());
    let reply = anonymous
        .post_form("/change-password", &[("current", "newer"), ("new", "x")])
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

pub async fn an_administrators_password_reset_ends_every_session(store: TestStore) {
    let app = auth_app(&store);
    create_user(&app, "alice", "old").await;
    let mut one = Client::new(app.router.clone());
    form_login(&mut one, "alice", "old").await;
    let mut two = Client::new(app.router.clone());
    form_login(&mut two, "alice", "old").await;
    assert!(
        app.passwords
            .set_password("alice", "reset")
            .await
            .expect("set")
    );
    assert_eq!(one.get("/maybe").await.body, "anonymous");
    assert_eq!(two.get("/maybe").await.body, "anonymous");
    assert_eq!(rows_of(&store, "alice").await, 0);
    let account = app
        .passwords
        .account("alice")
        .await
        .expect("account")
        .expect("exists");
    assert_eq!(account.credential_version, 1);
}

pub async fn guarded_forms_exempt_bearer_requests_but_not_basic_ones(store: TestStore) {
    let app = auth_app(&store);
    create_user(&app, "alice", "secret").await;
    let secret = token_secret(&app, "alice", "ci").await;
    let mut api = Client::new(app.router.clone());
    api.set_headers(vec![bearer(&secret)]);
    let reply = api.post_form("/guarded", &[("x", "1")]).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a bearer token is never sent by a browser alone"
    );
    assert_eq!(reply.body, "alice");
    // Browsers resend cached Basic credentials on their own: a form forged
    // by an old browser that sends neither Sec-Fetch-Site nor Origin would
    // carry them, so Basic gets no exemption.
    api.set_headers(vec![basic("alice", "secret")]);
    let reply = api.post_form("/guarded", &[("x", "1")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.set_cookies().is_empty());
}

pub async fn guard_rejections_are_typed_and_replaceable(store: TestStore) {
    use keycard::auth::AuthRejection;
    let app = auth_app(&store);
    create_user(&app, "alice", "secret").await;
    // The application's own answers, by matching the rejection.
    let router = Router::new()
        .route(
            "/json-me",
            get(|user: Result<CurrentUser, AuthRejection>| async move {
                match user {
                    Ok(CurrentUser(user)) => (StatusCode::OK, user.id).into_response(),
                    Err(AuthRejection::SignInRequired(required)) => (
                        StatusCode::UNAUTHORIZED,
                        format!(
                            "{{\"browser\":{},\"next\":{:?}}}",
                            required.is_browser(),
                            required.next().unwrap_or("")
                        ),
                    )
                        .into_response(),
                    Err(other) => other.into_response(),
                }
            }),
        )
        .route(
            "/password-only",
            get(
                |guard: Result<RequireAuthMethod<method::Password>, AuthRejection>| async move {
                    match guard {
                        Ok(_) => "ok".to_owned(),
                        Err(AuthRejection::WrongMethod { required }) => format!("needs {required}"),
                        Err(other) => format!("{other}"),
                    }
                },
            ),
        )
        .route(
            "/identity",
            get(|session: Session| async move {
                let who = session.identity().await?;
                Ok::<_, keycard::Error>(serde_json::to_string(&who).expect("json"))
            }),
        )
        .layer(
            AuthLayer::new()
                .retriever(BasicAuth)
                .authenticator(app.passwords.clone()),
        )
        .layer(store.layer());
    let mut browser = Client::new(router.clone());
    browser.set_headers(vec![("accept".into(), "text/html".into())]);
    let reply = browser.get("/json-me?x=1").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, "{\"browser\":true,\"next\":\"/json-me?x=1\"}");
    browser.headers.clear();
    let reply = browser.get("/json-me").await;
    assert_eq!(reply.body, "{\"browser\":false,\"next\":\"/json-me\"}");
    assert_eq!(browser.get("/identity").await.body, "null");
    // Signed in by Basic: the method guard's rejection is matched too.
    browser.set_headers(vec![basic("alice", "secret")]);
    assert_eq!(browser.get("/json-me").await.body, "alice");
    assert_eq!(browser.get("/password-only").await.body, "needs password");
    let identity: serde_json::Value =
        serde_json::from_str(&browser.get("/identity").await.body).expect("json");
    assert_eq!(identity["user_id"], "alice");
    assert_eq!(identity["auth_method"], "basic");
    assert_eq!(identity["is_api"], true);
    assert_eq!(identity["request_only"], true);
    // keycard's own answer is unchanged.
    let mut api = Client::new(app.router.clone());
    assert_eq!(api.get("/me").await.status, StatusCode::UNAUTHORIZED);
}

/// Sudo mode: a fresh sign-in passes the recent-sign-in guard; ten
/// minutes later a browser is sent to confirm (same-site `next`), an API
/// client gets `403`; a wrong password is refused and counted; the right
/// one rotates the token (the old cookie is dead) and opens the guard
/// again; anonymous requests are asked to sign in.
pub async fn sudo_mode_asks_old_sign_ins_to_confirm_and_rotates_on_confirmation(store: TestStore) {
    let app = auth_app(&store);
    create_user(&app, "alice", "secret").await;
    let mut anonymous = Client::new(app.router.clone());
    assert_eq!(
        anonymous.post("/sudo").await.status,
        StatusCode::UNAUTHORIZED
    );

    let mut browser = Client::new(app.router.clone());
    form_login(&mut browser, "alice", "secret").await;
    assert_eq!(browser.post("/sudo").await.body, "sudo alice");
    store.clock.advance(TimeDelta::minutes(9));
    assert_eq!(
        browser.post("/sudo").await.body,
        "sudo alice",
        "within ten minutes"
    );
    store.clock.advance(TimeDelta::minutes(2));
    let api_like = browser.post("/sudo").await;
    assert_eq!(api_like.status, StatusCode::FORBIDDEN);
    assert_eq!(api_like.headers["cache-control"], "no-store");
    browser.set_headers(vec![("accept".into(), "text/html".into())]);
    let page = browser.post("/sudo?tab=2").await;
    browser.headers.clear();
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers["location"], "/confirm?next=/sudo%3Ftab%3D2");
    assert!(page.set_cookies().is_empty(), "refusing changes nothing");

    let before = browser.token().expect("token");
    let wrong = browser
        .post_form("/confirm", &[("password", "guess")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        browser.token().as_ref(),
        Some(&before),
        "a wrong password changes nothing"
    );
    let user = store
        .users
        .find_user("alice")
        .await
        .expect("find")
        .expect("user");
    assert_eq!(
        user.failures, 1,
        "a wrong confirmation counts toward the lockout"
    );
    assert_eq!(browser.post("/sudo").await.status, StatusCode::FORBIDDEN);

    let mut stale = browser.clone();
    let confirmed = browser
        .post_form("/confirm", &[("password", "secret")])
        .await;
    assert_eq!(confirmed.body, "confirmed");
    assert_ne!(
        browser.token().as_ref(),
        Some(&before),
        "confirmation rotates the token"
    );
    assert_eq!(browser.post("/sudo").await.body, "sudo alice");
    assert_eq!(
        stale.get("/me").await.status,
        StatusCode::UNAUTHORIZED,
        "the old token died"
    );
    let user = store
        .users
        .find_user("alice")
        .await
        .expect("find")
        .expect("user");
    assert_eq!(user.failures, 0, "a right password clears the count");
}

/// A request signed in by its own credentials (HTTP Basic, a bearer token)
/// never counts as recent, even in the second it proved them, and cannot
/// be confirmed: it has no session to mark.
pub async fn requests_signed_in_for_themselves_are_never_recent(store: TestStore) {
    let app = auth_app(&store);
    create_user(&app, "alice", "secret").await;
    let secret = app
        .tokens
        .create("alice", "cli")
        .await
        .expect("token")
        .secret;
    let mut client = Client::new(app.router.clone());
    client.set_headers(vec![bearer(&secret)]);
    assert_eq!(client.get("/me").await.status, StatusCode::OK);
    assert_eq!(client.post("/sudo").await.status, StatusCode::FORBIDDEN);
    client.set_headers(vec![basic("alice", "secret")]);
    assert_eq!(client.post("/sudo").await.status, StatusCode::FORBIDDEN);
    let confirm = client
        .post_form("/confirm", &[("password", "secret")])
        .await;
    assert_eq!(confirm.status, StatusCode::BAD_REQUEST, "{}", confirm.body);
    assert!(client.token().is_none(), "no session was stored");
}

/// A router that redeems sign-in links, and says who is signed in.
fn link_app(store: &TestStore, links: &keycard::auth::OneTimeTokens, tokens: &ApiTokens) -> Router {
    let links = links.clone();
    Router::new()
        .route(
            "/link/{secret}",
            post(move |session: Session, Path(secret): Path<String>| {
                let links = links.clone();
                async move {
                    let signed_in = links.sign_in(&session, &secret).await?.is_some();
                    Ok::<_, keycard::Error>(if signed_in { "in" } else { "no" })
                }
            }),
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
        .layer(
            AuthLayer::new()
                .retriever(BearerAuth)
                .authenticator(tokens.clone()),
        )
        .layer(store.layer())
}

/// One-time tokens: a sign-in link signs in once (method `link`, fresh
/// cookies); an unknown account gets no secret but the same work; a reset
/// token can be looked at without being used, then is used once; expired,
/// wrong-purpose, garbage and post-password-change tokens are refused
/// cleanly, and nothing signs in half-way.
pub async fn one_time_tokens_work_once_and_die_with_the_password(store: TestStore) {
    use keycard::auth::OneTimeTokens;
    use keycard::auth::one_time::{PASSWORD_RESET, SIGN_IN};
    use std::time::Duration;

    let app = auth_app(&store);
    create_user(&app, "alice", "secret").await;
    let links = OneTimeTokens::with_shared_store(store.users.clone(), app.passwords.clone())
        .clock(store.clock.clone());
    let router = link_app(&store, &links, &app.tokens);
    let minutes = |n: u64| Duration::from_secs(60 * n);

    assert_eq!(
        links
            .mint("nobody", SIGN_IN, minutes(15))
            .await
            .expect("mint"),
        None
    );
    let secret = links
        .mint("Alice", SIGN_IN, minutes(15))
        .await
        .expect("mint")
        .expect("a secret for a real account");
    assert_eq!(secret.len(), 43);
    let mut first = Client::new(router.clone());
    let reply = first.post(&format!("/link/{secret}")).await;
    assert_eq!(reply.body, "in");
    assert_eq!(reply.set_cookies().len(), 2, "a fresh session");
    assert_eq!(first.get("/who").await.body, "alice link");
    let mut second = Client::new(router.clone());
    assert_eq!(
        second.post(&format!("/link/{secret}")).await.body,
        "no",
        "used once"
    );
    assert_eq!(second.get("/who").await.body, "nobody");

    // A request signed in by its own bearer token cannot use a link, and
    // the link survives the attempt.
    let kept = links
        .mint("alice", SIGN_IN, minutes(15))
        .await
        .expect("mint")
        .expect("secret");
    let api_secret = app
        .tokens
        .create("alice", "cli")
        .await
        .expect("token")
        .secret;
    let mut api = Client::new(router.clone());
    api.set_headers(vec![bearer(&api_secret)]);
    let refused = api.post(&format!("/link/{kept}")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    let mut browser = Client::new(router.clone());
    assert_eq!(
        browser.post(&format!("/link/{kept}")).await.body,
        "in",
        "still good"
    );

    // A reset token: looked at as often as needed, used once.
    let reset = links
        .mint("alice", PASSWORD_RESET, minutes(15))
        .await
        .expect("mint")
        .expect("secret");
    assert_eq!(
        links.peek(&reset, SIGN_IN).await.expect("peek"),
        None,
        "another purpose"
    );
    assert_eq!(
        Client::new(router.clone())
            .post(&format!("/link/{reset}"))
            .await
            .body,
        "no"
    );
    for _ in 0..2 {
        let who = links.peek(&reset, PASSWORD_RESET).await.expect("peek");
        assert_eq!(who.as_deref(), Some("alice"));
    }
    let used = links.redeem(&reset, PASSWORD_RESET).await.expect("redeem");
    assert_eq!(used.as_deref(), Some("alice"));
    assert_eq!(
        links.redeem(&reset, PASSWORD_RESET).await.expect("redeem"),
        None
    );

    // Expired: refused, and deleted by the next mint's clean-up.
    let short = links
        .mint("alice", SIGN_IN, minutes(1))
        .await
        .expect("mint")
        .expect("secret");
    store.clock.advance(TimeDelta::minutes(2));
    let cleared = store
        .users
        .delete_expired_one_time_tokens(keycard::clock::Clock::now(&store.clock))
        .await
        .expect("clear");
    assert!(cleared >= 1, "the expired link is deleted");
    assert_eq!(
        Client::new(router.clone())
            .post(&format!("/link/{short}"))
            .await
            .body,
        "no"
    );

    // A password change kills every outstanding link.
    let outstanding = links
        .mint("alice", SIGN_IN, minutes(15))
        .await
        .expect("mint")
        .expect("secret");
    app.passwords
        .set_password("alice", "changed")
        .await
        .expect("set");
    let mut late = Client::new(router.clone());
    assert_eq!(late.post(&format!("/link/{outstanding}")).await.body, "no");
    assert_eq!(late.get("/who").await.body, "nobody");

    // Garbage never reaches the store as a token, and is refused cleanly.
    for bad in ["x", "not-a-token", &"A".repeat(43), &"a".repeat(10_000)] {
        assert_eq!(
            links.redeem(bad, SIGN_IN).await.expect("no error"),
            None,
            "{bad:.20}"
        );
    }
    assert!(
        links.mint("alice", "", minutes(1)).await.is_err(),
        "a purpose is required"
    );
}

/// Eight concurrent redemptions of one sign-in link: exactly one wins.
pub async fn concurrent_redemptions_of_one_link_sign_in_exactly_one(store: TestStore) {
    use keycard::auth::OneTimeTokens;
    use keycard::auth::one_time::SIGN_IN;

    let app = auth_app(&store);
    create_user(&app, "alice", "secret").await;
    let links = OneTimeTokens::with_shared_store(store.users.clone(), app.passwords.clone())
        .clock(store.clock.clone());
    let secret = links
        .mint("alice", SIGN_IN, std::time::Duration::from_secs(900))
        .await
        .expect("mint")
        .expect("secret");
    let router = link_app(&store, &links, &app.tokens);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let router = router.clone();
            let secret = secret.clone();
            tokio::spawn(async move {
                Client::new(router)
                    .post(&format!("/link/{secret}"))
                    .await
                    .body
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        if task.await.expect("task") == "in" {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}
