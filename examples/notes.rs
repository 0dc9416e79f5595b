//! Application rows and session data, committed together: a small notes
//! app on `keycard::cnx`.
//!
//! ```sh
//! cargo run --example notes            # http://127.0.0.1:3001, keycard-notes.db
//! cargo run --example notes -- --addr 127.0.0.1:0 --db /tmp/notes.db
//! ```
//!
//! * `POST /login/{user}` signs in; an audit hook writes a row in the same
//!   transaction as the session's new token.
//! * `POST /notes/{text}` writes a note *and* remembers it in the session
//!   (`last_note`); `POST /notes/{text}?fail=1` does the same and then
//!   fails, so neither the note nor the session change is kept.
//! * `GET /notes` lists the signed-in user's notes on a pooled read
//!   connection; `GET /audit` shows the audit rows.
//!
//! ```sh
//! curl -c jar -b jar -X POST http://127.0.0.1:3001/login/ada
//! curl -c jar -b jar -X POST http://127.0.0.1:3001/notes/hello
//! curl -c jar -b jar -X POST 'http://127.0.0.1:3001/notes/lost?fail=1'   # 500
//! curl -c jar -b jar http://127.0.0.1:3001/notes                          # hello (last: hello)
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use keycard::cnx::{Cnx, CnxLayer, HookEvent};
use keycard::{Session, SessionLayer, SqliteStore};
use sqlx::Sqlite;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, \
     body TEXT NOT NULL); \
     CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, what TEXT NOT NULL)";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr: SocketAddr = "127.0.0.1:3001".parse()?;
    let mut db = "keycard-notes.db".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value.parse()?,
            ("--db", Some(value)) => db = value,
            _ => {
                return Err(
                    format!("usage: notes [--addr HOST:PORT] [--db FILE]; got {arg:?}").into(),
                );
            }
        }
    }

    // One pool for the sessions and the application's tables, so that the
    // session's writes join the request's transaction.
    let store = SqliteStore::connect(&format!("sqlite://{db}")).await?;
    store.migrate().await?;
    let pool = store.pool().clone();
    sqlx::raw_sql(SCHEMA).execute(&pool).await?;

    let connections = CnxLayer::new(pool).hook("audit", |cnx: Cnx<Sqlite>, event| async move {
        let what = match event {
            HookEvent::Login { user_id, .. } => format!("{user_id} signed in"),
            HookEvent::Logout { user_id, .. } => format!("{user_id} signed out"),
            _ => return Ok(()),
        };
        sqlx::query("INSERT INTO audit (what) VALUES (?)")
            .bind(what)
            .execute(&mut *cnx.write().await?)
            .await?;
        Ok(())
    });

    let app = Router::new()
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/notes", get(list_notes))
        .route("/notes/{text}", post(add_note))
        .route("/audit", get(audit))
        .layer(
            SessionLayer::new(store)
                // plain http://localhost only; remove in production
                .insecure_dev_cookies(),
        )
        // Outside the session layer: the session saves inside the
        // request's transaction, which commits after it.
        .layer(connections);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("notes: listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn login(session: Session, Path(user): Path<String>) -> Result<&'static str, keycard::Error> {
    session.login(user).await?;
    Ok("signed in\n")
}

async fn logout(session: Session) -> Result<&'static str, keycard::Error> {
    session.logout().await?;
    Ok("signed out\n")
}

/// Writes the note and the session's `last_note` in one transaction;
/// `?fail=1` fails afterwards, so that both roll back.
async fn add_note(
    session: Session,
    cnx: Cnx<Sqlite>,
    Path(text): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<(StatusCode, String), keycard::Error> {
    let Some(user) = session.user_id().await? else {
        return Ok((StatusCode::UNAUTHORIZED, "sign in first\n".into()));
    };
    sqlx::query("INSERT INTO notes (owner, body) VALUES (?, ?)")
        .bind(&user)
        .bind(&text)
        .execute(&mut *cnx.write().await?)
        .await?;
    session.insert("last_note", &text).await?;
    if query.contains_key("fail") {
        return Ok((
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed on purpose: nothing was kept\n".into(),
        ));
    }
    Ok((StatusCode::OK, format!("noted {text:?}\n")))
}

async fn list_notes(
    session: Session,
    cnx: Cnx<Sqlite>,
) -> Result<(StatusCode, String), keycard::Error> {
    let Some(user) = session.user_id().await? else {
        return Ok((StatusCode::UNAUTHORIZED, "sign in first\n".into()));
    };
    // Read mode: a pooled connection, back in the pool after the query.
    let notes: Vec<String> =
        sqlx::query_scalar("SELECT body FROM notes WHERE owner = ? ORDER BY id")
            .bind(&user)
            .fetch_all(&mut *cnx.read().await?)
            .await?;
    let last: Option<String> = session.get("last_note").await?;
    Ok((
        StatusCode::OK,
        format!(
            "{} (last: {})\n",
            notes.join(", "),
            last.unwrap_or_default()
        ),
    ))
}

async fn audit(cnx: Cnx<Sqlite>) -> Result<String, keycard::Error> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT what FROM audit ORDER BY id")
        .fetch_all(&mut *cnx.read().await?)
        .await?;
    Ok(rows.join("\n") + "\n")
}
