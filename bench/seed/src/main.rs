//! Fills a keycard session store for the scale run: `--live N` sessions
//! active now, `--expired M` sessions idle for two days (what
//! `purge_expired` deletes), and writes `--sample K` of the live ones as
//! `ID TOKEN USER` lines for the load generator's `seeded` scenario.
//!
//! ```text
//! seed --store sqlite:/tmp/scale.db --live 1000000 --expired 0 --sample 100000 --out /tmp/sessions.txt
//! ```
//!
//! Rows go in through keycard's own `SessionStore::insert`, so they are
//! exactly what the layer writes.

use std::io::Write as _;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use keycard::store::{SessionFields, SessionStore};
use keycard::token::SessionToken;

const TASKS: u64 = 8;

struct Options {
    store: String,
    live: u64,
    expired: u64,
    sample: u64,
    out: String,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        store: String::new(),
        live: 0,
        expired: 0,
        sample: 0,
        out: "sessions.txt".into(),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("{text:?} is not a count"))
        };
        match flag.as_str() {
            "--store" => options.store = value()?,
            "--live" => options.live = number(value()?)?,
            "--expired" => options.expired = number(value()?)?,
            "--sample" => options.sample = number(value()?)?,
            "--out" => options.out = value()?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.store.is_empty() {
        return Err("--store is required".into());
    }
    Ok(options)
}

/// The store, and for SQLite its pool, to checkpoint the write-ahead log:
/// eight writers that never pause starve SQLite's automatic checkpoints, and
/// the log would grow by gigabytes.
async fn open(
    url: &str,
) -> Result<(Arc<dyn SessionStore>, Option<sqlx::SqlitePool>), Box<dyn std::error::Error>> {
    if url.starts_with("sqlite:") {
        let store = keycard::SqliteStore::connect(url).await?;
        store.migrate().await?;
        let pool = store.pool().clone();
        return Ok((Arc::new(store), Some(pool)));
    }
    let store = keycard::store::PostgresStore::connect(url).await?;
    store.migrate().await?;
    Ok((Arc::new(store), None))
}

async fn checkpoint(pool: &Option<sqlx::SqlitePool>) -> Result<(), String> {
    if let Some(pool) = pool {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Rows per round: the writers pause for a checkpoint after each.
const ROUND: u64 = 50_000;

fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse(std::env::args().skip(1)).map_err(|e| {
        eprintln!("seed: {e}");
        e
    })?;
    let (store, pool) = open(&options.store).await?;
    let now = micros(Utc::now());
    let old = now - TimeDelta::days(2);
    let every = if options.sample == 0 {
        u64::MAX
    } else {
        (options.live / options.sample).max(1)
    };
    let started = std::time::Instant::now();
    let total = options.live + options.expired;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&options.out)?);
    let mut start = 0;
    while start < total {
        let end = (start + ROUND).min(total);
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = store.clone();
                let live = options.live;
                tokio::spawn(async move {
                    let mut sample = Vec::new();
                    let mut n = start + task;
                    while n < end {
                        let token = SessionToken::generate().map_err(|e| e.to_string())?;
                        let at = if n < live { now } else { old };
                        let user = format!("s{n}");
                        let mut fields = SessionFields::new(token.hash(), at);
                        fields.user_id = Some(user.clone());
                        fields.authenticated_at = Some(at);
                        let id = store.insert(&fields).await.map_err(|e| e.to_string())?;
                        if n < live && n % every == 0 {
                            sample.push(format!("{id} {} {user}", token.expose()));
                        }
                        n += TASKS;
                    }
                    Ok::<_, String>(sample)
                })
            })
            .collect();
        for task in tasks {
            for line in task.await??.into_iter() {
                writeln!(out, "{line}")?;
            }
        }
        checkpoint(&pool).await?;
        start = end;
    }
    out.flush()?;
    println!(
        "seeded {total} sessions ({} live, {} expired) in {:.1} s",
        options.live,
        options.expired,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
