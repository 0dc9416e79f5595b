//! # keycard admin
//!
//! Session housekeeping from the command line, against any keycard store:
//! the equivalent of Django's `clearsessions`, plus counting, listing and
//! ending a user's sessions. It is a thin wrapper over
//! [`keycard::SessionAdmin`], which an application can also use directly.
//!
//! ```text
//! cargo run --example admin -- [--store URL] [OPTIONS] COMMAND
//!
//! COMMAND:
//!   count [--since SECS]   sessions active in the last SECS seconds (default: the idle timeout)
//!   purge                  delete expired sessions, print how many
//!   list USER              the user's active sessions, one per line
//!   end USER --all         end all of the user's sessions
//!   end USER ID            end one session of the user (only if it is theirs)
//!   end-everyone           end every session of every user (all sign in again)
//! ```
//!
//! Examples:
//!
//! ```text
//! # The demo's sessions (the default store is sqlite:keycard-demo.db):
//! cargo run --example admin -- count
//! cargo run --example admin -- list ada
//! cargo run --example admin -- end ada 42
//! cargo run --example admin -- end ada --all
//!
//! # Nightly housekeeping of a PostgreSQL store whose app uses a 15-minute
//! # idle timeout and an 8-hour absolute timeout (from cron, say):
//! cargo run --all-features --example admin -- \
//!     --store postgres://app@db/app --idle-timeout 900 --absolute-timeout 28800 purge
//!
//! # How many people used the site in the last hour:
//! cargo run --example admin -- --store sqlite:/var/lib/app/sessions.db count --since 3600
//! ```
//!
//! **Give it the same timeouts as the application** (`--idle-timeout`,
//! `--absolute-timeout`, and for "remember me" sessions
//! `--persistent-idle-timeout`, `--persistent-absolute-timeout`; the
//! defaults are keycard's): `purge` deletes what is expired *by these
//! timeouts*, and `list` and `end USER ID` only see the sessions they leave
//! active.
//!
//! The table is created if it is missing (the store's `migrate()` runs
//! first), so every command also works on a fresh database.
//!
//! Output is plain text on stdout, meant for scripts:
//!
//! | command | prints |
//! |---|---|
//! | `count` | the number, e.g. `17` |
//! | `purge` | `purged N` |
//! | `list USER` | one line per active session, most recently used first, fields separated by a tab: id, created, last activity (RFC 3339, UTC), IP address, `api` or `browser`, how the user signed in, the device ("Firefox on Linux", from its `User-Agent`); `-` for an unknown value. Whitespace, control characters and `\` inside a value are written as `\u{…}` escapes. No token or token hash is ever printed. |
//! | `end …` | `ended N` (`ended 0` if the session is not the user's, or not active) |
//!
//! Exit status: 0 on success, 2 for a usage error (message and usage on
//! stderr), 1 if the store failed (message on stderr). PostgreSQL and MySQL
//! stores need the `postgres` and `mysql` features (`--all-features`).

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use keycard::store::{SessionStore, UserSessions};
use keycard::{SessionId, SessionInfo, SessionLayer, SqliteStore};

const USAGE: &str = "\
usage: admin [--store URL] [OPTIONS] COMMAND

commands:
  count [--since SECS]   sessions active in the last SECS seconds (default: the idle timeout)
  purge                  delete expired sessions, print how many
  list USER              the user's active sessions, one per line:
                         id, created, last activity, ip, api/browser, method, device
                         (tab-separated)
  end USER --all         end all of the user's sessions
  end USER ID            end one session of the user (only if it is theirs)
  end-everyone           end every session of every user (all sign in again)

options (use the application's timeouts: purge deletes what they call expired):
  --store URL                          sqlite:PATH, postgres://... or mysql://...
                                       (default: sqlite:keycard-demo.db)
  --idle-timeout SECS                  session idle timeout (default: 1800)
  --absolute-timeout SECS              session absolute timeout (default: 43200)
  --persistent-idle-timeout SECS       \"remember me\" idle timeout (default: 1209600)
  --persistent-absolute-timeout SECS   \"remember me\" absolute timeout (default: 2592000)
  -h, --help                           print this message
  --                                   what follows is not an option (for a USER
                                       that starts with '-')";

const DEFAULT_STORE: &str = "sqlite:keycard-demo.db";
/// The longest duration accepted, in seconds: 100 years, far beyond any
/// sensible timeout, and small enough that no date arithmetic overflows.
const MAX_SECS: u64 = 100 * 365 * 24 * 60 * 60;

/// What the command line asked for.
#[derive(Debug, PartialEq)]
struct Options {
    store: String,
    idle_timeout: Duration,
    absolute_timeout: Duration,
    persistent_idle_timeout: Duration,
    persistent_absolute_timeout: Duration,
    command: Command,
}

#[derive(Debug, PartialEq)]
enum Command {
    /// Sessions active in the last `since` (default: the idle timeout).
    Count {
        since: Option<Duration>,
    },
    Purge,
    List {
        user: String,
    },
    EndAll {
        user: String,
    },
    EndOne {
        user: String,
        id: SessionId,
    },
    EndEveryone,
}

/// Why the command line was refused, or a request for help.
#[derive(Debug, PartialEq)]
enum ArgsError {
    Help,
    Bad(String),
}

impl From<String> for ArgsError {
    fn from(message: String) -> Self {
        ArgsError::Bad(message)
    }
}

/// The options as given, before they are checked against the command.
#[derive(Default)]
struct Raw {
    store: Option<String>,
    idle: Option<Duration>,
    absolute: Option<Duration>,
    persistent_idle: Option<Duration>,
    persistent_absolute: Option<Duration>,
    since: Option<Duration>,
    all: bool,
    positional: Vec<String>,
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Options, ArgsError> {
    let mut args = args.into_iter().map(|arg| {
        arg.into_string()
            .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))
    });
    let mut raw = Raw::default();
    let mut options_done = false;
    while let Some(arg) = args.next() {
        let arg = arg?;
        if options_done || !arg.starts_with('-') || arg == "-" {
            raw.positional.push(arg);
            continue;
        }
        // `--flag=value` is the same as `--flag value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = || -> Result<String, ArgsError> {
            match inline.clone() {
                Some(value) => Ok(value),
                None => Ok(args
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value"))??),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--" if inline.is_none() => options_done = true,
            "--store" => {
                let url = value()?;
                check_store_url(&url)?;
                set_once(&mut raw.store, url, &flag)?;
            }
            "--idle-timeout" => {
                let secs = timeout(&flag, &value()?)?;
                set_once(&mut raw.idle, secs, &flag)?;
            }
            "--absolute-timeout" => {
                let secs = timeout(&flag, &value()?)?;
                set_once(&mut raw.absolute, secs, &flag)?;
            }
            "--persistent-idle-timeout" => {
                let secs = timeout(&flag, &value()?)?;
                set_once(&mut raw.persistent_idle, secs, &flag)?;
            }
            "--persistent-absolute-timeout" => {
                let secs = timeout(&flag, &value()?)?;
                set_once(&mut raw.persistent_absolute, secs, &flag)?;
            }
            "--since" => {
                let secs = seconds(&flag, &value()?)?;
                set_once(&mut raw.since, secs, &flag)?;
            }
            "--all" => {
                if inline.is_some() {
                    return Err("--all takes no value".to_owned().into());
                }
                if raw.all {
                    return Err("--all is given twice".to_owned().into());
                }
                raw.all = true;
            }
            other => return Err(format!("unknown option {other:?}").into()),
        }
    }
    let command = command(&mut raw)?;
    Ok(Options {
        store: raw.store.unwrap_or_else(|| DEFAULT_STORE.to_owned()),
        idle_timeout: raw.idle.unwrap_or(Duration::from_secs(30 * 60)),
        absolute_timeout: raw.absolute.unwrap_or(Duration::from_secs(12 * 60 * 60)),
        persistent_idle_timeout: raw
            .persistent_idle
            .unwrap_or(Duration::from_secs(14 * 24 * 60 * 60)),
        persistent_absolute_timeout: raw
            .persistent_absolute
            .unwrap_or(Duration::from_secs(30 * 24 * 60 * 60)),
        command,
    })
}

/// The command the positional arguments name, checked against the
/// command-specific options.
fn command(raw: &mut Raw) -> Result<Command, ArgsError> {
    let mut positional = std::mem::take(&mut raw.positional).into_iter();
    let Some(name) = positional.next() else {
        return Err("no command given".to_owned().into());
    };
    let rest: Vec<String> = positional.collect();
    let only_for = |option: &str, allowed: &str| -> ArgsError {
        format!("{option} only goes with `{allowed}`, not `{name}`").into()
    };
    if raw.since.is_some() && name != "count" {
        return Err(only_for("--since", "count"));
    }
    if raw.all && name != "end" {
        return Err(only_for("--all", "end USER --all"));
    }
    let user = |rest: &[String]| -> Result<String, ArgsError> {
        match rest.first() {
            None => Err(format!("`{name}` needs a USER").into()),
            Some(user) if user.is_empty() => Err("USER is empty".to_owned().into()),
            Some(user) => Ok(user.clone()),
        }
    };
    let too_many = |expected: usize| -> Result<(), ArgsError> {
        match rest.get(expected) {
            Some(extra) => Err(format!("unexpected argument {extra:?} after `{name}`").into()),
            None => Ok(()),
        }
    };
    match name.as_str() {
        "count" => {
            too_many(0)?;
            Ok(Command::Count { since: raw.since })
        }
        "purge" => {
            too_many(0)?;
            Ok(Command::Purge)
        }
        "list" => {
            let user = user(&rest)?;
            too_many(1)?;
            Ok(Command::List { user })
        }
        "end-everyone" => {
            too_many(0)?;
            Ok(Command::EndEveryone)
        }
        "end" => {
            let user = user(&rest)?;
            match (rest.get(1), raw.all) {
                (None, true) => Ok(Command::EndAll { user }),
                (Some(_), true) => Err("give either ID or --all, not both".to_owned().into()),
                (None, false) => Err("`end` needs an ID or --all after USER".to_owned().into()),
                (Some(id), false) => {
                    too_many(2)?;
                    let id = id.parse::<SessionId>().map_err(|_| {
                        format!("ID {id:?} is not a session id (a positive whole number)")
                    })?;
                    Ok(Command::EndOne { user, id })
                }
            }
        }
        other => Err(format!("unknown command {other:?}").into()),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, flag: &str) -> Result<(), ArgsError> {
    if slot.replace(value).is_some() {
        return Err(format!("{flag} is given twice").into());
    }
    Ok(())
}

/// A whole number of seconds, 0 to [`MAX_SECS`].
fn seconds(flag: &str, text: &str) -> Result<Duration, ArgsError> {
    let secs: u64 = text
        .parse()
        .map_err(|_| format!("{flag}: {text:?} is not a whole number of seconds"))?;
    if secs > MAX_SECS {
        return Err(format!("{flag}: {secs} seconds is more than 100 years").into());
    }
    Ok(Duration::from_secs(secs))
}

/// A timeout: like [`seconds`], but at least 1.
fn timeout(flag: &str, text: &str) -> Result<Duration, ArgsError> {
    let duration = seconds(flag, text)?;
    if duration.is_zero() {
        return Err(format!("{flag}: the timeout must be at least 1 second").into());
    }
    Ok(duration)
}

/// The kinds of store a URL can name.
#[derive(Clone, Copy)]
enum StoreKind {
    Sqlite,
    Postgres,
    MySql,
}

fn store_kind(url: &str) -> Option<StoreKind> {
    if url.starts_with("sqlite:") {
        Some(StoreKind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(StoreKind::Postgres)
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Some(StoreKind::MySql)
    } else {
        None
    }
}

/// Refuses a URL that names no store this build has. The URL itself is not
/// repeated: it may hold a password.
fn check_store_url(url: &str) -> Result<(), ArgsError> {
    match store_kind(url) {
        None => Err(
            "--store: expected sqlite:PATH, postgres://... or mysql://..."
                .to_owned()
                .into(),
        ),
        Some(StoreKind::Postgres) if !cfg!(feature = "postgres") => Err(
            "--store: this build has no PostgreSQL store: build with --features postgres"
                .to_owned()
                .into(),
        ),
        Some(StoreKind::MySql) if !cfg!(feature = "mysql") => Err(
            "--store: this build has no MySQL store: build with --features mysql"
                .to_owned()
                .into(),
        ),
        Some(_) => Ok(()),
    }
}

type BoxError = Box<dyn std::error::Error>;

/// Opens the store the URL names and creates its table if it is missing.
async fn open_store(url: &str) -> Result<Arc<dyn SessionStore>, BoxError> {
    match store_kind(url) {
        Some(StoreKind::Sqlite) => {
            let store = SqliteStore::connect(url).await?;
            store.migrate().await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        Some(StoreKind::Postgres) => {
            let store = keycard::store::PostgresStore::connect(url).await?;
            store.migrate().await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "mysql")]
        Some(StoreKind::MySql) => {
            let store = keycard::store::MySqlStore::connect(url).await?;
            store.migrate().await?;
            Ok(Arc::new(store))
        }
        // Refused while parsing the arguments.
        _ => Err("unsupported store URL".into()),
    }
}

/// Runs the command; returns what to print on stdout.
async fn run(options: Options) -> Result<String, BoxError> {
    let store = open_store(&options.store).await?;
    let layer = SessionLayer::with_shared_store(store)
        .idle_timeout(options.idle_timeout)
        .absolute_timeout(options.absolute_timeout)
        .persistent_timeouts(
            options.persistent_idle_timeout,
            options.persistent_absolute_timeout,
        );
    let admin = layer.admin();
    Ok(match options.command {
        Command::Count { since } => {
            let window = match since {
                // At most 100 years: never overflows.
                Some(since) => TimeDelta::from_std(since)?,
                None => layer.config().idle_timeout(),
            };
            let count = admin.count_active_since(Utc::now() - window).await?;
            format!("{count}\n")
        }
        Command::Purge => {
            let purged = admin.purge_expired().await?;
            format!("purged {purged}\n")
        }
        Command::List { user } => admin.list(&user).await?.iter().map(list_line).collect(),
        Command::EndAll { user } => {
            let ended = admin.end_sessions_of(&user, None).await?;
            format!("ended {ended}\n")
        }
        Command::EndEveryone => {
            let ended = admin.end_all().await?;
            format!("ended {ended}\n")
        }
        Command::EndOne { user, id } => {
            // Only one of the user's active sessions, as `list` shows them;
            // the delete itself also names the user, so a session that
            // changed hands in between is not touched either.
            let active = admin.list(&user).await?.iter().any(|s| s.id == id);
            let ended = if active {
                layer
                    .store()
                    .delete_for_user(&user, UserSessions::Only(id))
                    .await?
            } else {
                0
            };
            format!("ended {ended}\n")
        }
    })
}

/// One line of `list`: tab-separated, no token or hash; the device label
/// last.
fn list_line(info: &SessionInfo) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        info.id,
        timestamp(info.created_at),
        timestamp(info.last_activity),
        field(info.ip_address.as_deref()),
        if info.is_api { "api" } else { "browser" },
        field(info.auth_method.as_deref()),
        field(info.device.as_deref()),
    )
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A value as one field of a line: `-` if unknown; whitespace, control
/// characters and `\` escaped (`\u{9}`), so that fields and lines always
/// split where they should. A value that is exactly `-` is escaped too.
fn field(value: Option<&str>) -> String {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return "-".to_owned();
    };
    if value == "-" {
        return "\\u{2d}".to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_whitespace() || c.is_control() || c == '\\' {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes to stderr; if even that fails, there is nobody left to tell.
fn complain(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args_os().skip(1)) {
        Ok(options) => options,
        Err(ArgsError::Help) => {
            return match writeln!(std::io::stdout().lock(), "{USAGE}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            };
        }
        Err(ArgsError::Bad(message)) => {
            complain(&format!("admin: {message}\n\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    // keycard's own logs (`RUST_LOG=keycard=info`) go to stderr, so that
    // stdout holds only the answer.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            complain(&format!("admin: cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let output = match runtime.block_on(run(options)) {
        Ok(output) => output,
        Err(error) => {
            complain(&format!("admin: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            complain(&format!("admin: cannot write the output: {error}"));
            ExitCode::FAILURE
        }
    }
}
