//! # keycard bench server
//!
//! A fixed HTTP contract that the load benchmark and black-box tests drive.
//! Its flags and routes only ever grow: never change what is here.
//!
//! ```text
//! cargo run --release --all-features --example bench_server -- \
//!     --addr 127.0.0.1:3001 --store sqlite:bench.db --insecure-cookies
//! ```
//!
//! Flags:
//!
//! | flag | meaning | default |
//! |---|---|---|
//! | `--addr HOST:PORT` | where to listen | `127.0.0.1:3001` |
//! | `--store URL` | `sqlite:PATH`, `postgres://…` or `mysql://…` | `sqlite:keycard-bench.db` |
//! | `--idle-timeout SECS` | the session idle timeout | 1800 |
//! | `--insecure-cookies` | plain-http cookies (no `Secure`, no `__Host-`) | off |
//! | `--cache` | an in-process [`CachedStore`](keycard::store::CachedStore) in front of the store (on PostgreSQL with change notifications between servers) | off |
//! | `--no-read-cache` | SQLite: the store's own read cache off ([`SqliteStore::cache`](keycard::SqliteStore::cache)`(0)`), to measure what it gains | the store's default (SQLite: on) |
//! | `--no-batching` | every session load and value write a statement of its own ([`SqlStore::batching`](keycard::store::SqlStore::batching)`(false)`), to measure what batching gains | batching on |
//! | `--sqlite-pool N` | SQLite: a pool of `N` connections, built from [`SqliteStore::pool_options`](keycard::SqliteStore::pool_options), to measure what the pool's size costs and gains | [`SqliteStore::POOL_SIZE`](keycard::SqliteStore::POOL_SIZE) (8) |
//! | `--purge-interval SECS` | purge expired rows in the background this often ([`SessionLayer::purge_interval`]; `bench/soak.sh`) | the layer's default, 600 |
//!
//! Routes:
//!
//! | route | what it does |
//! |---|---|
//! | `GET /anon` | `200 ok`; never touches the session |
//! | `GET /read` | the session's `counter` (0 if none); no write |
//! | `POST /incr` | increments `counter` with the atomic [`Session::update`] and returns the new value |
//! | `POST /login/{user}` | signs in as `user` (rotates the token) |
//! | `POST /logout` | ends the session |
//! | `GET /whoami` | the signed-in user, or 401 |
//!
//! PostgreSQL and MySQL need the `postgres` and `mysql` features
//! (`--all-features`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keycard::store::{CachedStore, SessionStore};
use keycard::{Session, SessionLayer, SqliteStore};

const USAGE: &str = "\
usage: bench_server [--addr HOST:PORT] [--store URL] [--idle-timeout SECS] [--insecure-cookies]
                    [--cache] [--no-read-cache] [--no-batching] [--purge-interval SECS]
                    [--sqlite-pool N]

  --addr HOST:PORT      address to listen on (default: 127.0.0.1:3001)
  --store URL           sqlite:PATH, postgres://... or mysql://... (default: sqlite:keycard-bench.db)
  --idle-timeout SECS   session idle timeout in seconds (default: 1800)
  --insecure-cookies    cookies without Secure and __Host- (plain-http benchmarks)
  --cache               cache loaded sessions in process (PostgreSQL: invalidated by NOTIFY)
  --no-read-cache       SQLite: turn the store's own read cache off
  --no-batching         run each session load and value write alone
  --purge-interval SECS purge expired sessions in the background this often
                        (default: the layer's, 600)
  --sqlite-pool N       SQLite: a pool of N connections (default: 8)";

struct Options {
    addr: SocketAddr,
    store: String,
    idle_timeout: Duration,
    insecure_cookies: bool,
    cache: bool,
    read_cache: bool,
    batching: bool,
    /// `None`: the layer's default.
    purge_interval: Option<Duration>,
    /// `None`: `SqliteStore::connect`'s pool.
    sqlite_pool: Option<u32>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 3001)),
        store: "sqlite:keycard-bench.db".to_owned(),
        idle_timeout: Duration::from_secs(1800),
        insecure_cookies: false,
        cache: false,
        read_cache: true,
        batching: true,
        purge_interval: None,
        sqlite_pool: None,
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
                let secs: u64 = text.parse().ok().filter(|s| *s > 0).ok_or(format!(
                    "--idle-timeout: {text:?} is not a positive integer"
                ))?;
                options.idle_timeout = Duration::from_secs(secs);
            }
            "--purge-interval" => {
                let text = value()?;
                let secs: u64 = text.parse().ok().filter(|s| *s > 0).ok_or(format!(
                    "--purge-interval: {text:?} is not a positive integer"
                ))?;
                options.purge_interval = Some(Duration::from_secs(secs));
            }
            "--sqlite-pool" => {
                let text = value()?;
                let size: u32 = text
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--sqlite-pool: {text:?} is not a positive integer"))?;
                options.sqlite_pool = Some(size);
            }
            "--insecure-cookies" => options.insecure_cookies = true,
            "--cache" => options.cache = true,
            "--no-read-cache" => options.read_cache = false,
            "--no-batching" => options.batching = false,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// How many sessions `--cache` keeps.
const CACHE_CAPACITY: usize = 1_000_000;

/// Opens the store the URL names and creates its table; with `cache`, puts
/// an in-process cache in front of it.
async fn open_store(
    options: &Options,
) -> Result<Arc<dyn SessionStore>, Box<dyn std::error::Error>> {
    let (url, cache, batching) = (options.store.as_str(), options.cache, options.batching);
    if url.starts_with("sqlite:") {
        let mut store = match options.sqlite_pool {
            None => SqliteStore::connect(url).await?,
            Some(size) => {
                let limits = keycard::store::WaitLimits::default();
                let pool = SqliteStore::pool_options(url, limits)
                    .max_connections(size)
                    .connect_with(SqliteStore::connect_options(url, limits)?)
                    .await?;
                SqliteStore::new(pool).wait_limits(limits)
            }
        }
        .batching(batching);
        if !options.read_cache {
            store = store.cache(0);
        }
        store.migrate().await?;
        if cache {
            return Ok(Arc::new(CachedStore::new(store, CACHE_CAPACITY)));
        }
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let store = keycard::store::PostgresStore::connect(url)
                .await?
                .batching(batching);
            store.migrate().await?;
            if cache {
                store.enable_change_notifications().await?;
                let cached = CachedStore::new(store, CACHE_CAPACITY).listen().await?;
                return Ok(Arc::new(cached));
            }
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "postgres"))]
        return Err("this build has no PostgreSQL store: run with --features postgres".into());
    }
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        #[cfg(feature = "mysql")]
        {
            if cache {
                return Err(
                    "--cache needs SQLite or PostgreSQL: MySQL cannot tell other \
                            servers what changed"
                        .into(),
                );
            }
            let store = keycard::store::MySqlStore::connect(url)
                .await?
                .batching(batching);
            store.migrate().await?;
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "mysql"))]
        return Err("this build has no MySQL store: run with --features mysql".into());
    }
    Err(format!("--store: {url:?} is not sqlite:PATH, postgres://… or mysql://…").into())
}

type Reply = Result<Response, keycard::Error>;

async fn read(session: Session) -> Reply {
    let counter: u64 = session.get("counter").await?.unwrap_or(0);
    Ok(counter.to_string().into_response())
}

async fn incr(session: Session) -> Reply {
    let counter = session
        .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(counter.to_string().into_response())
}

async fn login(session: Session, Path(user): Path<String>) -> Reply {
    session.login(user).await?;
    Ok("ok".into_response())
}

async fn logout(session: Session) -> Reply {
    session.logout().await?;
    Ok("ok".into_response())
}

async fn whoami(session: Session) -> Reply {
    Ok(match session.user_id().await? {
        Some(user) => user.into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    })
}

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/anon", get(|| async { "ok" }))
        .route("/read", get(read))
        .route("/incr", post(incr))
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/whoami", get(whoami))
        .layer(layer)
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("bench_server: {message}\n\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        // Standard output carries the banner that harnesses read.
        .with_writer(std::io::stderr)
        .init();
    let store = open_store(&options).await?;
    let mut layer = SessionLayer::with_shared_store(store).idle_timeout(options.idle_timeout);
    if options.insecure_cookies {
        layer = layer.insecure_dev_cookies();
    }
    if let Some(every) = options.purge_interval {
        layer = layer.purge_interval(every);
    }
    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    println!(
        "bench_server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app(layer).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
