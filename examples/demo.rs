//! # keycard demo
//!
//! A small but complete web app showing what keycard does: server-side
//! sessions stored in an SQLite file, handed to axum handlers as a
//! [`keycard::Session`], password sign-in with [`PasswordAuthenticator`],
//! and API clients signing in with HTTP Basic or bearer [`ApiTokens`]
//! through [`AuthLayer`].
//!
//! ## Demo users
//!
//! On first start the demo creates two accounts, `ada` and `grace`, each
//! with a random password, and prints the credentials **once**:
//!
//! ```text
//! keycard demo: created user ada, password Xq3…  (shown once: note it now)
//! ```
//!
//! Later starts on the same database say the users exist already. Lost the
//! passwords? Start on a fresh database (`--db other.db`, or delete
//! `keycard-demo.db`).
//!
//! ## Pages
//!
//! The home page shows your session as the server sees it (the signed-in
//! user or "anonymous", the session's id, when it was created and last used,
//! and a visit counter) and offers three forms:
//!
//! * **count a visit** (`POST /visit`): bumps the counter with
//!   [`Session::update`], an atomic read-modify-write;
//! * **sign in** (`POST /login`, user name and password): checked by
//!   [`PasswordAuthenticator::verify`]; on success
//!   [`Session::login_with`] gives the session a fresh token and new
//!   cookies, and records how the user signed in
//!   ([`methods::PASSWORD`]). Unknown user, wrong password, locked account:
//!   one and the same `401` page, so the page does not tell which accounts
//!   exist (ten failures lock an account for ten minutes);
//! * **sign out** (`POST /logout`): [`Session::logout`], which deletes the
//!   session row and expires the cookies.
//!
//! Signed in, **your sessions** (`GET /sessions`) lists every active session
//! of the user, on every browser and device, from
//! [`Session::user_sessions`]: when it was created and last used, the
//! address it came from, whether it is an API client's, how the user signed
//! in, and which one is this device. From there you can
//!
//! * **sign out that device** (`POST /sessions/{id}/end`):
//!   [`Session::end_user_session`], which ends one session of yours at once;
//! * **sign out everywhere else** (`POST /sessions/end-others`):
//!   [`Session::end_other_sessions`], say after a password change;
//! * **sign out this device**: the same `POST /logout` as above.
//!
//! Signed in, **API tokens** (`GET /tokens`) lists your bearer tokens (name,
//! when created, when last used; never the secret, which is not kept),
//! creates one (`POST /tokens`: its secret is shown on the page that
//! answers, once) and revokes them (`POST /tokens/{id}/revoke`). A session
//! signed in with a token cannot create or revoke tokens.
//!
//! ## API
//!
//! * `GET /api/whoami`: `USER METHOD api|human` as plain text, or `401` with
//!   `WWW-Authenticate: Basic` and `Bearer` challenges;
//! * `POST /api/visit`: counts a visit in the session and answers the new
//!   count.
//!
//! Each request may bring `Authorization: Basic …` (a demo user's name and
//! password) or `Authorization: Bearer kc_…` (an API token): it is signed in
//! on its session as an API client. A cookie of somebody else's session is
//! ended and a fresh session started, within the same request:
//!
//! ```text
//! curl -i -u ada:PASSWORD http://127.0.0.1:3000/api/whoami
//! curl -i -H 'Authorization: Bearer kc_…' http://127.0.0.1:3000/api/whoami
//! cargo run --example api_client -- --url http://127.0.0.1:3000 --user ada --password PASSWORD
//! ```
//!
//! An anonymous visitor costs nothing: the session is only stored (and a
//! cookie only sent) once it holds a value or a user.
//!
//! ## Running it
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! then open <http://127.0.0.1:3000>. Options:
//!
//! ```text
//! cargo run --example demo -- --addr 127.0.0.1:8080 --db /tmp/sessions.db
//! RUST_LOG=keycard=debug cargo run --example demo
//! ```
//!
//! Standard output carries the credentials and the address (`listening on
//! http://…`, also with `--addr 127.0.0.1:0`); logs go to standard error.
//! Sessions, accounts and tokens live in `keycard-demo.db` (in the current
//! directory) unless `--db` says otherwise; the tables are created on first
//! start. The `admin` example counts, lists, ends and purges sessions from
//! the command line: `cargo run --example admin -- list NAME`.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use keycard::auth::{
    AccountError, ApiTokens, AuthLayer, AuthUser, AuthenticationError, BasicAuth, BearerAuth,
    NewToken, PasswordAuthenticator, RequireUser, methods,
};
use keycard::store::ApiTokenRecord;
use keycard::token::SessionToken;
use keycard::{Login, Session, SessionId, SessionInfo, SessionLayer, SqliteStore};
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

const DEFAULT_ADDR: &str = "127.0.0.1:3000";
const DEFAULT_DB: &str = "keycard-demo.db";

/// The accounts created on first start, each with a random password.
const DEMO_USERS: [&str; 2] = ["ada", "grace"];

/// How many characters of a fresh random token make a demo password (16
/// characters of base64url: 96 bits).
const PASSWORD_CHARS: usize = 16;

const USAGE: &str = "\
usage: cargo run --example demo -- [--addr HOST:PORT] [--db PATH]

  --addr HOST:PORT  address to listen on (default: 127.0.0.1:3000; port 0: any free port)
  --db PATH         SQLite file holding sessions, accounts and tokens (default: keycard-demo.db)
  -h, --help        print this message";

/// What the command line asked for.
struct Options {
    addr: SocketAddr,
    db: String,
}

/// Why the command line was refused, or a request for help.
enum ArgsError {
    Help,
    Bad(String),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, ArgsError> {
    let mut addr: Option<SocketAddr> = None;
    let mut db: Option<String> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--addr" => {
                let value = args
                    .next()
                    .ok_or_else(|| ArgsError::Bad("--addr needs a value (HOST:PORT)".into()))?;
                let parsed = value.parse().map_err(|_| {
                    ArgsError::Bad(format!(
                        "--addr: {value:?} is not an address like 127.0.0.1:3000"
                    ))
                })?;
                addr = Some(parsed);
            }
            "--db" => {
                let value = args
                    .next()
                    .ok_or_else(|| ArgsError::Bad("--db needs a value (PATH)".into()))?;
                if value.is_empty() {
                    return Err(ArgsError::Bad("--db: the path is empty".into()));
                }
                db = Some(value);
            }
            other => return Err(ArgsError::Bad(format!("unknown argument {other:?}"))),
        }
    }
    let addr = match addr {
        Some(addr) => addr,
        None => DEFAULT_ADDR
            .parse()
            .map_err(|_| ArgsError::Bad("bad default address".into()))?,
    };
    Ok(Options {
        addr,
        db: db.unwrap_or_else(|| DEFAULT_DB.to_owned()),
    })
}

/// What the handlers share: the accounts and the API tokens.
#[derive(Clone)]
struct App {
    passwords: PasswordAuthenticator,
    tokens: ApiTokens,
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(ArgsError::Bad(message)) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };

    // `RUST_LOG=keycard=debug` shows keycard's own logs; default: `info`.
    // Standard output carries the credentials and the address, which
    // scripts and tests read.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let store = SqliteStore::connect(&format!("sqlite://{}", options.db)).await?;
    store.migrate().await?;

    let passwords = PasswordAuthenticator::new(store.clone());
    let tokens = ApiTokens::new(store.clone());
    println!(
        "keycard demo: sessions, accounts and API tokens in {}",
        options.db
    );
    create_demo_users(&passwords).await?;

    // This demo is served over plain http on localhost, where browsers
    // refuse `Secure` and `__Host-` cookies; `insecure_dev_cookies` drops
    // both. Never use it behind a real domain: serve HTTPS and leave the
    // secure defaults on.
    let sessions = SessionLayer::new(store).insecure_dev_cookies();

    // API clients send HTTP Basic or a bearer token with each request; the
    // auth layer checks them and signs the request's session in. It goes
    // inside the session layer (added before it).
    let auth = AuthLayer::new()
        .retriever(BasicAuth)
        .retriever(BearerAuth)
        .authenticator(passwords.clone())
        .authenticator(tokens.clone())
        .login_url("/");

    // The forms carry no CSRF token: the session cookies are `SameSite=Lax`,
    // so browsers do not send them with cross-site POSTs.
    let app = Router::new()
        .route("/", get(home))
        .route("/visit", post(visit))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions_page))
        .route("/sessions/end-others", post(end_others))
        .route("/sessions/{id}/end", post(end_one))
        .route("/tokens", get(tokens_page).post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/api/whoami", get(api_whoami))
        .route("/api/visit", post(api_visit))
        .with_state(App { passwords, tokens })
        .layer(auth)
        .layer(sessions);

    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    let local = listener.local_addr()?;
    println!(
        "keycard demo: cookies are in development mode (no Secure flag, no __Host- prefix): \
         for plain http on localhost only"
    );
    println!("keycard demo: listening on http://{local}");

    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        // If Ctrl-C cannot be watched, run until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Creates the demo users that do not exist yet, each with a random
/// password, printed once: only their hashes are stored.
async fn create_demo_users(
    passwords: &PasswordAuthenticator,
) -> Result<(), Box<dyn std::error::Error>> {
    for name in DEMO_USERS {
        if passwords.account(name).await?.is_some() {
            println!(
                "keycard demo: user {name} exists already (its password was printed when it was \
                 created; for new ones, start with another --db)"
            );
            continue;
        }
        let password: String = SessionToken::generate()?
            .expose()
            .chars()
            .take(PASSWORD_CHARS)
            .collect();
        match passwords.create_user(name, &password).await {
            Ok(user_id) => println!(
                "keycard demo: created user {user_id}, password {password} (shown once: note it now)"
            ),
            // Another demo on the same database was quicker.
            Err(AccountError::Exists) => {
                println!("keycard demo: user {name} exists already");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct HomeQuery {
    /// Where to go after signing in: set by [`RequireUser`] when it sends a
    /// browser here from a page that needs a user.
    next: Option<String>,
}

/// `GET /`: the session as the server sees it, and the forms.
async fn home(
    session: Session,
    query: Result<Query<HomeQuery>, QueryRejection>,
) -> Result<Html<String>, keycard::Error> {
    let next = query
        .ok()
        .and_then(|Query(query)| query.next)
        .filter(|next| is_local_path(next));
    let user = session.user_id().await?;
    let method = session.auth_method().await?;
    let id = session.id().await?;
    let created_at = session.created_at().await?;
    let last_activity = session.last_activity().await?;
    let visits: u64 = session.get("visits").await?.unwrap_or(0);

    let who = match &user {
        Some(name) => format!(
            "signed in as <strong>{}</strong> (by {})",
            escape(name),
            escape(method.as_deref().unwrap_or("an unknown method"))
        ),
        None => "<strong>anonymous</strong>".to_owned(),
    };
    let id = match id {
        Some(id) => format!("<code>{}</code>", escape(&id.to_string())),
        None => "<em>not stored yet</em> (nothing worth remembering so far)".to_owned(),
    };
    let created_at = escape(&time(created_at));
    let last_activity = escape(&time(last_activity));
    let please = match (&next, &user) {
        (Some(_), None) => "<p class=\"flash\">Please sign in to see that page.</p>\n",
        _ => "",
    };
    let next_field = next
        .as_deref()
        .map(|next| {
            format!(
                r#"<input type="hidden" name="next" value="{}">"#,
                escape(next)
            )
        })
        .unwrap_or_default();
    let signed_in = if user.is_some() {
        r#"<p><a href="/sessions">Your sessions</a>: every browser and device you are signed in on</p>
<p><a href="/tokens">API tokens</a>: for scripts and API clients (<code>Authorization: Bearer</code>)</p>
<form method="post" action="/logout"><button>Sign out</button></form>"#
    } else {
        ""
    };

    let body = format!(
        r#"<h1>keycard demo</h1>
{please}<p>You are {who}.</p>
<table>
<tr><th>Session id</th><td>{id}</td></tr>
<tr><th>Created at</th><td>{created_at}</td></tr>
<tr><th>Last activity</th><td>{last_activity}</td></tr>
<tr><th>Visits</th><td>{visits}</td></tr>
</table>
<form method="post" action="/visit"><button>Count a visit</button></form>
<form method="post" action="/login">
<label>User name <input name="name" required maxlength="255" autocomplete="username"></label>
<label>Password <input name="password" type="password" required maxlength="1024" autocomplete="current-password"></label>
{next_field}<button>Sign in</button>
</form>
<p class="note">The demo users are <code>ada</code> and <code>grace</code>; the server printed
their passwords when it created them.</p>
{signed_in}"#
    );
    Ok(page("keycard demo", &body))
}

/// `POST /visit`: counts a visit, atomically.
async fn visit(session: Session) -> Result<Redirect, keycard::Error> {
    session
        .update("visits", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(Redirect::to("/"))
}

#[derive(Deserialize)]
struct LoginForm {
    /// Missing counts as empty, and is refused like it.
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    /// Where to go next: a path on this site, or home.
    #[serde(default)]
    next: String,
}

/// `POST /login`: checks the user name and password and signs in,
/// recording [`methods::PASSWORD`] as how the user signed in.
async fn login(
    State(app): State<App>,
    session: Session,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, keycard::Error> {
    let Ok(Form(form)) = form else {
        return Ok(bad_request("The form could not be read."));
    };
    if form.name.trim().is_empty() || form.password.is_empty() {
        return Ok(bad_request("Please enter your user name and password."));
    }
    let user_id = match app.passwords.verify(&form.name, &form.password).await {
        Ok(user_id) => user_id,
        Err(AuthenticationError::Unavailable(reason)) => {
            tracing::error!(%reason, "demo: the password check is unavailable");
            return Ok(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cannot sign in now",
                "Signing in is temporarily unavailable. Please try again later.",
                "/",
            ));
        }
        // Unknown user, wrong password, disabled or locked account: one
        // answer, so that the page does not tell which accounts exist.
        Err(_) => {
            return Ok(error_page(
                StatusCode::UNAUTHORIZED,
                "Cannot sign in",
                "Wrong user name or password.",
                "/",
            ));
        }
    };
    session
        .login_with(Login::new(user_id).method(methods::PASSWORD))
        .await?;
    let target = if is_local_path(&form.next) {
        form.next.as_str()
    } else {
        "/"
    };
    Ok(Redirect::to(target).into_response())
}

/// Whether `target` is a path on this site that is safe to redirect to:
/// never `//host` or `/\host`, which browsers read as another site, and
/// nothing a `Location` header cannot carry.
fn is_local_path(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && target.len() <= 2048
        && target.bytes().all(|b| b.is_ascii_graphic())
}

/// A 400 page saying why the sign-in was refused, with a link back.
fn bad_request(problem: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, "Cannot sign in", problem, "/")
}

/// An error page: a heading, what was wrong, and a link back to `back`.
/// Everything is escaped here.
fn error_page(status: StatusCode, title: &str, problem: &str, back: &str) -> Response {
    let body = format!(
        "<h1>{}</h1>\n<p>{}</p>\n<p><a href=\"{}\">Back</a></p>",
        escape(title),
        escape(problem),
        escape(back)
    );
    (status, page(title, &body)).into_response()
}

/// `POST /logout`: ends the session.
async fn logout(session: Session) -> Result<Redirect, keycard::Error> {
    session.logout().await?;
    Ok(Redirect::to("/"))
}

/// The session value holding a one-off message for the sessions page.
const FLASH: &str = "flash";

/// The session value holding a one-off message for the tokens page.
const TOKENS_FLASH: &str = "tokens_flash";

/// Takes the one-off message under `key` out of the session, as HTML.
/// Taking it out is a change, saved when the response leaves.
async fn take_flash(session: &Session, key: &str) -> Result<String, keycard::Error> {
    Ok(session
        .remove(key)
        .await?
        .and_then(|value| {
            value
                .as_str()
                .map(|text| format!("<p class=\"flash\">{}</p>\n", escape(text)))
        })
        .unwrap_or_default())
}

/// `GET /sessions`: the signed-in user's sessions, with a form to end each
/// other one, all the others, or this one. Anonymous visitors are sent home.
async fn sessions_page(session: Session) -> Result<Response, keycard::Error> {
    let Some(user) = session.user_id().await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let sessions = session.user_sessions().await?;
    let flash = take_flash(&session, FLASH).await?;

    let rows: String = sessions.iter().map(session_row).collect();
    let others = sessions.iter().filter(|s| !s.current).count();
    let end_others = if others > 0 {
        format!(
            r#"<form method="post" action="/sessions/end-others"><button>Sign out everywhere else ({others} other {})</button></form>"#,
            if others == 1 { "session" } else { "sessions" }
        )
    } else {
        r#"<p class="note">You are not signed in anywhere else.</p>"#.to_owned()
    };
    let body = format!(
        r#"<h1>Your sessions</h1>
{flash}<p>Signed in as <strong>{user}</strong> on {count}.</p>
<table class="sessions">
<tr><th>Created</th><th>Last activity</th><th>IP address</th><th>Client</th><th>Signed in with</th><th></th></tr>
{rows}</table>
{end_others}
<form method="post" action="/logout"><button>Sign out this device</button></form>
<p><a href="/">Home</a></p>"#,
        user = escape(&user),
        count = match sessions.len() {
            1 => "1 browser or device".to_owned(),
            n => format!("{n} browsers or devices"),
        },
    );
    Ok(page("Your sessions", &body).into_response())
}

/// One row of the sessions table; every value escaped.
fn session_row(info: &SessionInfo) -> String {
    let action = if info.current {
        "<strong>this device</strong>".to_owned()
    } else {
        format!(
            r#"<form method="post" action="/sessions/{}/end"><button>Sign out that device</button></form>"#,
            escape(&info.id.to_string())
        )
    };
    format!(
        "<tr{class}><td>{created}</td><td>{last}</td><td>{ip}</td><td>{client}</td><td>{method}</td><td>{action}</td></tr>\n",
        class = if info.current {
            r#" class="current""#
        } else {
            ""
        },
        created = escape(&time(info.created_at)),
        last = escape(&time(info.last_activity)),
        ip = escape(info.ip_address.as_deref().unwrap_or("unknown")),
        client = if info.is_api { "API" } else { "browser" },
        method = escape(info.auth_method.as_deref().unwrap_or("unknown")),
    )
}

/// `POST /sessions/{id}/end`: ends one of the user's sessions ("sign out
/// that device"); ending this one signs out here.
async fn end_one(
    session: Session,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, keycard::Error> {
    let Some(id) = id
        .ok()
        .and_then(|Path(text)| text.parse::<SessionId>().ok())
    else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "No such session",
            "A session is named by a positive whole number.",
            "/sessions",
        ));
    };
    if session.user_id().await?.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    let current = session.id().await? == Some(id);
    if session.end_user_session(id).await? {
        if current {
            return Ok(Redirect::to("/").into_response());
        }
        session.insert(FLASH, "That device is signed out.").await?;
    } else {
        session
            .insert(
                FLASH,
                "That session is not one of yours, or has already ended.",
            )
            .await?;
    }
    Ok(Redirect::to("/sessions").into_response())
}

/// `POST /sessions/end-others`: ends every other session of the user.
async fn end_others(session: Session) -> Result<Response, keycard::Error> {
    if session.user_id().await?.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    let ended = session.end_other_sessions().await?;
    let message = match ended {
        0 => "You were not signed in anywhere else.".to_owned(),
        1 => "Signed out 1 other session.".to_owned(),
        n => format!("Signed out {n} other sessions."),
    };
    session.insert(FLASH, message).await?;
    Ok(Redirect::to("/sessions").into_response())
}

/// Whether this user's session may create and revoke API tokens: not one
/// signed in with a token, so that a leaked token cannot mint others.
fn may_manage_tokens(user: &AuthUser) -> bool {
    user.method.as_deref() != Some(methods::BEARER)
}

/// The `403` page for a token session that tries to manage tokens.
fn tokens_forbidden() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Not with a token",
        "A session signed in with an API token cannot create or revoke tokens: sign in with \
         your password.",
        "/tokens",
    )
}

/// `GET /tokens`: the user's API tokens, and the forms to create and revoke
/// them. Anonymous browsers are sent to sign in first, API clients get 401.
async fn tokens_page(
    State(app): State<App>,
    RequireUser(user): RequireUser,
    session: Session,
) -> Result<Response, keycard::Error> {
    let tokens = app.tokens.list(&user.id).await?;
    let flash = take_flash(&session, TOKENS_FLASH).await?;
    let body = tokens_body(&user, &tokens, &flash, None);
    Ok(page("API tokens", &body).into_response())
}

#[derive(Deserialize)]
struct TokenForm {
    /// Missing counts as empty, and is refused like it.
    #[serde(default)]
    name: String,
}

/// `POST /tokens`: creates a token and shows its secret, this once, on the
/// page that answers (it is not kept anywhere, not even in the session).
async fn create_token(
    State(app): State<App>,
    RequireUser(user): RequireUser,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, keycard::Error> {
    if !may_manage_tokens(&user) {
        return Ok(tokens_forbidden());
    }
    let name = match &form {
        Ok(Form(form)) => validate_name(&form.name),
        Err(_) => Err("The form could not be read."),
    };
    let name = match name {
        Ok(name) => name,
        Err(problem) => {
            return Ok(error_page(
                StatusCode::BAD_REQUEST,
                "Cannot create the token",
                problem,
                "/tokens",
            ));
        }
    };
    let new = app.tokens.create(&user.id, name).await?;
    // The secret is lost if this page is not shown: list what can be.
    let tokens = match app.tokens.list(&user.id).await {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::error!(%error, "demo: listing the tokens failed");
            vec![new.record.clone()]
        }
    };
    let body = tokens_body(&user, &tokens, "", Some(&new));
    // Nothing on the way may keep a copy of the secret.
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        page("API tokens", &body),
    )
        .into_response())
}

/// `POST /tokens/{id}/revoke`: revokes one of the user's tokens.
async fn revoke_token(
    State(app): State<App>,
    RequireUser(user): RequireUser,
    session: Session,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, keycard::Error> {
    let Some(id) = id
        .ok()
        .and_then(|Path(text)| text.parse::<i64>().ok())
        .filter(|id| *id > 0)
    else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "No such token",
            "A token is named by a positive whole number.",
            "/tokens",
        ));
    };
    if !may_manage_tokens(&user) {
        return Ok(tokens_forbidden());
    }
    let message = if app.tokens.revoke(&user.id, id).await? {
        "Token revoked: it signs nobody in any more."
    } else {
        "That token is not one of yours, or has already been revoked."
    };
    session.insert(TOKENS_FLASH, message).await?;
    Ok(Redirect::to("/tokens").into_response())
}

/// The tokens page: a just-created token's secret if any, the list, and
/// the forms. Every value escaped.
fn tokens_body(
    user: &AuthUser,
    tokens: &[ApiTokenRecord],
    flash: &str,
    new: Option<&NewToken>,
) -> String {
    let manage = may_manage_tokens(user);
    let created = new
        .map(|new| {
            format!(
                r#"<div class="secret">
<p>Your new token <strong>{name}</strong>. Copy it now: it is shown this once and cannot be shown again.</p>
<p><code id="new-token">{secret}</code></p>
</div>
"#,
                name = escape(&new.record.name),
                secret = escape(&new.secret),
            )
        })
        .unwrap_or_default();
    let list = if tokens.is_empty() {
        r#"<p class="note">You have no API tokens.</p>"#.to_owned()
    } else {
        let rows: String = tokens
            .iter()
            .map(|token| token_row(token, manage))
            .collect();
        format!(
            r#"<table class="sessions">
<tr><th>Name</th><th>Created</th><th>Last used</th><th></th></tr>
{rows}</table>"#
        )
    };
    let create = if manage {
        r#"<form method="post" action="/tokens">
<label>New token named <input name="name" required maxlength="64" placeholder="CI pipeline"></label>
<button>Create</button>
</form>"#
    } else {
        r#"<p class="note">Signed in with an API token: sign in with your password to create or revoke tokens.</p>"#
    };
    format!(
        r#"<h1>API tokens</h1>
{flash}{created}<p>Tokens of <strong>{user}</strong>, for scripts and API clients. Send one as
<code>Authorization: Bearer kc_…</code>, for example
<code>curl -H 'Authorization: Bearer kc_…' http://…/api/whoami</code>.
Only a hash of each token is kept.</p>
{list}
{create}
<p><a href="/">Home</a></p>"#,
        user = escape(&user.id),
    )
}

/// One row of the tokens table; every value escaped.
fn token_row(token: &ApiTokenRecord, manage: bool) -> String {
    let revoke = if manage {
        format!(
            r#"<form method="post" action="/tokens/{}/revoke"><button>Revoke</button></form>"#,
            token.id
        )
    } else {
        String::new()
    };
    format!(
        "<tr><td>{name}</td><td>{created}</td><td>{last}</td><td>{revoke}</td></tr>\n",
        name = escape(&token.name),
        created = escape(&time(token.created_at)),
        last = token
            .last_used_at
            .map_or_else(|| "never".to_owned(), |at| escape(&time(at))),
    )
}

/// `GET /api/whoami`: `USER METHOD api|human`, as plain text; `401` with the
/// auth layer's challenges when nobody is signed in.
async fn api_whoami(RequireUser(user): RequireUser) -> String {
    format!(
        "{} {} {}\n",
        user.id,
        user.method.as_deref().unwrap_or("unknown"),
        if user.is_api { "api" } else { "human" }
    )
}

/// `POST /api/visit`: counts a visit in the session, atomically, and
/// answers the new count.
async fn api_visit(session: Session) -> Result<String, keycard::Error> {
    let visits = session
        .update("visits", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(format!("{visits}\n"))
}

/// A timestamp as the pages show it.
fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The name, trimmed, if it is 1 to 64 characters with no control character.
fn validate_name(raw: &str) -> Result<&str, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("Please enter a name.");
    }
    if name.chars().count() > 64 {
        return Err("A name has at most 64 characters.");
    }
    if name.chars().any(char::is_control) {
        return Err("A name cannot contain control characters.");
    }
    Ok(name)
}

/// A complete HTML page; `title` is escaped here, `body` must already be.
fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 56rem; margin: 2rem auto; padding: 0 1rem; }}
th {{ text-align: left; padding-right: 1rem; }}
form {{ margin: 1rem 0; }}
.note {{ color: #555; font-size: 0.9rem; }}
.flash {{ background: #eef6ee; padding: 0.5rem; }}
table.sessions {{ border-collapse: collapse; }}
table.sessions td, table.sessions th {{ padding: 0.25rem 0.5rem; border-bottom: 1px solid #ddd; }}
table.sessions form {{ margin: 0; }}
tr.current {{ background: #f3f3ff; }}
.secret {{ background: #fff6e0; border: 1px solid #e0c070; padding: 0.5rem; }}
.secret code {{ font-size: 1.1rem; user-select: all; }}
</style>
</head>
<body>
{}
</body>
</html>
"#,
        escape(title),
        body
    ))
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
