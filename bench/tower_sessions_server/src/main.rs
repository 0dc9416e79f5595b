//! The bench server HTTP contract (`examples/bench_server.rs`) on
//! tower-sessions 0.14 with tower-sessions-sqlx-store 0.15 (sqlx 0.8), for
//! comparison with keycard.
//!
//! Flags: the bench server's (`--addr`,
//! `--store sqlite:PATH|postgres://…|mysql://…`,
//! `--idle-timeout SECS`, `--insecure-cookies`, `--sqlite-pool N`) plus
//! `--always-save`, which
//! turns on tower-sessions' `with_always_save(true)`: the record and its
//! expiry are written back on every request that has a session, which is
//! how tower-sessions gives a sliding idle expiry (keycard slides its own
//! without a write per request, by touching at most once per touch
//! interval).
//!
//! The pools use the settings keycard's stores use: SQLite in WAL mode,
//! `synchronous = NORMAL`, a 5 s busy timeout, 8 connections; PostgreSQL and
//! MySQL 10 connections. On MySQL the session table goes into the URL's
//! database (tower-sessions' default is a `tower_sessions` schema of its
//! own, which the bench script would never drop between runs). `POST /incr` is a read-modify-write inside the handler:
//! tower-sessions has no atomic update, so concurrent increments of one
//! session can be lost (the `race` scenario counts them).

use std::net::SocketAddr;
use std::process::ExitCode;
#[cfg(feature = "sqlite")]
use std::str::FromStr as _;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_sessions::cookie::time;
use tower_sessions::{Expiry, Session, SessionManagerLayer, SessionStore};
#[cfg(feature = "mysql")]
use tower_sessions_sqlx_store::MySqlStore;
#[cfg(feature = "postgres")]
use tower_sessions_sqlx_store::PostgresStore;
#[cfg(feature = "sqlite")]
use tower_sessions_sqlx_store::SqliteStore;
#[cfg(feature = "mysql")]
use tower_sessions_sqlx_store::sqlx::mysql::MySqlPoolOptions;
#[cfg(feature = "postgres")]
use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;
#[cfg(feature = "sqlite")]
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

const USAGE: &str = "\
usage: tower_sessions_server [--addr HOST:PORT] [--store URL] [--idle-timeout SECS]
                             [--insecure-cookies] [--always-save] [--sqlite-pool N]

  --addr HOST:PORT      address to listen on (default: 127.0.0.1:3001)
  --store URL           sqlite:PATH, postgres://... or mysql://...
                        (default: sqlite:tower-sessions-bench.db)
  --idle-timeout SECS   session idle timeout in seconds (default: 1800)
  --insecure-cookies    cookies without Secure (plain-http benchmarks)
  --always-save         save the session on every request (sliding expiry)
  --sqlite-pool N       SQLite: a pool of N connections (default: 8)";

struct Options {
    addr: SocketAddr,
    store: String,
    idle_timeout: i64,
    insecure_cookies: bool,
    always_save: bool,
    sqlite_pool: u32,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 3001)),
        store: "sqlite:tower-sessions-bench.db".to_owned(),
        idle_timeout: 1800,
        insecure_cookies: false,
        always_save: false,
        sqlite_pool: 8,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => {
                let text = value()?;
                options.addr = text
                    .parse()
                    .map_err(|_| format!("--addr: {text:?} is not HOST:PORT"))?;
            }
            "--store" => options.store = value()?,
            "--idle-timeout" => {
                let text = value()?;
                options.idle_timeout = text.parse().ok().filter(|s| *s > 0).ok_or(format!(
                    "--idle-timeout: {text:?} is not a positive integer"
                ))?;
            }
            "--insecure-cookies" => options.insecure_cookies = true,
            "--always-save" => options.always_save = true,
            "--sqlite-pool" => {
                let text = value()?;
                options.sqlite_pool = text.parse().ok().filter(|n| *n > 0).ok_or(format!(
                    "--sqlite-pool: {text:?} is not a positive integer"
                ))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

type Reply = Result<Response, (StatusCode, String)>;

fn fail(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn read(session: Session) -> Reply {
    let counter: u64 = session.get("counter").await.map_err(fail)?.unwrap_or(0);
    Ok(counter.to_string().into_response())
}

async fn incr(session: Session) -> Reply {
    let counter: u64 = session.get("counter").await.map_err(fail)?.unwrap_or(0) + 1;
    session.insert("counter", counter).await.map_err(fail)?;
    Ok(counter.to_string().into_response())
}

async fn login(session: Session, Path(user): Path<String>) -> Reply {
    // Session fixation defence, as tower-sessions documents it: a new id.
    session.cycle_id().await.map_err(fail)?;
    session.insert("user", user).await.map_err(fail)?;
    Ok("ok".into_response())
}

async fn logout(session: Session) -> Reply {
    session.flush().await.map_err(fail)?;
    Ok("ok".into_response())
}

async fn whoami(session: Session) -> Reply {
    Ok(match session.get::<String>("user").await.map_err(fail)? {
        Some(user) => user.into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    })
}

fn app<S: SessionStore + Clone>(store: S, options: &Options) -> Router {
    let layer = SessionManagerLayer::new(store)
        .with_secure(!options.insecure_cookies)
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            options.idle_timeout,
        )))
        .with_always_save(options.always_save);
    Router::new()
        .route("/anon", get(|| async { "ok" }))
        .route("/read", get(read))
        .route("/incr", post(incr))
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/whoami", get(whoami))
        .layer(layer)
}

async fn serve(router: Router, addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "bench_server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("tower_sessions_server: {message}\n\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let url = options.store.as_str();
    let router: Option<Router> = None;
    #[cfg(feature = "sqlite")]
    let router = match router {
        None if url.starts_with("sqlite:") => {
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(std::time::Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(options.sqlite_pool)
                .connect_with(connect)
                .await?;
            let store = SqliteStore::new(pool);
            store.migrate().await?;
            Some(app(store, &options))
        }
        other => other,
    };
    #[cfg(feature = "postgres")]
    let router = match router {
        None if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .connect(url)
                .await?;
            let store = PostgresStore::new(pool);
            store.migrate().await?;
            Some(app(store, &options))
        }
        other => other,
    };
    #[cfg(feature = "mysql")]
    let router = match router {
        None if url.starts_with("mysql://") => {
            let pool = MySqlPoolOptions::new()
                .max_connections(10)
                .connect(url)
                .await?;
            let database: Option<String> =
                tower_sessions_sqlx_store::sqlx::query_scalar("SELECT DATABASE()")
                    .fetch_one(&pool)
                    .await?;
            let mut store = MySqlStore::new(pool);
            if let Some(database) = database {
                store = store.with_schema_name(database)?;
            }
            store.migrate().await?;
            Some(app(store, &options))
        }
        other => other,
    };
    let Some(router) = router else {
        eprintln!(
            "tower_sessions_server: --store: {url:?} is not sqlite:PATH, postgres://… or mysql://… \
             (or this build lacks that store's feature)"
        );
        return Ok(ExitCode::from(2));
    };
    serve(router, options.addr).await?;
    Ok(ExitCode::SUCCESS)
}
