//! # keycard demo
//!
//! A small but complete web app showing what keycard does: server-side
//! sessions stored in an SQLite file, handed to axum handlers as a
//! [`keycard::Session`].
//!
//! The home page shows your session as the server sees it (the signed-in
//! user or "anonymous", the session's id, when it was created and last used,
//! and a visit counter) and offers three forms:
//!
//! * **count a visit** (`POST /visit`): bumps the counter with
//!   [`Session::update`], an atomic read-modify-write;
//! * **sign in as NAME** (`POST /login`): [`Session::login_with`], which
//!   gives the session a fresh token and new cookies, and records how the
//!   user signed in (`"form"`; there are no passwords yet: they come in a
//!   later version);
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
//! Sign in as the same name from two browsers (or a private window) to see
//! both sessions listed.
//!
//! An anonymous visitor costs nothing: the session is only stored (and a
//! cookie only sent) once it holds a value or a user.
//!
//! Run it with
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
//! The sessions live in `keycard-demo.db` (in the current directory) unless
//! `--db` says otherwise; the table is created on first start. The `admin`
//! example counts, lists, ends and purges them from the command line:
//! `cargo run --example admin -- list NAME`.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use keycard::{Login, Session, SessionId, SessionInfo, SessionLayer, SqliteStore};
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

const DEFAULT_ADDR: &str = "127.0.0.1:3000";
const DEFAULT_DB: &str = "keycard-demo.db";

const USAGE: &str = "\
usage: cargo run --example demo -- [--addr HOST:PORT] [--db PATH]

  --addr HOST:PORT  address to listen on (default: 127.0.0.1:3000)
  --db PATH         SQLite file holding the sessions (default: keycard-demo.db)
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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let store = SqliteStore::connect(&format!("sqlite://{}", options.db)).await?;
    store.migrate().await?;

    // This demo is served over plain http on localhost, where browsers
    // refuse `Secure` and `__Host-` cookies; `insecure_dev_cookies` drops
    // both. Never use it behind a real domain: serve HTTPS and leave the
    // secure defaults on.
    let sessions = SessionLayer::new(store).insecure_dev_cookies();

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
        .layer(sessions);

    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    let local = listener.local_addr()?;
    println!("keycard demo: sessions in {}", options.db);
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

/// `GET /`: the session as the server sees it, and the forms.
async fn home(session: Session) -> Result<Html<String>, keycard::Error> {
    let user = session.user_id().await?;
    let id = session.id().await?;
    let created_at = session.created_at().await?;
    let last_activity = session.last_activity().await?;
    let visits: u64 = session.get("visits").await?.unwrap_or(0);

    let who = match &user {
        Some(name) => format!("signed in as <strong>{}</strong>", escape(name)),
        None => "<strong>anonymous</strong>".to_owned(),
    };
    let id = match id {
        Some(id) => format!("<code>{}</code>", escape(&id.to_string())),
        None => "<em>not stored yet</em> (nothing worth remembering so far)".to_owned(),
    };
    let created_at = escape(&time(created_at));
    let last_activity = escape(&time(last_activity));
    let sign_out = if user.is_some() {
        r#"<p><a href="/sessions">Your sessions</a>: every browser and device you are signed in on</p>
<form method="post" action="/logout"><button>Sign out</button></form>"#
    } else {
        ""
    };

    let body = format!(
        r#"<h1>keycard demo</h1>
<p>You are {who}.</p>
<table>
<tr><th>Session id</th><td>{id}</td></tr>
<tr><th>Created at</th><td>{created_at}</td></tr>
<tr><th>Last activity</th><td>{last_activity}</td></tr>
<tr><th>Visits</th><td>{visits}</td></tr>
</table>
<form method="post" action="/visit"><button>Count a visit</button></form>
<form method="post" action="/login">
<label>Sign in as <input name="name" required maxlength="64" autocomplete="username"></label>
<button>Sign in</button>
</form>
<p class="note">No password is asked for yet: passwords come in a later version.</p>
{sign_out}"#
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
}

/// `POST /login`: signs in as the given name (no password yet), recording
/// `"form"` as how the user signed in.
async fn login(
    session: Session,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, keycard::Error> {
    let name = match &form {
        Ok(Form(form)) => validate_name(&form.name),
        Err(_) => Err("The form could not be read."),
    };
    let name = match name {
        Ok(name) => name,
        Err(problem) => return Ok(bad_request(problem)),
    };
    session.login_with(Login::new(name).method("form")).await?;
    Ok(Redirect::to("/").into_response())
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

/// `GET /sessions`: the signed-in user's sessions, with a form to end each
/// other one, all the others, or this one. Anonymous visitors are sent home.
async fn sessions_page(session: Session) -> Result<Response, keycard::Error> {
    let Some(user) = session.user_id().await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let sessions = session.user_sessions().await?;
    // Shown once: taking it out of the session is a change, saved when the
    // response leaves.
    let flash = session
        .remove(FLASH)
        .await?
        .and_then(|value| {
            value
                .as_str()
                .map(|text| format!("<p class=\"flash\">{}</p>\n", escape(text)))
        })
        .unwrap_or_default();

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
