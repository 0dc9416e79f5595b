//! An application that keeps its own users table: keycard checks passwords
//! against it (an [`Authenticator`]), keeps the sessions, and hands
//! handlers the application's own `User` ([`UserLoader`], [`SignedIn`]).
//!
//! ```sh
//! cargo run --example own_users        # http://127.0.0.1:3002, in memory
//! cargo run --example own_users -- --addr 127.0.0.1:0 --db /tmp/own.db
//! ```
//!
//! Sign in with `ada@example.com` and `correct horse battery staple` in a
//! browser, or send the same as HTTP Basic:
//!
//! ```sh
//! curl -u 'ada@example.com:correct horse battery staple' http://127.0.0.1:3002/me
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use async_trait::async_trait;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use keycard::auth::{
    AuthLayer, Authenticated, AuthenticationError, Authenticator, BasicAuth, Credentials, SignedIn,
    UserLoader, method,
};
use keycard::{BoxError, Login, Session, SessionLayer, SqliteStore};
use sqlx::SqlitePool;

/// The application's users, as it had them before keycard.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS app_users (id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, \
     name TEXT NOT NULL, password_hash TEXT NOT NULL)";

/// The application's user: what its handlers work with.
#[derive(Clone, Debug)]
struct User {
    id: i64,
    email: String,
    name: String,
}

/// The `app_users` table, for keycard: it checks passwords (as an
/// [`Authenticator`]) and loads users by id (as a [`UserLoader`]). keycard's
/// user id is the row's `id`, as text.
#[derive(Clone, Debug)]
struct AppUsers {
    pool: SqlitePool,
    /// Checked when the e-mail is unknown, so that the answer takes as long
    /// as for a wrong password and does not tell who has an account.
    dummy_hash: Arc<str>,
}

impl AppUsers {
    /// The user id for this e-mail and password.
    async fn verify(&self, email: &str, password: &str) -> Result<String, AuthenticationError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT id, password_hash FROM app_users WHERE email = ?")
                .bind(email.trim().to_lowercase())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| AuthenticationError::Unavailable(e.to_string()))?;
        let hash = row
            .as_ref()
            .map_or(&*self.dummy_hash, |(_, hash)| hash.as_str());
        let matches = check_password(hash.to_owned(), password.to_owned()).await;
        match row {
            Some((id, _)) if matches => Ok(id.to_string()),
            _ => Err(AuthenticationError::Rejected),
        }
    }
}

/// HTTP Basic through [`AuthLayer`]: the same check as the form's.
#[async_trait]
impl Authenticator for AppUsers {
    async fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> Result<Authenticated, AuthenticationError> {
        let Credentials::Password { login, password } = credentials else {
            return Err(AuthenticationError::NotMine);
        };
        Ok(Authenticated::new(self.verify(login, password).await?))
    }
}

#[async_trait]
impl UserLoader for AppUsers {
    type User = User;

    async fn load_user(&self, id: &str) -> Result<Option<User>, BoxError> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT email, name FROM app_users WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(email, name)| User { id, email, name }))
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut addr: SocketAddr = "127.0.0.1:3002".parse()?;
    let mut db = "sqlite::memory:".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value.parse()?,
            ("--db", Some(file)) => db = format!("sqlite://{file}"),
            _ => {
                return Err(format!(
                    "usage: own_users [--addr HOST:PORT] [--db FILE]; got {arg:?}"
                )
                .into());
            }
        }
    }

    // keycard's sessions and the application's table in one database.
    let store = SqliteStore::connect(&db).await?;
    store.migrate().await?;
    let pool = store.pool().clone();
    sqlx::query(SCHEMA).execute(&pool).await?;
    sqlx::query("INSERT OR IGNORE INTO app_users (email, name, password_hash) VALUES (?, ?, ?)")
        .bind("ada@example.com")
        .bind("Ada Lovelace")
        .bind(hash_password("correct horse battery staple")?)
        .execute(&pool)
        .await?;
    let users = AppUsers {
        pool,
        dummy_hash: hash_password("no one's password")?.into(),
    };

    // The auth layer checks HTTP Basic against the same table, and carries
    // the loader that `SignedIn<User>` uses.
    let auth = AuthLayer::new()
        .retriever(BasicAuth)
        .authenticator(users.clone())
        .users(users.clone())
        .login_url("/");
    // Plain http on localhost, where browsers refuse `Secure` and `__Host-`
    // cookies: never use `insecure_dev_cookies` behind a real domain. The
    // layer refuses cross-origin POSTs; `examples/demo/` adds
    // synchronizer tokens to its forms too.
    let sessions = SessionLayer::new(store).insecure_dev_cookies();
    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .with_state(users)
        .layer(sessions.with_auth(auth));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("own_users: listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// `GET /`: the signed-in user's page, or the sign-in form.
async fn home(user: Option<SignedIn<User>>) -> Html<String> {
    Html(match user {
        Some(SignedIn(user)) => format!(
            "<h1>Hello, {}</h1><p>Signed in as {}.</p>\
             <form method=post action=/logout><button>Sign out</button></form>",
            escape(&user.name),
            escape(&user.email),
        ),
        None => sign_in_form(""),
    })
}

/// `GET /me`: the application's user, for API clients and browsers alike
/// (anonymous browsers are sent to `/`, API clients get a `401`).
async fn me(SignedIn(user): SignedIn<User>) -> String {
    format!("{} {} {}\n", user.id, user.email, user.name)
}

#[derive(serde::Deserialize)]
struct SignInForm {
    email: String,
    password: String,
}

/// `POST /login`: checks the password against `app_users` and signs in.
async fn login(
    State(users): State<AppUsers>,
    session: Session,
    Form(form): Form<SignInForm>,
) -> Result<Response, keycard::Error> {
    match users.verify(&form.email, &form.password).await {
        Ok(user_id) => {
            // A fresh session token, recording how they signed in.
            session
                .login_with(Login::new(user_id).method(method::PASSWORD))
                .await?;
            Ok(Redirect::to("/").into_response())
        }
        Err(AuthenticationError::Unavailable(reason)) => {
            tracing::error!(%reason, "own_users: the users table is unavailable");
            Ok((StatusCode::SERVICE_UNAVAILABLE, "Please try again later.\n").into_response())
        }
        Err(_) => Ok((
            StatusCode::UNAUTHORIZED,
            Html(sign_in_form("Wrong e-mail or password.")),
        )
            .into_response()),
    }
}

/// `POST /logout`: ends the session.
async fn logout(session: Session) -> Result<Redirect, keycard::Error> {
    session.logout().await?;
    Ok(Redirect::to("/"))
}

fn sign_in_form(message: &str) -> String {
    format!(
        "<h1>Sign in</h1><p>{message}</p><form method=post action=/login>\
         <input name=email type=email placeholder=e-mail value=ada@example.com> \
         <input name=password type=password placeholder=password> \
         <button>Sign in</button></form>"
    )
}

/// `text`, safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An argon2id PHC string for `password`, with a random salt.
fn hash_password(password: &str) -> Result<String, BoxError> {
    let mut salt = [0u8; 16];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| e.to_string())?;
    Ok(hash.to_string())
}

/// Whether `password` matches `hash`: argon2 is slow on purpose, so it runs
/// on the blocking pool, not on the request's thread.
async fn check_password(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}
