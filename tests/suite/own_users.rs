//! The application's own user type: a `UserLoader` registered on
//! `AuthLayer`, and `SignedIn<U>` in handlers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Form, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keycard::auth::{
    ApiTokens, AuthLayer, AuthRejection, BasicAuth, BearerAuth, PasswordAuthenticator, SignedIn,
    UserLoader, method,
};
use keycard::{BoxError, Login, Session};

use crate::common::{Client, Reply, TestStore};

/// The application's own user.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    name: String,
    email: String,
}

/// A type no loader loads.
#[derive(Clone, Debug)]
struct Stranger;

/// The application's users, by keycard user id, and what the loader was
/// asked.
#[derive(Debug, Default)]
struct Directory {
    members: Mutex<HashMap<String, Member>>,
    loads: AtomicUsize,
    fail: AtomicBool,
}

impl Directory {
    fn add(&self, id: &str, name: &str) {
        let member = Member {
            name: name.to_owned(),
            email: format!("{id}@example.com"),
        };
        self.members
            .lock()
            .expect("lock")
            .insert(id.to_owned(), member);
    }

    fn remove(&self, id: &str) {
        self.members.lock().expect("lock").remove(id);
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug)]
struct Members(Arc<Directory>);

#[async_trait]
impl UserLoader for Members {
    type User = Member;

    async fn load_user(&self, id: &str) -> Result<Option<Member>, BoxError> {
        self.0.loads.fetch_add(1, Ordering::SeqCst);
        if self.0.fail.load(Ordering::SeqCst) {
            return Err("the members database at 10.1.2.3 is away".into());
        }
        Ok(self.0.members.lock().expect("lock").get(id).cloned())
    }
}

#[derive(serde::Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

struct OwnApp {
    router: Router,
    passwords: PasswordAuthenticator,
    tokens: ApiTokens,
    directory: Arc<Directory>,
}

/// What a middleware in front of `/twice` needs: a member.
async fn members_only(SignedIn(_): SignedIn<Member>, request: Request, next: Next) -> Response {
    next.run(request).await
}

fn routes(passwords: &PasswordAuthenticator) -> Router {
    let form_passwords = passwords.clone();
    let form_login = move |session: Session, Form(form): Form<Credentials>| {
        let passwords = form_passwords.clone();
        async move {
            let Ok(user) = passwords.verify(&form.user, &form.password).await else {
                return Ok(StatusCode::UNAUTHORIZED.into_response());
            };
            session
                .login_with(Login::new(user).method(method::PASSWORD))
                .await?;
            Ok::<_, keycard::Error>("signed in".into_response())
        }
    };
    Router::new()
        .route("/form-login", post(form_login))
        .route(
            "/profile",
            get(|SignedIn(member): SignedIn<Member>| async move {
                format!("{} <{}>", member.name, member.email)
            }),
        )
        .route(
            "/maybe",
            get(|member: Option<SignedIn<Member>>| async move {
                member.map_or_else(|| "anonymous".to_owned(), |SignedIn(m)| m.name)
            }),
        )
        .route(
            "/twice",
            get(
                |SignedIn(first): SignedIn<Member>, again: Option<SignedIn<Member>>| async move {
                    let again = again.map(|SignedIn(m)| m.name).unwrap_or_default();
                    format!("{} {again}", first.name)
                },
            )
            .layer(middleware::from_fn(members_only)),
        )
        .route("/stranger", get(|_: SignedIn<Stranger>| async { "never" }))
        .route("/typed", get(typed))
}

/// The rejection, matched as an application would to answer its own way.
async fn typed(member: Result<SignedIn<Member>, AuthRejection>) -> String {
    match member {
        Ok(SignedIn(member)) => member.name,
        Err(AuthRejection::SignInRequired(required)) => {
            format!("sign in, then {}", required.next().unwrap_or_default())
        }
        Err(AuthRejection::UserUnavailable) => "unavailable".to_owned(),
        Err(AuthRejection::MissingUserLoader(missing)) => {
            format!("no loader of {}", missing.wanted())
        }
        Err(other) => format!("other: {other}"),
    }
}

/// The application with its loader registered (`users`), or without.
fn own_app_with(store: &TestStore, users: bool) -> OwnApp {
    let layer = store.layer();
    let passwords = PasswordAuthenticator::with_shared_store(store.users.clone(), layer.admin())
        .argon2_params(argon2::Params::new(8, 1, 1, None).expect("params"))
        .clock(store.clock.clone());
    let tokens =
        ApiTokens::with_shared_store(store.users.clone(), layer.admin()).clock(store.clock.clone());
    let directory = Arc::new(Directory::default());
    let auth = AuthLayer::new()
        .retriever(BasicAuth)
        .retriever(BearerAuth)
        .authenticator(passwords.clone())
        .authenticator(tokens.clone());
    let auth = if users {
        auth.users(Members(directory.clone()))
    } else {
        auth
    };
    let router = routes(&passwords).layer(auth).layer(layer);
    OwnApp {
        router,
        passwords,
        tokens,
        directory,
    }
}

fn own_app(store: &TestStore) -> OwnApp {
    own_app_with(store, true)
}

/// An account `name` with password `secret`, and its member row under the
/// user id keycard gives it (the canonical name).
async fn member(app: &OwnApp, name: &str, full_name: &str) -> String {
    let id = app
        .passwords
        .create_user(name, "secret")
        .await
        .expect("account");
    app.directory.add(&id, full_name);
    id
}

async fn sign_in(client: &mut Client, name: &str) {
    let reply = client
        .post_form("/form-login", &[("user", name), ("password", "secret")])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

/// A browser's GET: it asks for HTML.
async fn browse(client: &mut Client, uri: &str) -> Reply {
    client.set_headers(vec![("accept".to_owned(), "text/html".to_owned())]);
    let reply = client.get(uri).await;
    client.headers.clear();
    reply
}

async fn with_header(client: &mut Client, uri: &str, name: &str, value: String) -> Reply {
    client.set_headers(vec![(name.to_owned(), value)]);
    let reply = client.get(uri).await;
    client.headers.clear();
    reply
}

fn location(reply: &Reply) -> Option<&str> {
    reply
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
}

pub async fn the_signed_in_user_is_the_applications_own(store: TestStore) {
    let app = own_app(&store);
    let id = member(&app, "Ada", "Ada Lovelace").await;
    assert_eq!(id, "ada", "the loader is asked for the canonical name");
    let mut client = Client::new(app.router.clone());
    sign_in(&mut client, "ADA").await;
    let reply = client.get("/profile").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "Ada Lovelace <ada@example.com>");
    assert_eq!(client.get("/maybe").await.body, "Ada Lovelace");
}

pub async fn anonymous_requests_for_the_applications_user_are_refused_as_by_current_user(
    store: TestStore,
) {
    let app = own_app(&store);
    let mut client = Client::new(app.router.clone());
    let reply = browse(&mut client, "/profile?tab=keys").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&reply), Some("/login?next=/profile%3Ftab%3Dkeys"));
    let reply = client.get("/profile").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
    let reply = client.get("/maybe").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "anonymous")
    );
    assert_eq!(client.get("/typed").await.body, "sign in, then /typed");
    assert_eq!(app.directory.loads(), 0, "nobody to load");
    assert_eq!(store.calls().total(), 0, "and no session either");
}

pub async fn the_applications_user_is_loaded_once_per_request(store: TestStore) {
    let app = own_app(&store);
    member(&app, "ada", "Ada Lovelace").await;
    let mut client = Client::new(app.router.clone());
    sign_in(&mut client, "ada").await;
    assert_eq!(app.directory.loads(), 0, "signing in loads nobody");
    // A middleware and two extractors of the handler: one load.
    let reply = client.get("/twice").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "Ada Lovelace Ada Lovelace");
    assert_eq!(app.directory.loads(), 1);
    // The next request loads afresh, and sees a change.
    app.directory.add("ada", "Ada King");
    assert_eq!(client.get("/twice").await.body, "Ada King Ada King");
    assert_eq!(app.directory.loads(), 2);
}

pub async fn a_deleted_users_session_is_signed_out_and_anonymous(store: TestStore) {
    let app = own_app(&store);
    member(&app, "ada", "Ada Lovelace").await;
    member(&app, "bob", "Bob").await;
    for (name, uri) in [("ada", "/profile"), ("bob", "/maybe")] {
        let mut client = Client::new(app.router.clone());
        sign_in(&mut client, name).await;
        let id = client.session_id().expect("session");
        assert!(store.row(id).await.is_some());
        app.directory.remove(name);
        let loads = app.directory.loads();
        let reply = browse(&mut client, uri).await;
        if uri == "/profile" {
            assert_eq!(reply.status, StatusCode::SEE_OTHER, "{name}");
            assert_eq!(location(&reply), Some("/login?next=/profile"));
        } else {
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (StatusCode::OK, "anonymous")
            );
        }
        assert_eq!(app.directory.loads(), loads + 1);
        assert!(
            reply.set_cookies().iter().all(|c| c.contains("Max-Age=0")),
            "cookies expired: {:?}",
            reply.set_cookies()
        );
        assert!(client.jar.is_empty(), "{name}: {:?}", client.jar);
        assert!(
            store.row(id).await.is_none(),
            "{name}'s session row is gone"
        );
        assert_eq!(client.get("/maybe").await.body, "anonymous");
        assert_eq!(app.directory.loads(), loads + 1, "nobody left to load");
    }
}

pub async fn a_failing_user_loader_is_503_and_leaves_the_session_alone(store: TestStore) {
    let app = own_app(&store);
    member(&app, "ada", "Ada Lovelace").await;
    let mut client = Client::new(app.router.clone());
    sign_in(&mut client, "ada").await;
    let id = client.session_id().expect("session");
    let before = store.row(id).await.expect("row");
    app.directory.fail.store(true, Ordering::SeqCst);
    for uri in ["/profile", "/maybe", "/twice"] {
        let reply = client.get(uri).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(reply.headers.contains_key(header::RETRY_AFTER));
        assert!(
            !reply.body.contains("10.1.2.3"),
            "no detail: {}",
            reply.body
        );
        assert!(reply.set_cookies().is_empty(), "{uri}: the cookies stand");
    }
    assert_eq!(client.get("/typed").await.body, "unavailable");
    let after = store.row(id).await.expect("the session row stands");
    assert_eq!(after.fields.token_hash, before.fields.token_hash);
    assert_eq!(after.fields.user_id.as_deref(), Some("ada"));
    app.directory.fail.store(false, Ordering::SeqCst);
    assert_eq!(client.get("/maybe").await.body, "Ada Lovelace");
}

pub async fn a_missing_or_mismatched_user_loader_is_a_clear_500(store: TestStore) {
    // No loader registered on the `AuthLayer`, or no `AuthLayer` at all.
    let unregistered = own_app_with(&store, false);
    member(&unregistered, "ada", "Ada Lovelace").await;
    let sessions_only = routes(&unregistered.passwords).layer(store.layer());
    for router in [unregistered.router.clone(), sessions_only] {
        let mut client = Client::new(router);
        for signed_in in [false, true] {
            if signed_in {
                sign_in(&mut client, "ada").await;
            }
            let reply = client.get("/profile").await;
            assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(
                reply.body.contains("no `UserLoader` is registered")
                    && reply.body.contains("Member")
                    && reply.body.contains(".users("),
                "names the fix: {}",
                reply.body
            );
            let typed = client.get("/typed").await.body;
            assert!(
                typed.starts_with("no loader of ") && typed.ends_with("::Member"),
                "{typed}"
            );
        }
    }
    // A loader for another type.
    let app = own_app(&store);
    let mut client = Client::new(app.router.clone());
    let reply = client.get("/stranger").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.body.contains("SignedIn<")
            && reply.body.contains("Stranger")
            && reply.body.contains("registered loads `")
            && reply.body.contains("extract `SignedIn<")
            && reply.body.contains("Member`"),
        "names both types: {}",
        reply.body
    );
    assert_eq!(app.directory.loads(), 0);
}

pub async fn request_only_sign_ins_yield_the_applications_user(store: TestStore) {
    let app = own_app(&store);
    member(&app, "ada", "Ada Lovelace").await;
    let secret = app.tokens.create("ada", "ci").await.expect("token").secret;
    let basic = format!("Basic {}", STANDARD.encode("Ada:secret"));
    let bearer = format!("Bearer {secret}");
    let mut client = Client::new(app.router.clone());
    for credentials in [&basic, &bearer] {
        let reply = with_header(
            &mut client,
            "/profile",
            "authorization",
            credentials.clone(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{credentials}");
        assert_eq!(reply.body, "Ada Lovelace <ada@example.com>");
        assert!(reply.set_cookies().is_empty(), "request-only: no cookie");
        let reply = with_header(&mut client, "/twice", "authorization", credentials.clone()).await;
        assert_eq!(reply.body, "Ada Lovelace Ada Lovelace");
    }
    assert_eq!(app.directory.loads(), 4, "once per request");
    let rows = store.store().list_for_user("ada").await.expect("list");
    assert!(rows.is_empty(), "no session row: {rows:?}");
    // Credentials still good, member gone: anonymous, nothing to sign out.
    app.directory.remove("ada");
    for credentials in [&basic, &bearer] {
        let reply = with_header(
            &mut client,
            "/profile",
            "authorization",
            credentials.clone(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{credentials}");
        let reply = with_header(&mut client, "/maybe", "authorization", credentials.clone()).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "anonymous")
        );
        assert!(reply.set_cookies().is_empty());
    }
}
