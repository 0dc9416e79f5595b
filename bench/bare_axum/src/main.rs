//! The bench server HTTP contract (`examples/bench_server.rs`) in bare axum.
//!
//! This is **not** a session implementation: it is the ceiling a session
//! library is measured against. Sessions live in one in-process
//! `Mutex<HashMap>` keyed by a sequential id in a `bare-sid` cookie: nothing
//! is stored, hashed, expired or secret, so it costs what routing, one
//! cookie and one hash-map lookup cost. It keeps a counter per cookie so that
//! the load generator's checks (`/read` and `/incr` return the session's own
//! counter, `/login` rotates the cookie) apply to it unchanged.
//!
//! Same flags as keycard's bench server; `--store` and `--idle-timeout` are
//! accepted and ignored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

const COOKIE_NAME: &str = "bare-sid";

const USAGE: &str = "\
usage: bare_axum [--addr HOST:PORT] [--store URL] [--idle-timeout SECS] [--insecure-cookies]

  --addr HOST:PORT      address to listen on (default: 127.0.0.1:3001)
  --store URL           accepted and ignored (sessions are in memory)
  --idle-timeout SECS   accepted and ignored
  --insecure-cookies    accepted (cookies are never Secure here)";

#[derive(Default)]
struct Entry {
    counter: u64,
    user: Option<String>,
}

#[derive(Default)]
struct Sessions {
    next_id: AtomicU64,
    map: Mutex<HashMap<u64, Entry>>,
}

type Shared = State<Arc<Sessions>>;

impl Sessions {
    fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

fn session_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .and_then(|(_, value)| value.parse().ok())
}

fn set_cookie(id: u64) -> [(axum::http::HeaderName, String); 1] {
    [(
        SET_COOKIE,
        format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Lax"),
    )]
}

async fn read(State(sessions): Shared, headers: HeaderMap) -> String {
    let counter = session_id(&headers)
        .and_then(|id| sessions.map.lock().unwrap().get(&id).map(|e| e.counter))
        .unwrap_or(0);
    counter.to_string()
}

async fn incr(State(sessions): Shared, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers)
        && let Some(entry) = sessions.map.lock().unwrap().get_mut(&id)
    {
        entry.counter += 1;
        return entry.counter.to_string().into_response();
    }
    let id = sessions.new_id();
    sessions.map.lock().unwrap().insert(
        id,
        Entry {
            counter: 1,
            user: None,
        },
    );
    (set_cookie(id), "1").into_response()
}

async fn login(State(sessions): Shared, headers: HeaderMap, Path(user): Path<String>) -> Response {
    let new_id = sessions.new_id();
    let mut map = sessions.map.lock().unwrap();
    let mut entry = session_id(&headers)
        .and_then(|id| map.remove(&id))
        .unwrap_or_default();
    entry.user = Some(user);
    map.insert(new_id, entry);
    (set_cookie(new_id), "ok").into_response()
}

async fn logout(State(sessions): Shared, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        sessions.map.lock().unwrap().remove(&id);
    }
    (
        [(SET_COOKIE, format!("{COOKIE_NAME}=; Path=/; Max-Age=0"))],
        "ok",
    )
        .into_response()
}

async fn whoami(State(sessions): Shared, headers: HeaderMap) -> Response {
    let user = session_id(&headers).and_then(|id| {
        sessions
            .map
            .lock()
            .unwrap()
            .get(&id)
            .and_then(|e| e.user.clone())
    });
    match user {
        Some(user) => user.into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn app() -> Router {
    Router::new()
        .route("/anon", get(|| async { "ok" }))
        .route("/read", get(read))
        .route("/incr", post(incr))
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/whoami", get(whoami))
        .with_state(Arc::new(Sessions::default()))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 3001));
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => {
                let text = value()?;
                addr = text
                    .parse()
                    .map_err(|_| format!("--addr: {text:?} is not HOST:PORT"))?;
            }
            "--store" | "--idle-timeout" => {
                value()?;
            }
            "--insecure-cookies" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let addr = match parse_args(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("bare_axum: {message}\n\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "bench_server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app().into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
