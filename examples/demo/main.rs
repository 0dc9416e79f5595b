//! # keycard demo
//!
//! A small but complete web app showing what keycard does: server-side
//! sessions stored in an SQLite file, handed to axum handlers as a
//! [`keycard::Session`], password sign-in with [`PasswordAuthenticator`],
//! forms protected against cross-site request forgery, and API clients
//! signing in with HTTP Basic or bearer [`ApiTokens`] through [`AuthLayer`].
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
//! Every page has the same header: the site's name and **Sign in** for
//! an anonymous visitor; signed in, "signed in as ada · Sessions · Tokens
//! · Two-step · Sign out" (sign-out being a small `POST /logout` form with
//! the synchronizer token). Every page that needs a user sends an
//! anonymous browser (`303`) to the sign-in form on the home page with
//! `?next=` the page (a path on this site), and signing in goes back
//! there. Every `POST` that changes something answers `303`, so a reload
//! repeats nothing; a secret shown once (a new API token, recovery codes)
//! crosses the redirect in the session and is removed as it is shown. The
//! buttons that destroy something (ending a session or all the others,
//! revoking a token or a remembered browser, new recovery codes, turning
//! two-step sign-in off) ask first with a script's `confirm`; the forms
//! work the same without scripts.
//!
//! The home page shows your session as the server sees it (the signed-in
//! user or "anonymous", the session's id, when it was created and last used,
//! and a visit counter) and offers these forms (the sign-in ones to
//! anonymous visitors only):
//!
//! * **count a visit** (`POST /visit`): bumps the counter with
//!   [`Session::update`], an atomic read-modify-write;
//! * **sign in** (`POST /login`, user name and password): checked by
//!   [`PasswordAuthenticator::verify`]; on success
//!   [`Session::login_with`] gives the session a fresh token and new
//!   cookies, and records how the user signed in
//!   ([`method::PASSWORD`]). Unknown user, wrong password, locked account:
//!   one and the same `401` page, so the page does not tell which accounts
//!   exist (ten failures lock an account for ten minutes). With **remember
//!   me on this device** ticked (`remember=on`), the browser is remembered
//!   too (see "Remember me" below). For an account with two-step sign-in
//!   the password is only the first step: see "Two-step sign-in" below;
//! * **email me a sign-in link** (`POST /login/link`, a user name): makes
//!   a single-use link with [`OneTimeTokens::mint`], working for fifteen
//!   minutes, and "mails" it: this demo has no mail server, so it prints
//!   `demo e-mail to ada: sign-in link http://…/login/link?token=…` on
//!   standard output, then goes on (`303`) to `GET /login/link/sent`: the
//!   same answer whether the account exists or not, and a reload sends no
//!   second mail. Opening the link (`GET /login/link?token=…`) uses nothing
//!   (mail scanners load links): its page has a button, **sign in as the
//!   link's owner** (`POST /login/link/redeem`), which uses the link once
//!   with [`OneTimeTokens::sign_in`] (method [`method::LINK`], a fresh
//!   token). A used or expired link, or one older than the owner's last
//!   password change, answers `400`. For an owner with two-step sign-in,
//!   the link is the first step: the code comes next, as after a password;
//! * **sign out** (`POST /logout`): [`Session::logout`], which deletes the
//!   session row and expires the cookies. The answer also carries
//!   `Clear-Site-Data: "cache"`, so the browser forgets its copies of the
//!   signed-in pages.
//!
//! Signed in, **your sessions** (`GET /sessions`) lists every active session
//! of the user, on every browser and device, from
//! [`Session::user_sessions`], browsers and API clients (HTTP Basic) in
//! separate tables: the device ("Firefox on Linux", from the
//! `User-Agent`), how the user signed in, when (relative, "5 minutes ago",
//! with the exact time as the tooltip) and when it was last used, the
//! address it came from, and which one is this device. From there you can
//!
//! * **sign out that device** (`POST /sessions/{id}/end`):
//!   [`Session::end_user_session`], which ends one session of yours at once;
//! * **sign out everywhere else** (`POST /sessions/end-others`):
//!   [`Session::end_other_sessions`], after a recent sign-in (see
//!   "Confirming it's you" below);
//! * **change your password** (`POST /account/password`, the current one
//!   and a new one): [`PasswordAuthenticator::change_password`], which
//!   keeps this session (with a fresh token) and ends every other one;
//! * **sign out this device**: the same `POST /logout` as above;
//! * see the **remembered browsers** and **revoke** one
//!   (`POST /remembered/{id}/revoke`), or **forget this browser**
//!   (`POST /remembered/forget`): see "Remember me" below.
//!
//! Signed in, **API tokens** (`GET /tokens`) lists your bearer tokens (name,
//! when created, when last used; never the secret, which is not kept),
//! creates one (`POST /tokens`, which redirects back to the page; the new
//! secret waits in your session until that page shows it, once, and is
//! removed from the session as it is shown) and revokes them
//! (`POST /tokens/{id}/revoke`: from the next request on, the token signs
//! nobody in). A request signed in with a token cannot create or revoke
//! tokens, nor end sessions or change the password. The page's `curl`
//! example names the site as the browser reached it (its `Host`) and,
//! while it is shown, the new token.
//!
//! ## Confirming it's you
//!
//! Creating an API token and signing out everywhere else need a **recent
//! sign-in** ([`RequireRecentAuth`], "sudo mode"): one within the last
//! `--sudo-seconds` (default 600, ten minutes), so that somebody who got
//! hold of an old session cookie cannot mint a token or throw the owner
//! out. When the sign-in is older, the browser is sent (`303`) to
//! **confirm it's you** (`GET /confirm?next=/tokens`, resp.
//! `next=/sessions`), which asks for the password again; `POST /confirm`
//! checks it with [`PasswordAuthenticator::confirm`] (a wrong one: `401`,
//! counted toward the lockout), which makes the sign-in recent again and
//! gives the session a fresh token, and goes back to `next` (a path on
//! this site, or home). API clients get a `403` instead of the redirect.
//!
//! ## Remember me
//!
//! Ticking "remember me on this device" at sign-in calls
//! [`Remember::this_device`] after [`Session::login_with`]: the answer sets
//! a second cookie, `keycard-remember` (HttpOnly; `__Host-keycard-remember`
//! with secure cookies), for `--remember-days` (default 30, counted from
//! the sign-in, not extended by use). It holds a random series and token;
//! the server keeps only their hashes ([`RememberMe`]).
//!
//! A browser that brings that cookie but no live session (it was closed,
//! the session timed out) is signed back in when its session is first
//! used: a fresh session, method [`method::REMEMBERED`] (`remember`,
//! shown on the home page and the sessions page), and a new token in the
//! cookie. Requests of the same burst that bring the token just replaced
//! (within `--remember-grace-seconds`, default 20) are signed in for
//! themselves only. An old token used after that means the cookie was
//! copied: every session and remembered browser of the user ends.
//!
//! Such a sign-in never counts as recent: creating an API token or
//! signing out everywhere else confirms the password first, which turns
//! the method into `password`.
//!
//! The sessions page lists the user's **remembered browsers**
//! ([`Remember::devices`]: the browser, when it was remembered, last used,
//! when it expires, and which one is this browser), with a form to
//! **revoke** each ([`Remember::revoke`], which also signs out the
//! sessions it opened) and, on a remembered browser, to **forget this
//! browser** ([`Remember::forget_this_device`]; it stays signed in until
//! it is closed). Signing out on a remembered browser forgets it; signing
//! out a device from the sessions page, signing out everywhere else and
//! changing the password forget the browsers concerned.
//!
//! ## Two-step sign-in
//!
//! Signed in, **two-step sign-in** (`GET /security/totp`, which needs a
//! recent sign-in like creating a token: an older one confirms the
//! password first) sets up a second factor with [`SecondFactor`]: TOTP
//! codes from an authenticator app, and recovery codes.
//!
//! * **Set up** (`POST /security/totp/setup`): [`SecondFactor::enrol_totp`]
//!   makes a secret; the page shows it as text (in groups of four), as an
//!   `otpauth://` URI and, built with the `qr` feature, as a QR code
//!   (an `<img>` with a `data:` URL). The enrolment waits in the session
//!   until the first code confirms it (`POST /security/totp/confirm`,
//!   [`SecondFactor::confirm_totp`]); then the page shows the ten
//!   **recovery codes**, once (they cross the redirect in the session, like
//!   a new API token's secret, and are removed as they are shown).
//! * Once it is on, the page says how many recovery codes are left, makes
//!   **new recovery codes** (`POST /security/totp/recovery-codes`) and
//!   **turns it off** (`POST /security/totp/remove`), both after the
//!   password (a wrong one counts toward the lockout).
//!
//! Signing in to such an account: the right password (or a sign-in link)
//! leaves the session **half-open** ([`SecondFactor::sign_in`]): anonymous
//! to every page, with a fresh token, and the browser goes to **enter your
//! code** (`GET /login/code`). `POST /login/code` takes the app's 6-digit
//! code or a recovery code (`xxxx-xxxx-xxxx`; each works once), and signs
//! in with a fresh token (method `totp` or `recovery-code`). Each TOTP
//! code works once too. A wrong code shows the form again (`403`) and
//! counts toward the account's lockout, like a wrong password. The
//! half-open sign-in waits `--code-seconds` (default 300, five minutes);
//! after that the page says it expired, and the password comes first
//! again. "Remember me" and the page to go back to wait in the half-open
//! session: the browser is only remembered once the code is in.
//!
//! HTTP Basic is refused for an account with two-step sign-in (it cannot
//! carry a code): its API clients use bearer tokens.
//!
//! ## Forged requests
//!
//! Every form posts back to this site, and a page of another site cannot
//! post them in your name:
//!
//! * [`SessionLayer`] refuses (`403`, before any handler or session work)
//!   every `POST` that the browser marks as coming from another origin
//!   (`Sec-Fetch-Site`, or else `Origin`): another site, but also another
//!   port or subdomain of this host, which `SameSite` cookies do not tell
//!   apart. That also stops a forged sign-in into the attacker's account.
//! * Each form carries the session's synchronizer token
//!   ([`Session::csrf_token`], in the hidden field [`csrf::FORM_FIELD`]),
//!   and each `POST` handler reads its form with [`CsrfForm`], which
//!   answers `403` when the token is missing or of another session. The
//!   token changes at sign-in and sign-out, so a page loaded before signing
//!   in cannot post after it.
//!
//! Signed-in pages carry `Cache-Control: no-store` and `Vary: Cookie` (the
//! session layer adds them), so no cache keeps a copy of them.
//!
//! ## API
//!
//! * `GET /api/whoami`: `USER METHOD api|human` as plain text, or `401` with
//!   `WWW-Authenticate: Basic` and `Bearer` challenges;
//! * `POST /api/visit`: counts a visit in the session and answers the new
//!   count.
//!
//! API clients authenticate in two ways:
//!
//! * `Authorization: Bearer kc_…` (an API token) signs the request in **for
//!   that request only** ([`BearerAuth`]): the handler sees the token's
//!   owner, but no session row is written and no cookie is set, so a
//!   thousand calls leave no trace in the sessions table. Such a request
//!   has no session to change: `POST /api/visit` with a bearer token
//!   answers `400` ([`keycard::Error::RequestOnly`]).
//! * `Authorization: Basic …` (a demo user's name and password) gets a
//!   **stored** API session with cookies ([`StoredSession`]`(`[`BasicAuth`]`)`):
//!   the client sends its credentials and keeps the cookies, and its visit
//!   counter counts on. A cookie of somebody else's session is ended and a
//!   fresh session started, within the same request. Not for an account
//!   with two-step sign-in, whose password alone signs nobody in: `401`,
//!   as for a wrong password (use a bearer token).
//!
//! ```text
//! curl -i -u ada:PASSWORD http://127.0.0.1:3000/api/whoami
//! curl -i -H 'Authorization: Bearer kc_…' http://127.0.0.1:3000/api/whoami
//! cargo run --example api_client -- --url http://127.0.0.1:3000 --user ada --password PASSWORD
//! ```
//!
//! (`curl` and other API clients send neither `Sec-Fetch-Site` nor
//! `Origin`, so the cross-origin refusal does not concern them.)
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
//! cargo run --example demo -- --sudo-seconds 30   # confirm the password more often
//! cargo run --example demo -- --remember-days 1   # "remember me" for a day
//! cargo run --example demo -- --code-seconds 60   # a minute to enter the code
//! RUST_LOG=keycard=debug cargo run --example demo
//! ```
//!
//! Standard output carries the credentials, the address (`listening on
//! http://…`, also with `--addr 127.0.0.1:0`) and the sign-in links'
//! "e-mails"; logs go to standard error.
//! Sessions, accounts and tokens live in `keycard-demo.db` (in the current
//! directory) unless `--db` says otherwise; the tables are created on first
//! start. The `admin` example counts, lists, ends and purges sessions from
//! the command line: `cargo run --example admin -- list NAME`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use keycard::auth::{
    AccountError, ApiTokens, AuthLayer, AuthRejection, AuthUser, AuthenticationError, BasicAuth,
    BearerAuth, CurrentUser, Factor, OneTimeTokens, PasswordAuthenticator, Remember, RememberMe,
    RememberedBrowser, RequireRecentAuth, SecondFactor, SignInStep, StoredSession, method,
    one_time,
};
use keycard::csrf::{self, CsrfForm, CsrfRejection};
use keycard::store::ApiTokenRecord;
use keycard::token::SessionToken;
use keycard::{Session, SessionId, SessionInfo, SessionLayer, SqliteStore};
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

#[cfg(feature = "passkeys")]
mod passkeys;

const DEFAULT_ADDR: &str = "127.0.0.1:3000";
const DEFAULT_DB: &str = "keycard-demo.db";

/// How long, by default, a sign-in (or its last confirmation) counts as
/// recent for the actions that need one (`--sudo-seconds`).
const DEFAULT_SUDO_SECONDS: u64 = 600;

/// How many days, by default, a browser stays remembered after its user
/// ticked "remember me" (`--remember-days`), and the most allowed.
const DEFAULT_REMEMBER_DAYS: u64 = 30;
const MAX_REMEMBER_DAYS: u64 = 3650;

/// How many seconds, by default, the remember-me token a restore just
/// replaced still signs in the other requests of the same burst
/// (`--remember-grace-seconds`), and the most allowed.
const DEFAULT_REMEMBER_GRACE_SECONDS: u64 = 20;
const MAX_REMEMBER_GRACE_SECONDS: u64 = 3600;

/// How many seconds, by default, a sign-in whose password was right waits
/// for its second factor's code (`--code-seconds`), and the most allowed.
const DEFAULT_CODE_SECONDS: u64 = 5 * 60;
const MAX_CODE_SECONDS: u64 = 3600;

/// The page that asks a half-open sign-in for its code.
const CODE_URL: &str = "/login/code";

/// The two-step sign-in page of a signed-in user.
const TOTP_URL: &str = "/security/totp";

/// The name authenticator apps show beside the account.
const ISSUER: &str = "keycard demo";

/// The site's name, in every page's header and title.
const SITE_NAME: &str = "keycard demo";

/// The page that asks a signed-in user for their password again.
const CONFIRM_URL: &str = "/confirm";

/// The accounts created on first start, each with a random password.
const DEMO_USERS: [&str; 2] = ["ada", "grace"];

/// How many characters of a fresh random token make a demo password (16
/// characters of base64url: 96 bits).
const PASSWORD_CHARS: usize = 16;

const USAGE: &str = "\
usage: cargo run --example demo -- [--addr HOST:PORT] [--db PATH] [--sudo-seconds N]
                                   [--remember-days N] [--remember-grace-seconds N]
                                   [--code-seconds N]

  --addr HOST:PORT             address to listen on (default: 127.0.0.1:3000; port 0: any
                               free port)
  --db PATH                    SQLite file holding sessions, accounts and tokens (default:
                               keycard-demo.db)
  --sudo-seconds N             how long a sign-in counts as recent for creating API tokens and
                               signing out everywhere else; older ones confirm the password
                               first (default: 600)
  --remember-days N            how long \"remember me on this device\" keeps a browser signed
                               in, 1 to 3650 days from the sign-in (default: 30)
  --remember-grace-seconds N   how long the remember-me token a restore just replaced still
                               signs in the browser's other requests of the same burst, 0 to
                               3600; a copied cookie used after that signs everybody out
                               (default: 20)
  --code-seconds N             how long a sign-in whose password was right waits for the code
                               of an account with two-step sign-in, 1 to 3600 (default: 300)
  -h, --help                   print this message";

/// What the command line asked for.
struct Options {
    addr: SocketAddr,
    db: String,
    /// How long a sign-in counts as recent ("sudo mode").
    sudo: Duration,
    /// How long a browser stays remembered.
    remember_lifetime: Duration,
    /// How long a just-replaced remember-me token still signs in.
    remember_grace: Duration,
    /// How long a half-open sign-in waits for its code.
    code_wait: Duration,
}

/// Why the command line was refused, or a request for help.
enum ArgsError {
    Help,
    Bad(String),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, ArgsError> {
    let mut addr: Option<SocketAddr> = None;
    let mut db: Option<String> = None;
    let mut sudo_seconds: Option<u64> = None;
    let mut remember_days: Option<u64> = None;
    let mut remember_grace: Option<u64> = None;
    let mut code_seconds: Option<u64> = None;
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
            "--sudo-seconds" => {
                let value = args.next().ok_or_else(|| {
                    ArgsError::Bad("--sudo-seconds needs a value (a number of seconds)".into())
                })?;
                let parsed = value
                    .parse::<u64>()
                    .ok()
                    .filter(|seconds| *seconds > 0)
                    .ok_or_else(|| {
                        ArgsError::Bad(format!(
                            "--sudo-seconds: {value:?} is not a positive whole number of seconds"
                        ))
                    })?;
                sudo_seconds = Some(parsed);
            }
            "--remember-days" => {
                let value = args.next().ok_or_else(|| {
                    ArgsError::Bad("--remember-days needs a value (a number of days)".into())
                })?;
                let parsed = value
                    .parse::<u64>()
                    .ok()
                    .filter(|days| (1..=MAX_REMEMBER_DAYS).contains(days))
                    .ok_or_else(|| {
                        ArgsError::Bad(format!(
                            "--remember-days: {value:?} is not a whole number of days from 1 to \
                             {MAX_REMEMBER_DAYS}"
                        ))
                    })?;
                remember_days = Some(parsed);
            }
            "--remember-grace-seconds" => {
                let value = args.next().ok_or_else(|| {
                    ArgsError::Bad(
                        "--remember-grace-seconds needs a value (a number of seconds)".into(),
                    )
                })?;
                let parsed = value
                    .parse::<u64>()
                    .ok()
                    .filter(|seconds| *seconds <= MAX_REMEMBER_GRACE_SECONDS)
                    .ok_or_else(|| {
                        ArgsError::Bad(format!(
                            "--remember-grace-seconds: {value:?} is not a whole number of \
                             seconds from 0 to {MAX_REMEMBER_GRACE_SECONDS}"
                        ))
                    })?;
                remember_grace = Some(parsed);
            }
            "--code-seconds" => {
                let value = args.next().ok_or_else(|| {
                    ArgsError::Bad("--code-seconds needs a value (a number of seconds)".into())
                })?;
                let parsed = value
                    .parse::<u64>()
                    .ok()
                    .filter(|seconds| (1..=MAX_CODE_SECONDS).contains(seconds))
                    .ok_or_else(|| {
                        ArgsError::Bad(format!(
                            "--code-seconds: {value:?} is not a whole number of seconds from 1 \
                             to {MAX_CODE_SECONDS}"
                        ))
                    })?;
                code_seconds = Some(parsed);
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
        sudo: Duration::from_secs(sudo_seconds.unwrap_or(DEFAULT_SUDO_SECONDS)),
        remember_lifetime: Duration::from_secs(
            remember_days.unwrap_or(DEFAULT_REMEMBER_DAYS) * 24 * 60 * 60,
        ),
        remember_grace: Duration::from_secs(
            remember_grace.unwrap_or(DEFAULT_REMEMBER_GRACE_SECONDS),
        ),
        code_wait: Duration::from_secs(code_seconds.unwrap_or(DEFAULT_CODE_SECONDS)),
    })
}

/// What the handlers share: the accounts, the API tokens, the sign-in
/// links, how long a sign-in counts as recent (for the pages that say so),
/// and the address the demo listens on (for the links it "mails").
#[derive(Clone)]
struct App {
    passwords: PasswordAuthenticator,
    tokens: ApiTokens,
    links: OneTimeTokens,
    /// Two-step sign-in: TOTP codes and recovery codes after the password.
    second: SecondFactor,
    sudo: Duration,
    /// `http://HOST:PORT`, as the demo listens.
    base: String,
    /// The name of the remember-me cookie (`keycard-remember` with the
    /// demo's development cookies).
    remember_cookie: String,
    /// Passkeys, for the demo's users on `http://localhost:PORT`.
    #[cfg(feature = "passkeys")]
    passkeys: keycard::auth::Passkeys,
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
    // Standard output carries the credentials, the address and the
    // sign-in links' "e-mails", which scripts and tests read.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let store = SqliteStore::connect(&format!("sqlite://{}", options.db)).await?;
    store.migrate().await?;

    // The session layer first, configured: the accounts and the tokens end
    // sessions through its `admin()` (a password change, a revoked token),
    // with its store, timeouts and clock.
    //
    // This demo is served over plain http on localhost, where browsers
    // refuse `Secure` and `__Host-` cookies; `insecure_dev_cookies` drops
    // both. Never use it behind a real domain: serve HTTPS and leave the
    // secure defaults on. The layer also refuses cross-origin POSTs (its
    // default), and a sign-out tells the browser to drop its cached pages.
    let sessions = SessionLayer::new(store.clone())
        .insecure_dev_cookies()
        .clear_site_data_on_logout(true);
    let passwords = PasswordAuthenticator::new(store.clone(), sessions.admin());
    let tokens = ApiTokens::new(store.clone(), sessions.admin());
    // Sign-in links ("magic links"): single-use, bound to the account's
    // password (a change kills every outstanding link).
    let links = OneTimeTokens::new(store.clone(), passwords.clone());
    // Two-step sign-in: an account that set up an authenticator app signs
    // in with its password, then a code (or a recovery code). In between
    // the session is "half-open": anonymous to every page, waiting
    // `--code-seconds` for the code.
    let second = SecondFactor::new(passwords.clone())
        .issuer(ISSUER)
        .pending_for(options.code_wait);
    // "Remember me on this device": a revocable, rotating token in a second
    // cookie signs the browser back in after a restart. Sign-out, "sign
    // out everywhere else", ending a session and a password change end it.
    let remember = RememberMe::new(store, sessions.admin())
        .lifetime(options.remember_lifetime)
        .grace_window(options.remember_grace);
    let remember_cookie = sessions.config().remember_cookie_name().to_owned();
    println!(
        "keycard demo: sessions, accounts and API tokens in {}",
        options.db
    );
    create_demo_users(&passwords).await?;

    // API clients send HTTP Basic or a bearer token with each request; the
    // auth layer checks them. A bearer request is signed in for that
    // request only (no row, no cookie); HTTP Basic gets a stored API
    // session with cookies, which the client keeps. The auth layer goes
    // inside the session layer (added before it).
    //
    // Creating an API token and signing out every other device need a
    // recent sign-in ("sudo mode", `RequireRecentAuth`): one within
    // `--sudo-seconds`, or confirmed since on the confirmation page.
    let auth = AuthLayer::new()
        .retriever(StoredSession(BasicAuth))
        .retriever(BearerAuth)
        .authenticator(passwords.clone())
        .authenticator(tokens.clone())
        .login_url("/")
        .confirm_url(CONFIRM_URL)
        .recent_auth_within(options.sudo)
        .remember(remember);

    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    let local = listener.local_addr()?;
    // Passkeys need a domain for the relying party, never an IP address:
    // the demo offers them on `localhost`, at the port it listens on.
    #[cfg(feature = "passkeys")]
    let passkeys = {
        let origin = format!("http://localhost:{}", local.port());
        let config = keycard::auth::PasskeyConfig::new("localhost", &origin).name(SITE_NAME);
        println!("keycard demo: passkeys work on {origin}");
        keycard::auth::Passkeys::new(second.clone(), config)?
    };

    // Every POST handler reads its form with `CsrfForm`, which checks the
    // session's synchronizer token that every form carries; cross-origin
    // POSTs do not even get that far (the session layer refuses them).
    let routes = Router::new()
        .route("/", get(home))
        .route("/visit", post(visit))
        .route("/login", post(login))
        .route("/login/link", get(link_page).post(request_link))
        .route(LINK_SENT_URL, get(link_sent))
        .route("/login/link/redeem", post(redeem_link))
        .route(CODE_URL, get(code_page).post(submit_code))
        .route(TOTP_URL, get(totp_page))
        .route("/security/totp/setup", post(totp_setup))
        .route("/security/totp/confirm", post(totp_confirm))
        .route(
            "/security/totp/recovery-codes",
            post(totp_new_recovery_codes),
        )
        .route("/security/totp/remove", post(totp_remove))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions_page))
        .route("/sessions/end-others", post(end_others))
        .route("/sessions/{id}/end", post(end_one))
        .route("/remembered/forget", post(forget_this_browser))
        .route("/remembered/{id}/revoke", post(revoke_remembered))
        .route("/account/password", post(change_password))
        .route(CONFIRM_URL, get(confirm_page).post(confirm))
        .route("/tokens", get(tokens_page).post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/api/whoami", get(api_whoami))
        .route("/api/visit", post(api_visit));
    #[cfg(feature = "passkeys")]
    let routes = routes.merge(passkeys::routes());
    let app = routes
        .with_state(App {
            passwords,
            tokens,
            links,
            second,
            sudo: options.sudo,
            base: format!("http://{local}"),
            remember_cookie,
            #[cfg(feature = "passkeys")]
            passkeys,
        })
        // Inside the auth layer: the header it adds to every page sees the
        // user the request ends with.
        .layer(axum::middleware::from_fn(layout))
        .layer(auth)
        .layer(sessions);
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
    /// Where to go after signing in: set by [`CurrentUser`] when it sends a
    /// browser here from a page that needs a user.
    next: Option<String>,
}

/// The hidden field carrying the session's synchronizer token, for every
/// form of the page. Asking for it stores nothing. Empty for a request
/// signed in by its own credentials (a bearer token), which has no cookie
/// that a forged form could ride on.
async fn csrf_field(session: &Session) -> Result<String, keycard::Error> {
    Ok(session
        .csrf_token()
        .await?
        .map(|token| {
            format!(
                r#"<input type="hidden" name="{}" value="{}">"#,
                csrf::FORM_FIELD,
                escape(token.as_str())
            )
        })
        .unwrap_or_default())
}

/// A form with no fields of its own: only the synchronizer token, which
/// [`CsrfForm`] checks (serde skips it here).
#[derive(Deserialize)]
struct NoFields {}

/// The page for a form that [`CsrfForm`] refused: `403` when the token is
/// missing or not this session's (a page from before a sign-in, another
/// session's, or a forgery), `400` when the body is not a form.
fn form_refused(rejection: CsrfRejection, back: &str) -> Response {
    match rejection {
        CsrfRejection::TokenMismatch => error_page(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form has expired or did not come from this site. Go back, reload the page \
             and try again.",
            back,
        ),
        CsrfRejection::NotAForm | CsrfRejection::InvalidForm(_) => error_page(
            StatusCode::BAD_REQUEST,
            "Bad form",
            "The form could not be read.",
            back,
        ),
        // A missing layer, the store, an unreadable body: their own answer.
        other => other.into_response(),
    }
}

/// The `403` page for a request signed in by its own credentials (a bearer
/// token) that tries what only a signed-in browser may.
fn browsers_only() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Not with an API credential",
        "A request signed in by its own credentials cannot end sessions or change the \
         password: sign in with your password in a browser.",
        "/",
    )
}

/// `GET /`: the session as the server sees it, and the forms.
async fn home(
    State(app): State<App>,
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
    let csrf = csrf_field(&session).await?;

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
    let waiting = if half_open(&app, &session).await? {
        format!(
            "<p class=\"flash\">A sign-in waits for its code: <a href=\"{}\">enter the code</a>.</p>\n",
            escape(CODE_URL)
        )
    } else {
        String::new()
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
        format!(
            r#"<div class="cards">
<div class="card"><h2><a href="/sessions">Your sessions</a></h2><p>Every browser and device you are signed in on; sign out the ones you do not recognise.</p></div>
<div class="card"><h2><a href="/tokens">API tokens</a></h2><p>For scripts and API clients (<code>Authorization: Bearer</code>).</p></div>
<div class="card"><h2><a href="{totp}">Two-step sign-in</a></h2><p>A code from an authenticator app after the password.</p></div>
{passkeys}</div>"#,
            totp = escape(TOTP_URL),
            passkeys = passkeys_card(),
        )
    } else {
        // Only anonymous visitors get the sign-in forms: signed in, the
        // header has the way out.
        format!(
            r#"<h2 id="sign-in">Sign in</h2>
<form method="post" action="/login">{csrf}
<label>User name <input name="name" required maxlength="255" autocomplete="username"></label>
<label>Password <input name="password" type="password" required maxlength="1024" autocomplete="current-password"></label>
<label class="inline"><input type="checkbox" name="remember" value="on"> Remember me on this device</label>
{next_field}<button>Sign in</button>
</form>
{passkey}<h2>No password at hand?</h2>
<form method="post" action="/login/link">{csrf}
<label>User name <input name="name" required maxlength="255" autocomplete="username"></label>
<button class="quiet">Email me a sign-in link</button>
</form>
<p class="note">The demo users are <code>ada</code> and <code>grace</code>; the server printed
their passwords when it created them.</p>"#,
            passkey = passkey_sign_in(next.as_deref()),
        )
    };

    let body = format!(
        r#"<h1>keycard demo</h1>
{please}{waiting}<p>You are {who}.</p>
<table>
<tr><th>Session id</th><td>{id}</td></tr>
<tr><th>Created at</th><td>{created_at}</td></tr>
<tr><th>Last activity</th><td>{last_activity}</td></tr>
<tr><th>Visits</th><td id="visits">{visits}</td></tr>
</table>
<form method="post" action="/visit">{csrf}<button class="quiet">Count a visit</button></form>
{signed_in}"#
    );
    Ok(page(SITE_NAME, &body))
}

/// `POST /visit`: counts a visit, atomically.
async fn visit(
    session: Session,
    form: Result<CsrfForm<NoFields>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    if let Err(rejection) = form {
        return Ok(form_refused(rejection, "/"));
    }
    session
        .update("visits", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(Redirect::to("/").into_response())
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
    /// The "remember me on this device" box: `on` when ticked, missing
    /// when not.
    remember: Option<String>,
}

/// `POST /login`: checks the user name and password and signs in,
/// recording [`method::PASSWORD`] as how the user signed in. With "remember
/// me" ticked the browser is remembered too ([`Remember::this_device`]);
/// unticked, a browser remembered before is forgotten. For an account with
/// two-step sign-in, [`SecondFactor::sign_in`] leaves the session
/// half-open instead and the browser goes on to [`CODE_URL`]; the box and
/// `next` wait in the session until the code comes.
async fn login(
    State(app): State<App>,
    session: Session,
    remember: Remember,
    headers: axum::http::HeaderMap,
    form: Result<CsrfForm<LoginForm>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(CsrfRejection::NotAForm | CsrfRejection::InvalidForm(_)) => {
            return Ok(bad_request("The form could not be read."));
        }
        Err(rejection) => return Ok(form_refused(rejection, "/")),
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
    let remember_ticked = form
        .remember
        .as_deref()
        .is_some_and(|value| !value.is_empty());
    let target = if is_local_path(&form.next) {
        form.next.as_str()
    } else {
        "/"
    };
    // Signs in, unless the account has a second factor: then the session
    // is half-open, anonymous until the code comes.
    match app
        .second
        .sign_in(&session, &user_id, method::PASSWORD)
        .await?
    {
        SignInStep::Done => {
            // After the sign-in: the series is the signed-in user's.
            remember_choice(&remember, &headers, &app, Some(remember_ticked)).await?;
            Ok(Redirect::to(target).into_response())
        }
        SignInStep::SecondFactorDue(_) => {
            // Nobody is signed in yet: "remember me" and where to go wait
            // in the half-open session for the code.
            wait_for_code(&session, Some(remember_ticked), target).await?;
            Ok(Redirect::to(CODE_URL).into_response())
        }
    }
}

/// Acts on the "remember me" box once a sign-in is complete: `Some(true)`
/// remembers this browser, `Some(false)` forgets one remembered before,
/// `None` (a sign-in link, which has no box) leaves it as it is.
async fn remember_choice(
    remember: &Remember,
    headers: &axum::http::HeaderMap,
    app: &App,
    ticked: Option<bool>,
) -> Result<(), keycard::Error> {
    match ticked {
        Some(true) => remember.this_device().await?,
        Some(false) if has_cookie(headers, &app.remember_cookie) => {
            remember.forget_this_device().await?;
        }
        _ => {}
    }
    Ok(())
}

/// Whether the request brought a cookie named `name`.
fn has_cookie(headers: &axum::http::HeaderMap, name: &str) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .any(|pair| {
            pair.trim()
                .split_once('=')
                .is_some_and(|(key, _)| key == name)
        })
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

/// `POST /logout`: ends the session. The session layer adds
/// `Clear-Site-Data: "cache"` (see `clear_site_data_on_logout` in `main`).
async fn logout(
    session: Session,
    form: Result<CsrfForm<NoFields>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    if let Err(rejection) = form {
        return Ok(form_refused(rejection, "/"));
    }
    session.logout().await?;
    Ok(Redirect::to("/").into_response())
}

/// How long a sign-in link works.
const LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The answer to a request for a sign-in link, whoever it names: the page
/// does not tell which accounts exist.
const LINK_ON_ITS_WAY: &str = "If that account exists, a sign-in link is on its way.";

/// Where a request for a sign-in link goes on to (`303`), whoever it
/// named: a reload shows the page again and sends no second mail.
const LINK_SENT_URL: &str = "/login/link/sent";

/// The answer to a sign-in link that cannot sign in.
const LINK_INVALID: &str = "This link is not valid any more.";

#[derive(Deserialize)]
struct LinkRequestForm {
    /// Missing counts as empty, and is refused like it.
    #[serde(default)]
    name: String,
}

/// `POST /login/link`: makes a sign-in link for the account named, working
/// for [`LINK_LIFETIME`], and "e-mails" it (prints it on standard output),
/// then goes on to [`LINK_SENT_URL`]. The answer is the same whether the
/// account exists, is disabled or not: only the account's owner learns
/// anything, from the mail.
async fn request_link(
    State(app): State<App>,
    form: Result<CsrfForm<LinkRequestForm>, CsrfRejection>,
) -> Response {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(rejection) => return form_refused(rejection, "/"),
    };
    if form.name.trim().is_empty() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Cannot send a link",
            "Please enter your user name.",
            "/",
        );
    }
    match app
        .links
        .mint(&form.name, one_time::SIGN_IN, LINK_LIFETIME)
        .await
    {
        Ok(Some(secret)) => {
            // `Some` only for an account, whose name is its canonical form.
            let user = PasswordAuthenticator::canonical_username(&form.name)
                .unwrap_or_else(|| form.name.trim().to_owned());
            send_link_mail(&app.base, &user, &secret);
        }
        Ok(None) => {}
        Err(error) => return error.into_response(),
    }
    Redirect::to(LINK_SENT_URL).into_response()
}

/// `GET /login/link/sent`: the page after asking for a sign-in link, the
/// same for everybody.
async fn link_sent() -> Response {
    let body = format!(
        "<h1>Check your e-mail</h1>\n<p>{}</p>\n<p class=\"note\">The link works once, for {}.</p>\n<p><a href=\"/\">Home</a></p>",
        escape(LINK_ON_ITS_WAY),
        escape(&describe(LINK_LIFETIME)),
    );
    (StatusCode::OK, page("Check your e-mail", &body)).into_response()
}

/// "Sends" the sign-in link to `user`: this demo has no mail server, so it
/// prints the mail's gist on standard output, one line.
fn send_link_mail(base: &str, user: &str, secret: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let sent = writeln!(
        out,
        "demo e-mail to {user}: sign-in link {base}/login/link?token={secret}"
    )
    .and_then(|()| out.flush());
    if let Err(error) = sent {
        tracing::error!(%error, "demo: the sign-in link could not be sent");
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    token: Option<String>,
}

/// `GET /login/link?token=…`: the page a sign-in link opens. It does not
/// use the link (mail scanners and previews load links): it shows a button
/// that posts it to `POST /login/link/redeem`.
async fn link_page(
    session: Session,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Result<Response, keycard::Error> {
    let token = query
        .ok()
        .and_then(|Query(query)| query.token)
        .filter(|token| token.parse::<SessionToken>().is_ok());
    let Some(token) = token else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "Not a sign-in link",
            "This link is incomplete or damaged: open the link from the e-mail again.",
            "/",
        ));
    };
    let csrf = csrf_field(&session).await?;
    let body = format!(
        r#"<h1>Sign in with a link</h1>
<p>This link signs its owner in, once, on this browser.</p>
<form method="post" action="/login/link/redeem">{csrf}
<input type="hidden" name="token" value="{token}">
<button>Sign in as the link's owner</button>
</form>
<p><a href="/">Home</a></p>"#,
        token = escape(&token),
    );
    // The page's address holds the secret: no copy in a cache, and none
    // sent to another site as a referrer.
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page("Sign in with a link", &body),
    )
        .into_response())
}

#[derive(Deserialize)]
struct RedeemForm {
    /// Missing counts as empty, and is refused like it.
    #[serde(default)]
    token: String,
}

/// `POST /login/link/redeem`: uses the sign-in link (once) and signs this
/// browser in as its owner, with a fresh session token, recording
/// [`method::LINK`]. A link that is unknown, used, expired or older than
/// the owner's last password change: `400`. For an owner with two-step
/// sign-in the link is the first step only: the session is half-open and
/// the browser goes on to [`CODE_URL`].
async fn redeem_link(
    State(app): State<App>,
    session: Session,
    form: Result<CsrfForm<RedeemForm>, CsrfRejection>,
) -> Response {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(rejection) => return form_refused(rejection, "/"),
    };
    // Checked first: such a request has no session to sign in, and the
    // link would be used up for nothing.
    if session.is_request_only() {
        return browsers_only();
    }
    match app.links.sign_in(&session, &form.token).await {
        // The owner has two-step sign-in: the link was only the first
        // step, the code comes next. A link has no "remember me" box: a
        // choice left over from an abandoned sign-in must not count.
        Ok(Some(SignInStep::SecondFactorDue(_))) => {
            match wait_for_code(&session, None, "/").await {
                Ok(()) => Redirect::to(CODE_URL).into_response(),
                Err(error) => error.into_response(),
            }
        }
        Ok(Some(_)) => Redirect::to("/").into_response(),
        Ok(None) => error_page(StatusCode::BAD_REQUEST, "Cannot sign in", LINK_INVALID, "/"),
        Err(error) => error.into_response(),
    }
}

/// The half-open session's value holding the "remember me" box of the
/// sign-in until its code comes (none for a sign-in link).
const CODE_REMEMBER: &str = "demo.remember";

/// The half-open session's value holding where to go once the code is in
/// (its presence also tells an expired half-open sign-in from none).
const CODE_NEXT: &str = "demo.next";

/// The most characters the code form reads: longer input is no code.
const MAX_CODE_CHARS: usize = 64;

/// Keeps in the half-open `session`, until its code comes, the sign-in's
/// "remember me" box (`None`: it had none) and where to go next.
async fn wait_for_code(
    session: &Session,
    remember: Option<bool>,
    next: &str,
) -> Result<(), keycard::Error> {
    match remember {
        Some(ticked) => session.insert(CODE_REMEMBER, ticked).await?,
        None => {
            session.remove(CODE_REMEMBER).await?;
        }
    }
    session.insert(CODE_NEXT, next).await?;
    Ok(())
}

/// Whether `session` is a half-open sign-in waiting for its code (and not
/// signed in: a stale half-open sign-in under a later sign-in is ignored).
async fn half_open(app: &App, session: &Session) -> Result<bool, keycard::Error> {
    if session.is_request_only() || session.user_id().await?.is_some() {
        return Ok(false);
    }
    Ok(app.second.pending(session).await?.is_some())
}

/// `GET /login/code`: the form for the second step of a sign-in, a code
/// of the authenticator app or a recovery code. Signed-in browsers are
/// sent home; a half-open sign-in that waited too long says so.
async fn code_page(State(app): State<App>, session: Session) -> Result<Response, keycard::Error> {
    code_form(&app, &session, StatusCode::OK, None).await
}

/// The code form, with `problem` if the last try failed; the expired page
/// if the half-open sign-in is gone, home if there was none.
async fn code_form(
    app: &App,
    session: &Session,
    status: StatusCode,
    problem: Option<&str>,
) -> Result<Response, keycard::Error> {
    if session.is_request_only() {
        return Ok(browsers_only());
    }
    if session.user_id().await?.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    let Some(pending) = app.second.pending(session).await? else {
        return sign_in_expired(session).await;
    };
    let csrf = csrf_field(session).await?;
    let problem = problem
        .map(|problem| format!("<p class=\"error\">{}</p>\n", escape(problem)))
        .unwrap_or_default();
    let ask = if pending.factors.contains(Factor::Totp) {
        "enter the 6-digit code your authenticator app shows now, or one of your recovery codes"
    } else {
        "confirm with your passkey, or enter one of your recovery codes"
    };
    let body = format!(
        r#"<h1>Enter your code</h1>
{problem}<p>The first step was right for <strong>{user}</strong>, who has two-step sign-in:
{ask}.</p>
<form method="post" action="{action}">{csrf}
<label>Code <input name="code" required maxlength="{max}" autocomplete="one-time-code" autofocus></label>
<button>Sign in</button>
</form>
{passkey}
<p class="note">This sign-in waits for the code until {until} ({wait} after the password); after
that, sign in again. Lost your phone? Each recovery code works once, in place of a code.</p>
<p><a href="/">Cancel</a></p>"#,
        user = escape(&pending.user_id),
        passkey = passkey_second_step(&pending),
        action = escape(CODE_URL),
        max = MAX_CODE_CHARS,
        until = escape(&time(pending.expires_at)),
        wait = escape(&describe(
            (pending.expires_at - pending.started_at)
                .to_std()
                .unwrap_or_default()
        )),
    );
    Ok((
        status,
        [(header::CACHE_CONTROL, "no-store")],
        page("Enter your code", &body),
    )
        .into_response())
}

/// The answer when no half-open sign-in waits (any more): if one did, it
/// expired, and the page says so (`401`); otherwise home.
async fn sign_in_expired(session: &Session) -> Result<Response, keycard::Error> {
    let was_waiting = session.remove(CODE_NEXT).await?.is_some();
    session.remove(CODE_REMEMBER).await?;
    if !was_waiting {
        return Ok(Redirect::to("/").into_response());
    }
    Ok(error_page(
        StatusCode::UNAUTHORIZED,
        "Sign-in expired",
        "This sign-in waited too long for its code, or the account changed since: please sign \
         in again.",
        "/",
    ))
}

#[derive(Deserialize)]
struct CodeForm {
    /// Missing counts as empty, and is refused like it.
    #[serde(default)]
    code: String,
}

/// `POST /login/code`: completes the half-open sign-in with a TOTP code (6
/// digits) or else a recovery code, signing in with a fresh token (method
/// `totp` or `recovery-code`); then acts on the sign-in's "remember me" box
/// and goes on to its `next`. A wrong or used code shows the form again
/// (`403`, counted toward the account's lockout like a wrong password).
async fn submit_code(
    State(app): State<App>,
    session: Session,
    remember: Remember,
    headers: axum::http::HeaderMap,
    form: Result<CsrfForm<CodeForm>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(rejection) => return Ok(form_refused(rejection, CODE_URL)),
    };
    if session.is_request_only() {
        return Ok(browsers_only());
    }
    if session.user_id().await?.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    let code = form.code.trim();
    if code.is_empty() {
        let problem = Some("Please enter the code.");
        return code_form(&app, &session, StatusCode::BAD_REQUEST, problem).await;
    }
    if code.chars().count() > MAX_CODE_CHARS {
        let problem = Some("That is not a code: a code has 6 digits, a recovery code 12 letters.");
        return code_form(&app, &session, StatusCode::BAD_REQUEST, problem).await;
    }
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let completed = if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
        app.second.complete_with_totp(&session, code).await
    } else {
        app.second.complete_with_recovery_code(&session, code).await
    };
    match completed {
        Ok(()) => {
            let next = second_step_done(&app, &session, &remember, &headers).await?;
            Ok(Redirect::to(&next).into_response())
        }
        Err(AccountError::WrongCode) => {
            let problem = Some(
                "Wrong code, or one used already. Enter the code the app shows now, or a \
                 recovery code.",
            );
            code_form(&app, &session, StatusCode::FORBIDDEN, problem).await
        }
        Err(AccountError::NoPendingSignIn) => sign_in_expired(&session).await,
        Err(AccountError::Unavailable(reason)) => {
            tracing::error!(%reason, "demo: the code check is unavailable");
            Ok(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cannot sign in now",
                "Signing in is temporarily unavailable. Please try again later.",
                CODE_URL,
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// After a half-open sign-in is completed (a code or a passkey): acts on
/// the "remember me" box and returns where the password form said to go,
/// both of which waited in the session.
async fn second_step_done(
    app: &App,
    session: &Session,
    remember: &Remember,
    headers: &axum::http::HeaderMap,
) -> Result<String, keycard::Error> {
    let ticked = session
        .remove(CODE_REMEMBER)
        .await?
        .and_then(|value| value.as_bool());
    let next = session
        .remove(CODE_NEXT)
        .await?
        .and_then(|value| value.as_str().map(str::to_owned))
        .filter(|next| is_local_path(next))
        .unwrap_or_else(|| "/".to_owned());
    // Only now is somebody signed in to remember.
    remember_choice(remember, headers, app, ticked).await?;
    Ok(next)
}

/// The session value holding a one-off message for the two-step sign-in
/// page.
const TOTP_FLASH: &str = "demo.totp_flash";

/// The session value holding an enrolment begun but not confirmed yet, so
/// that the page can show it until the first code confirms it.
const TOTP_SETUP: &str = "demo.totp_setup";

/// The session value holding new recovery codes until the page shows them,
/// once (like [`NEW_TOKEN`]).
const NEW_RECOVERY_CODES: &str = "demo.recovery_codes";

/// An enrolment as the page shows it until confirmed.
#[derive(Serialize, Deserialize)]
struct TotpSetup {
    /// The secret in base32.
    secret: String,
    /// The `otpauth://` URI.
    uri: String,
    /// The QR code of the URI, a PNG in base64 (`None` without the `qr`
    /// feature, or if it could not be drawn).
    qr: Option<String>,
}

/// A QR code of the enrolment's URI, as a PNG in base64.
#[cfg(feature = "qr")]
fn qr_base64(enrolment: &keycard::auth::TotpEnrolment) -> Option<String> {
    use base64::Engine as _;
    enrolment
        .qr_png()
        .map(|png| base64::engine::general_purpose::STANDARD.encode(png))
}

/// Without the `qr` feature, no image: the page shows the text only.
#[cfg(not(feature = "qr"))]
fn qr_base64(_: &keycard::auth::TotpEnrolment) -> Option<String> {
    None
}

/// `GET /security/totp`: two-step sign-in for the signed-in user: set it
/// up (the secret, its URI and QR code, and the form for the first code),
/// or, once on, how many recovery codes are left, new ones, and turning
/// it off; right after a confirmation or new codes, the recovery codes,
/// this once. Needs a recent sign-in, like creating a token: an older one
/// confirms the password first.
async fn totp_page(
    State(app): State<App>,
    session: Session,
    recent: Result<RequireRecentAuth, AuthRejection>,
) -> Result<Response, keycard::Error> {
    let user = match recent {
        Ok(RequireRecentAuth(user)) => user,
        Err(rejection) => return Ok(confirm_first(rejection, TOTP_URL)),
    };
    if session.is_request_only() {
        return Ok(browsers_only());
    }
    let flash = take_flash(&session, TOTP_FLASH).await?;
    // Taken out of the session as they are shown: a reload does not show
    // them again.
    let codes: Option<Vec<String>> = session
        .remove(NEW_RECOVERY_CODES)
        .await?
        .and_then(|value| serde_json::from_value(value).ok());
    // TOTP only: a passkey is a second factor too, with a page of its own.
    let factors = app.passwords.second_factors(&user.id).await?;
    let enabled = factors.contains(Factor::Totp);
    let setup: Option<TotpSetup> = if enabled {
        session.remove(TOTP_SETUP).await?;
        None
    } else {
        session.get(TOTP_SETUP).await?
    };
    let left = if enabled {
        app.second.recovery_codes_left(&user.id).await?
    } else {
        0
    };
    let csrf = csrf_field(&session).await?;
    let body = totp_body(
        &user.id,
        &flash,
        codes.as_deref(),
        setup.as_ref(),
        enabled,
        left,
        &csrf,
    );
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        page("Two-step sign-in", &body),
    )
        .into_response())
}

/// The two-step sign-in page; every value escaped.
fn totp_body(
    user: &str,
    flash: &str,
    codes: Option<&[String]>,
    setup: Option<&TotpSetup>,
    enabled: bool,
    left: usize,
    csrf: &str,
) -> String {
    let codes = codes.map(recovery_codes_block).unwrap_or_default();
    let password_field = r#"<label>Password <input name="password" type="password" required maxlength="1024" autocomplete="current-password"></label>"#;
    let state = if enabled {
        format!(
            r#"<p id="two-step-status">Two-step sign-in is <strong>on</strong>: signing in asks for your
password, then a code from your authenticator app.</p>
<p id="recovery-left">{left} recovery {noun} left.</p>
<h2>New recovery codes</h2>
<form method="post" action="/security/totp/recovery-codes"{ask_new}>{csrf}
{password_field}
<button class="danger">Make new recovery codes</button>
</form>
<p class="note">The new codes replace all the old ones, used or not.</p>
<h2>Turn it off</h2>
<form method="post" action="/security/totp/remove"{ask_off}>{csrf}
{password_field}
<button class="danger">Turn two-step sign-in off</button>
</form>"#,
            noun = if left == 1 { "code" } else { "codes" },
            ask_new = ask_first("Make new recovery codes? The old ones stop working."),
            ask_off = ask_first("Turn two-step sign-in off? Your password alone will sign you in."),
        )
    } else if let Some(setup) = setup {
        let grouped = setup
            .secret
            .as_bytes()
            .chunks(4)
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(" ");
        let image = setup
            .qr
            .as_deref()
            .map(|png| {
                format!(
                    r#"<p><img id="totp-qr" src="data:image/png;base64,{}" alt="QR code of the enrolment" width="256" height="256"></p>
"#,
                    escape(png)
                )
            })
            .unwrap_or_else(|| {
                r#"<p class="note">(No QR code: this demo was built without the <code>qr</code> feature.)</p>
"#
                .to_owned()
            });
        format!(
            r#"<p id="two-step-status">Two-step sign-in is <strong>being set up</strong>.</p>
<div class="secret">
<p>Scan this QR code with your authenticator app, or type in the secret.</p>
{image}<p>Secret: <code id="totp-secret">{grouped}</code></p>
<p>Or open this link on the phone: <code id="totp-uri">{uri}</code></p>
</div>
<form method="post" action="/security/totp/confirm">{csrf}
<label>Code the app shows <input name="code" required maxlength="{max}" autocomplete="one-time-code" inputmode="numeric"></label>
<button>Turn two-step sign-in on</button>
</form>
<form method="post" action="/security/totp/setup">{csrf}<button>Start again with a new secret</button></form>"#,
            grouped = escape(&grouped),
            uri = escape(&setup.uri),
            max = MAX_CODE_CHARS,
        )
    } else {
        format!(
            r#"<p id="two-step-status">Two-step sign-in is <strong>off</strong>: your password alone signs you in.</p>
<form method="post" action="/security/totp/setup">{csrf}<button>Set up an authenticator app</button></form>"#
        )
    };
    format!(
        r#"<h1>Two-step sign-in</h1>
{flash}{codes}<p>For <strong>{user}</strong>: after the password, a 6-digit code from an authenticator
app (or a recovery code).</p>
{state}
<p class="note">With two-step sign-in on, API clients cannot sign in with HTTP Basic (the user name
and password, <code>curl -u</code>): use an <a href="/tokens">API token</a>
(<code>Authorization: Bearer</code>) instead.</p>"#,
        user = escape(user),
    )
}

/// New recovery codes, shown once.
fn recovery_codes_block(codes: &[String]) -> String {
    let items: String = codes
        .iter()
        .map(|code| format!("<li><code>{}</code></li>\n", escape(code)))
        .collect();
    format!(
        r#"<div class="secret">
<p>Your recovery codes. Keep them somewhere safe now: they are shown this once. Each signs
in once in place of your second step, should you lose your phone or passkey.</p>
<ol id="recovery-codes">
{items}</ol>
</div>
"#
    )
}

/// The home page's card for the passkeys page, where the demo has them.
fn passkeys_card() -> &'static str {
    if cfg!(feature = "passkeys") {
        r#"<div class="card"><h2><a href="/security/passkeys">Passkeys</a></h2><p>Sign in with the device's screen lock instead of a password.</p></div>
"#
    } else {
        ""
    }
}

/// The home page's "Sign in with a passkey", where the demo has them.
fn passkey_sign_in(next: Option<&str>) -> String {
    #[cfg(feature = "passkeys")]
    return passkeys::sign_in_button(next);
    #[cfg(not(feature = "passkeys"))]
    {
        let _ = next;
        String::new()
    }
}

/// The code page's "Use your passkey", where the demo has them and the
/// account has one.
fn passkey_second_step(pending: &keycard::auth::Pending) -> String {
    #[cfg(feature = "passkeys")]
    return passkeys::second_factor_button(pending);
    #[cfg(not(feature = "passkeys"))]
    {
        let _ = pending;
        String::new()
    }
}

/// The checks every two-step sign-in form passes first: a browser's
/// session with somebody signed in; `Err` is the answer otherwise.
async fn totp_form_user(session: &Session) -> Result<Result<String, Response>, keycard::Error> {
    if session.is_request_only() {
        return Ok(Err(browsers_only()));
    }
    Ok(session
        .user_id()
        .await?
        .ok_or_else(|| Redirect::to("/").into_response()))
}

/// Redirects to the two-step sign-in page with `message` for it.
async fn back_to_totp(session: &Session, message: &str) -> Result<Response, keycard::Error> {
    session.insert(TOTP_FLASH, message).await?;
    Ok(Redirect::to(TOTP_URL).into_response())
}

/// The page for an account error of the two-step sign-in forms that is no
/// user's mistake.
fn totp_failure(error: AccountError) -> Result<Response, keycard::Error> {
    match error {
        AccountError::NotSignedIn => Ok(Redirect::to("/").into_response()),
        AccountError::Unavailable(reason) => {
            tracing::error!(%reason, "demo: the password check is unavailable");
            Ok(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not now",
                "This is temporarily unavailable. Please try again later.",
                TOTP_URL,
            ))
        }
        other => Err(other.into()),
    }
}

/// `POST /security/totp/setup`: begins an enrolment
/// ([`SecondFactor::enrol_totp`]; a new one replaces one not confirmed
/// yet), kept in the session for the page to show until the first code
/// confirms it. Needs a recent sign-in.
async fn totp_setup(
    State(app): State<App>,
    session: Session,
    recent: Result<RequireRecentAuth, AuthRejection>,
    form: Result<CsrfForm<NoFields>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    if let Err(rejection) = form {
        return Ok(form_refused(rejection, TOTP_URL));
    }
    if let Err(answer) = totp_form_user(&session).await? {
        return Ok(answer);
    }
    if let Err(rejection) = recent {
        return Ok(confirm_first(rejection, TOTP_URL));
    }
    match app.second.enrol_totp(&session).await {
        Ok(enrolment) => {
            let setup = TotpSetup {
                secret: enrolment.secret_base32().to_owned(),
                uri: enrolment.uri().to_owned(),
                qr: qr_base64(&enrolment),
            };
            // The secret waits in the session row until the first code
            // confirms it (the server keeps it anyway, to check codes);
            // confirming or turning two-step sign-in off removes it.
            session.insert(TOTP_SETUP, setup).await?;
            Ok(Redirect::to(TOTP_URL).into_response())
        }
        Err(AccountError::AlreadyEnrolled) => {
            back_to_totp(&session, "Two-step sign-in is on already.").await
        }
        Err(error) => totp_failure(error),
    }
}

/// `POST /security/totp/confirm`: confirms the enrolment with the app's
/// first code ([`SecondFactor::confirm_totp`]): two-step sign-in is on,
/// and the page shows the recovery codes once. Needs a recent sign-in.
async fn totp_confirm(
    State(app): State<App>,
    session: Session,
    recent: Result<RequireRecentAuth, AuthRejection>,
    form: Result<CsrfForm<CodeForm>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(rejection) => return Ok(form_refused(rejection, TOTP_URL)),
    };
    if let Err(answer) = totp_form_user(&session).await? {
        return Ok(answer);
    }
    if let Err(rejection) = recent {
        return Ok(confirm_first(rejection, TOTP_URL));
    }
    let code = form.code.trim();
    if code.is_empty() || code.chars().count() > MAX_CODE_CHARS {
        return back_to_totp(&session, "Please enter the 6-digit code the app shows.").await;
    }
    match app.second.confirm_totp(&session, code).await {
        Ok(codes) => {
            session.remove(TOTP_SETUP).await?;
            session
                .insert(NEW_RECOVERY_CODES, codes.codes().to_vec())
                .await?;
            back_to_totp(
                &session,
                "Two-step sign-in is on: from now on, signing in asks for a code after the \
                 password.",
            )
            .await
        }
        Err(AccountError::WrongCode) => {
            back_to_totp(
                &session,
                "That code is not right. Check that the phone's clock is right, and enter the code \
                 the app shows now.",
            )
            .await
        }
        Err(AccountError::NotEnrolled) => {
            session.remove(TOTP_SETUP).await?;
            back_to_totp(&session, "Nothing to confirm: set up the app again.").await
        }
        Err(error) => totp_failure(error),
    }
}

#[derive(Deserialize)]
struct TotpPasswordForm {
    /// Missing counts as empty, and is refused like it.
    #[serde(default)]
    password: String,
}

/// `POST /security/totp/recovery-codes`: new recovery codes in place of
/// all the old ones, after the password
/// ([`SecondFactor::regenerate_recovery_codes`]; a wrong one counts toward
/// the lockout); the page shows them once.
async fn totp_new_recovery_codes(
    State(app): State<App>,
    session: Session,
    form: Result<CsrfForm<TotpPasswordForm>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(rejection) => return Ok(form_refused(rejection, TOTP_URL)),
    };
    if let Err(answer) = totp_form_user(&session).await? {
        return Ok(answer);
    }
    if form.password.is_empty() {
        return back_to_totp(&session, "Please enter your password.").await;
    }
    match app
        .second
        .regenerate_recovery_codes(&session, &form.password)
        .await
    {
        Ok(codes) => {
            session
                .insert(NEW_RECOVERY_CODES, codes.codes().to_vec())
                .await?;
            back_to_totp(&session, "New recovery codes: the old ones work no more.").await
        }
        Err(AccountError::WrongPassword) => {
            back_to_totp(
                &session,
                "Wrong password: the recovery codes were not changed.",
            )
            .await
        }
        Err(AccountError::NotEnrolled) => {
            back_to_totp(
                &session,
                "Two-step sign-in is off: there are no recovery codes.",
            )
            .await
        }
        Err(error) => totp_failure(error),
    }
}

/// `POST /security/totp/remove`: turns two-step sign-in off, after the
/// password ([`SecondFactor::remove`]; a wrong one counts toward the
/// lockout).
async fn totp_remove(
    State(app): State<App>,
    session: Session,
    form: Result<CsrfForm<TotpPasswordForm>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(rejection) => return Ok(form_refused(rejection, TOTP_URL)),
    };
    if let Err(answer) = totp_form_user(&session).await? {
        return Ok(answer);
    }
    if form.password.is_empty() {
        return back_to_totp(&session, "Please enter your password.").await;
    }
    match app.second.remove(&session, &form.password).await {
        Ok(removed) => {
            session.remove(TOTP_SETUP).await?;
            let message = if removed {
                "Two-step sign-in is off: your password alone signs you in."
            } else {
                "Two-step sign-in was not on."
            };
            back_to_totp(&session, message).await
        }
        Err(AccountError::WrongPassword) => {
            back_to_totp(&session, "Wrong password: two-step sign-in stays on.").await
        }
        Err(error) => totp_failure(error),
    }
}

/// The session value holding a one-off message for the sessions page.
const FLASH: &str = "flash";

/// The session value holding a one-off message for the tokens page.
const TOKENS_FLASH: &str = "tokens_flash";

/// The session value holding a just-created token until the tokens page
/// shows it, once (see [`create_token`]).
const NEW_TOKEN: &str = "new_token";

/// A just-created token, as the tokens page shows it once.
#[derive(Serialize, Deserialize)]
struct CreatedToken {
    name: String,
    secret: String,
}

/// Takes the one-off message under `key` out of the session, as HTML.
/// Taking it out is a change, saved when the response leaves. A request
/// signed in by its own credentials has no stored session, so no message.
async fn take_flash(session: &Session, key: &str) -> Result<String, keycard::Error> {
    if session.is_request_only() {
        return Ok(String::new());
    }
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

/// `GET /sessions`: the signed-in user's sessions, browsers and API
/// clients apart, with a form to end each other one, all the others, or
/// this one, and to change the password. Anonymous browsers are sent to
/// sign in first, and come back here.
async fn sessions_page(
    State(app): State<App>,
    session: Session,
    remember: Remember,
) -> Result<Response, keycard::Error> {
    let Some(user) = session.user_id().await? else {
        return Ok(sign_in_first("/sessions"));
    };
    let sessions = session.user_sessions().await?;
    let remembered = remember.devices().await?;
    let flash = take_flash(&session, FLASH).await?;
    let csrf = csrf_field(&session).await?;
    let now = chrono::Utc::now();

    let (api, browsers): (Vec<&SessionInfo>, Vec<&SessionInfo>) =
        sessions.iter().partition(|info| info.is_api);
    let browsers_table = session_table(&browsers, "browser-sessions", &csrf, now);
    let api_table = if api.is_empty() {
        r#"<p class="note">No API client is signed in with your password (HTTP Basic). Scripts with a
bearer token leave no session: see <a href="/tokens">API tokens</a>.</p>"#
            .to_owned()
    } else {
        session_table(&api, "api-sessions", &csrf, now)
    };
    let others = sessions.iter().filter(|s| !s.current).count();
    let end_others = if others > 0 {
        format!(
            r#"<form method="post" action="/sessions/end-others"{ask}>{csrf}<button class="danger">Sign out everywhere else ({others} other {noun})</button></form>"#,
            noun = if others == 1 { "session" } else { "sessions" },
            ask = ask_first("Sign out every other browser and API client?"),
        )
    } else {
        r#"<p class="note">You are not signed in anywhere else.</p>"#.to_owned()
    };
    let remembered = remembered_section(&remembered, &csrf, now);
    let body = format!(
        r#"<h1>Your sessions</h1>
{flash}<p>Signed in as <strong>{user}</strong> on {count}.</p>
<h2>Browsers</h2>
{browsers_table}
<h2>API sessions</h2>
{api_table}
{end_others}
<p class="note">Signing out everywhere else asks you to confirm your password if you signed in
more than {sudo} ago.</p>
<form method="post" action="/logout">{csrf}<button class="quiet">Sign out this device</button></form>
{remembered}
<h2>Change your password</h2>
<form method="post" action="/account/password">{csrf}
<label>Current password <input name="current" type="password" required maxlength="1024" autocomplete="current-password"></label>
<label>New password <input name="new" type="password" required maxlength="1024" autocomplete="new-password"></label>
<button>Change the password</button>
</form>
<p class="note">Changing the password keeps you signed in here and signs you out everywhere else.</p>"#,
        user = escape(&user),
        sudo = escape(&describe(app.sudo)),
        count = match sessions.len() {
            1 => "1 browser or device".to_owned(),
            n => format!("{n} browsers or devices"),
        },
    );
    Ok(page("Your sessions", &body).into_response())
}

/// A table of sessions (`id` names it), one row each; every value escaped.
fn session_table(
    sessions: &[&SessionInfo],
    id: &str,
    csrf: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let rows: String = sessions
        .iter()
        .map(|info| session_row(info, csrf, now))
        .collect();
    format!(
        r#"<table class="sessions" id="{id}">
<tr><th>Device</th><th>Signed in with</th><th>Signed in</th><th>Last active</th><th>IP address</th><th></th></tr>
{rows}</table>"#,
        id = escape(id),
    )
}

/// The "Remembered browsers" part of the sessions page: each browser
/// that ticked "remember me", with a form to revoke it, and one to forget
/// this browser if it is one of them. `csrf` is the forms' token field;
/// every value escaped.
fn remembered_section(
    browsers: &[RememberedBrowser],
    csrf: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let list = if browsers.is_empty() {
        r#"<p class="note">No browser is remembered: tick "Remember me on this device" when you
sign in to stay signed in after closing the browser.</p>"#
            .to_owned()
    } else {
        let rows: String = browsers
            .iter()
            .map(|browser| remembered_row(browser, csrf, now))
            .collect();
        format!(
            r#"<table class="sessions" id="remembered">
<tr><th>Browser</th><th>Remembered since</th><th>Last used</th><th>Expires</th><th></th></tr>
{rows}</table>"#
        )
    };
    let forget = if browsers.iter().any(|browser| browser.current) {
        format!(
            r#"<form method="post" action="/remembered/forget">{csrf}<button class="quiet">Forget this browser</button></form>
<p class="note">Forgetting keeps you signed in for now; after closing the browser you sign in
again.</p>"#
        )
    } else {
        String::new()
    };
    format!(
        r#"<h2>Remembered browsers</h2>
<p class="note">A remembered browser is signed back in after a restart, without the password,
until it expires or you revoke it here. Revoking one signs it out.</p>
{list}
{forget}"#
    )
}

/// One row of the remembered browsers table, on one line; every value
/// escaped.
fn remembered_row(
    browser: &RememberedBrowser,
    csrf: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let device = browser.device.as_deref().unwrap_or("unknown browser");
    let this = if browser.current {
        r#" <strong>(this browser)</strong>"#
    } else {
        ""
    };
    format!(
        r#"<tr{class}><td>{device}{this}</td><td>{created}</td><td>{last}</td><td>{expires}</td><td><form method="post" action="/remembered/{id}/revoke"{ask}>{csrf}<button class="danger">Revoke</button></form></td></tr>
"#,
        class = if browser.current {
            r#" class="current""#
        } else {
            ""
        },
        device = escape(device),
        created = when(browser.created_at, now),
        last = when(browser.last_used_at, now),
        expires = when(browser.expires_at, now),
        id = browser.id,
        ask = ask_first(if browser.current {
            "Revoke this browser? It signs out now."
        } else {
            "Revoke that browser? It signs out and needs the password again."
        }),
    )
}

/// One row of a sessions table, on one line, `csrf` being the forms'
/// token field; every value escaped.
fn session_row(info: &SessionInfo, csrf: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let action = if info.current {
        "<strong>this device</strong>".to_owned()
    } else {
        format!(
            r#"<form method="post" action="/sessions/{}/end"{ask}>{csrf}<button class="danger">Sign out that device</button></form>"#,
            escape(&info.id.to_string()),
            ask = ask_first("Sign out that device?"),
        )
    };
    let method = info.auth_method.as_deref().unwrap_or("unknown");
    let method = match &info.signed_in_by {
        // A session that a remembered browser opened, or that asked for
        // its browser to be remembered: which one.
        Some(credential) => match credential.strip_prefix("remember:") {
            Some(id) => format!("{method} (remembered browser {id})"),
            None => format!("{method} ({credential})"),
        },
        None => method.to_owned(),
    };
    let device = match (&info.device, info.is_api) {
        (Some(device), _) => device.clone(),
        (None, true) => "API client".to_owned(),
        (None, false) => "unknown browser".to_owned(),
    };
    format!(
        "<tr{class}><td class=\"device\">{device}{badge}</td><td>{method}</td><td>{created}</td><td>{last}</td><td>{ip}</td><td>{action}</td></tr>\n",
        class = if info.current {
            r#" class="current""#
        } else {
            ""
        },
        device = escape(&device),
        badge = if info.current {
            r#" <span class="badge">this device</span>"#
        } else {
            ""
        },
        created = when(info.authenticated_at.unwrap_or(info.created_at), now),
        last = when(info.last_activity, now),
        ip = escape(info.ip_address.as_deref().unwrap_or("unknown")),
        method = escape(&method),
    )
}

/// `POST /sessions/{id}/end`: ends one of the user's sessions ("sign out
/// that device"); ending this one signs out here.
async fn end_one(
    session: Session,
    id: Result<Path<String>, PathRejection>,
    form: Result<CsrfForm<NoFields>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    if let Err(rejection) = form {
        return Ok(form_refused(rejection, "/sessions"));
    }
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
    if session.is_request_only() {
        return Ok(browsers_only());
    }
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

/// `POST /sessions/end-others`: ends every other session of the user,
/// if they signed in recently (or confirm their password first).
async fn end_others(
    session: Session,
    recent: Result<RequireRecentAuth, AuthRejection>,
    form: Result<CsrfForm<NoFields>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    if let Err(rejection) = form {
        return Ok(form_refused(rejection, "/sessions"));
    }
    // A request signed in by its own credentials has no session of its own
    // to keep: it would end them all.
    if session.is_request_only() {
        return Ok(browsers_only());
    }
    if session.user_id().await?.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    if let Err(rejection) = recent {
        return Ok(confirm_first(rejection, "/sessions"));
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

/// `POST /remembered/{id}/revoke`: forgets one of the user's remembered
/// browsers and signs out the sessions it opened ([`Remember::revoke`]);
/// revoking this browser signs out here.
async fn revoke_remembered(
    session: Session,
    remember: Remember,
    id: Result<Path<String>, PathRejection>,
    form: Result<CsrfForm<NoFields>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    if let Err(rejection) = form {
        return Ok(form_refused(rejection, "/sessions"));
    }
    let Some(id) = id
        .ok()
        .and_then(|Path(text)| text.parse::<i64>().ok())
        .filter(|id| *id > 0)
    else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "No such browser",
            "A remembered browser is named by a positive whole number.",
            "/sessions",
        ));
    };
    if session.is_request_only() {
        return Ok(browsers_only());
    }
    if session.user_id().await?.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    let current = remember
        .devices()
        .await?
        .iter()
        .any(|browser| browser.current && browser.id == id);
    if remember.revoke(id).await? {
        if current {
            // `revoke` signed this session out: nothing left to show.
            return Ok(Redirect::to("/").into_response());
        }
        session
            .insert(
                FLASH,
                "That browser is forgotten and signed out: it signs in with the password again.",
            )
            .await?;
    } else {
        session
            .insert(
                FLASH,
                "That browser is not one of yours, or is no longer remembered.",
            )
            .await?;
    }
    Ok(Redirect::to("/sessions").into_response())
}

/// `POST /remembered/forget`: forgets this browser
/// ([`Remember::forget_this_device`]): it stays signed in for now, but
/// after a restart it signs in with the password again.
async fn forget_this_browser(
    session: Session,
    remember: Remember,
    form: Result<CsrfForm<NoFields>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    if let Err(rejection) = form {
        return Ok(form_refused(rejection, "/sessions"));
    }
    if session.is_request_only() {
        return Ok(browsers_only());
    }
    if session.user_id().await?.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    remember.forget_this_device().await?;
    session
        .insert(FLASH, "This browser is no longer remembered.")
        .await?;
    Ok(Redirect::to("/sessions").into_response())
}

#[derive(Deserialize)]
struct PasswordForm {
    /// Missing counts as empty, and is refused like it.
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

/// `POST /account/password`: changes the signed-in user's password, after
/// checking the current one; this session is kept with a fresh token, every
/// other one of the account ends.
async fn change_password(
    State(app): State<App>,
    session: Session,
    form: Result<CsrfForm<PasswordForm>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(rejection) => return Ok(form_refused(rejection, "/sessions")),
    };
    if session.is_request_only() {
        return Ok(browsers_only());
    }
    if session.user_id().await?.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    let refused = |status, problem: &str| {
        error_page(status, "Cannot change the password", problem, "/sessions")
    };
    if form.current.is_empty() || form.new.is_empty() {
        return Ok(refused(
            StatusCode::BAD_REQUEST,
            "Please enter your current password and a new one.",
        ));
    }
    match app
        .passwords
        .change_password(&session, &form.current, &form.new)
        .await
    {
        Ok(()) => {
            session
                .insert(
                    FLASH,
                    "Password changed. You are still signed in here, and signed out everywhere \
                     else.",
                )
                .await?;
            Ok(Redirect::to("/sessions").into_response())
        }
        Err(AccountError::WrongPassword) => Ok(refused(
            StatusCode::FORBIDDEN,
            "The current password is wrong.",
        )),
        Err(AccountError::InvalidPassword) => Ok(refused(
            StatusCode::BAD_REQUEST,
            "A password has 1 to 1024 bytes.",
        )),
        Err(AccountError::NotSignedIn) => Ok(Redirect::to("/").into_response()),
        Err(AccountError::Unavailable(reason)) => {
            tracing::error!(%reason, "demo: the password check is unavailable");
            Ok(refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "Changing the password is temporarily unavailable. Please try again later.",
            ))
        }
        // The password was changed, but the sessions could not be ended or
        // rotated: the session layer's answer for that error.
        Err(AccountError::Sessions(error)) => Err(error.into()),
        Err(error) => {
            tracing::error!(%error, "demo: changing the password failed");
            Ok(refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The password could not be changed. Please try again later.",
            ))
        }
    }
}

/// The answer for an action that needs a recent sign-in ("sudo mode") when
/// the user's is too old: a browser is sent to confirm its password, then
/// back to `page` (the page with the action's form, not the `POST`'s path,
/// which a browser cannot load); anyone else gets the rejection's own
/// answer (`403`, or as for a sign-in when nobody is signed in).
fn confirm_first(rejection: AuthRejection, page: &str) -> Response {
    match rejection {
        AuthRejection::ReauthenticationRequired(required) if required.redirect().is_some() => {
            Redirect::to(&format!("{CONFIRM_URL}?next={page}")).into_response()
        }
        other => other.into_response(),
    }
}

/// How long a sign-in counts as recent, in words.
fn describe(within: Duration) -> String {
    let seconds = within.as_secs();
    match (seconds % 60, seconds / 60) {
        (0, 1) => "1 minute".to_owned(),
        (0, minutes) => format!("{minutes} minutes"),
        _ if seconds == 1 => "1 second".to_owned(),
        _ => format!("{seconds} seconds"),
    }
}

/// `next` if it is a path on this site (see [`is_local_path`]), home
/// otherwise.
fn local_or_home(next: Option<&str>) -> &str {
    next.filter(|next| is_local_path(next)).unwrap_or("/")
}

#[derive(Deserialize)]
struct ConfirmQuery {
    /// Where to go once confirmed: set by [`confirm_first`].
    next: Option<String>,
}

/// `GET /confirm`: asks the signed-in user for their password again, then
/// goes on to `next`. Anonymous visitors are sent home.
async fn confirm_page(
    session: Session,
    query: Result<Query<ConfirmQuery>, QueryRejection>,
) -> Result<Response, keycard::Error> {
    let query = query.ok().and_then(|Query(query)| query.next);
    let next = local_or_home(query.as_deref());
    confirm_again(&session, StatusCode::OK, None, next).await
}

/// The confirmation page, with `problem` if the last try failed; home for
/// anonymous visitors, and `403` for a request signed in by its own
/// credentials, which has no sign-in to confirm.
async fn confirm_again(
    session: &Session,
    status: StatusCode,
    problem: Option<&str>,
    next: &str,
) -> Result<Response, keycard::Error> {
    if session.is_request_only() {
        return Ok(browsers_only());
    }
    let Some(user) = session.user_id().await? else {
        // Signing in is recent enough for anything: straight on to `next`.
        return Ok(sign_in_first(next));
    };
    let csrf = csrf_field(session).await?;
    let problem = problem
        .map(|problem| format!("<p class=\"error\">{}</p>\n", escape(problem)))
        .unwrap_or_default();
    let body = format!(
        r#"<h1>Confirm it's you</h1>
{problem}<p>You are signed in as <strong>{user}</strong>, but not recently enough for what you
asked: please enter your password again.</p>
<form method="post" action="{action}">{csrf}
<input type="hidden" name="next" value="{next}">
<label>Password <input name="password" type="password" required maxlength="1024" autocomplete="current-password" autofocus></label>
<button>Confirm</button>
</form>
<p><a href="{next}">Cancel</a></p>"#,
        user = escape(&user),
        action = escape(CONFIRM_URL),
        next = escape(next),
    );
    Ok((status, page("Confirm it's you", &body)).into_response())
}

#[derive(Deserialize)]
struct ConfirmForm {
    /// Missing counts as empty, and is refused like it.
    #[serde(default)]
    password: String,
    /// Where to go once confirmed: a path on this site, or home.
    #[serde(default)]
    next: String,
}

/// `POST /confirm`: checks the signed-in user's password; if right, the
/// sign-in counts as recent again (with a fresh session token) and the
/// browser goes on to `next`.
async fn confirm(
    State(app): State<App>,
    session: Session,
    form: Result<CsrfForm<ConfirmForm>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(rejection) => return Ok(form_refused(rejection, "/")),
    };
    let next = local_or_home(Some(&form.next));
    if form.password.is_empty() {
        return confirm_again(
            &session,
            StatusCode::BAD_REQUEST,
            Some("Please enter your password."),
            next,
        )
        .await;
    }
    match app.passwords.confirm(&session, &form.password).await {
        Ok(()) => Ok(Redirect::to(next).into_response()),
        // Counted toward the lockout, like a wrong sign-in.
        Err(AccountError::WrongPassword) => {
            confirm_again(
                &session,
                StatusCode::UNAUTHORIZED,
                Some("Wrong password."),
                next,
            )
            .await
        }
        Err(AccountError::NotSignedIn) => Ok(Redirect::to("/").into_response()),
        Err(AccountError::Unavailable(reason)) => {
            tracing::error!(%reason, "demo: the password check is unavailable");
            Ok(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cannot confirm now",
                "Confirming your password is temporarily unavailable. Please try again later.",
                next,
            ))
        }
        Err(error) => Ok(error.into_response()),
    }
}

/// Whether this user's session may create and revoke API tokens: not one
/// signed in with a token, so that a leaked token cannot mint others.
fn may_manage_tokens(user: &AuthUser) -> bool {
    user.method.as_deref() != Some(method::BEARER)
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
/// them; right after `POST /tokens`, the new token's secret, this once.
/// Anonymous browsers are sent to sign in first, API clients get 401.
async fn tokens_page(
    State(app): State<App>,
    CurrentUser(user): CurrentUser,
    session: Session,
    headers: axum::http::HeaderMap,
) -> Result<Response, keycard::Error> {
    let tokens = app.tokens.list(&user.id).await?;
    let flash = take_flash(&session, TOKENS_FLASH).await?;
    // Taken out of the session as it is shown: a reload does not show it.
    let created: Option<CreatedToken> = if session.is_request_only() {
        None
    } else {
        session
            .remove(NEW_TOKEN)
            .await?
            .and_then(|value| serde_json::from_value(value).ok())
    };
    let csrf = csrf_field(&session).await?;
    let base = request_base(&headers, &app.base);
    let body = tokens_body(
        &user,
        &tokens,
        &flash,
        created.as_ref(),
        &csrf,
        app.sudo,
        &base,
    );
    // Nothing on the way may keep a copy of the page, least of all of the
    // secret (the session layer says so too, for any signed-in page).
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        page("API tokens", &body),
    )
        .into_response())
}

#[derive(Deserialize)]
struct TokenForm {
    /// Missing counts as empty, and is refused like it.
    #[serde(default)]
    name: String,
}

/// `POST /tokens`: creates a token and redirects to the tokens page, which
/// shows its secret once. Until then the secret waits in the session (the
/// only copy: the token table keeps its hash), so that reloading the page
/// neither shows it again nor creates a second token.
///
/// A leaked session cookie must not mint a token that outlives it: this
/// needs a recent sign-in, or the password confirmed first.
async fn create_token(
    State(app): State<App>,
    CurrentUser(user): CurrentUser,
    session: Session,
    recent: Result<RequireRecentAuth, AuthRejection>,
    form: Result<CsrfForm<TokenForm>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(rejection) => return Ok(form_refused(rejection, "/tokens")),
    };
    if !may_manage_tokens(&user) {
        return Ok(tokens_forbidden());
    }
    if let Err(rejection) = recent {
        return Ok(confirm_first(rejection, "/tokens"));
    }
    let name = match validate_name(&form.name) {
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
    let created = CreatedToken {
        name: new.record.name.clone(),
        secret: new.secret,
    };
    if let Err(error) = session.insert(NEW_TOKEN, created).await {
        // The secret cannot be handed over: the token is useless.
        tracing::error!(%error, "demo: keeping the new token for the page failed");
        if let Err(error) = app.tokens.revoke(&user.id, new.record.id).await {
            tracing::error!(%error, "demo: revoking the unusable token failed");
        }
        return Err(error.into());
    }
    Ok(Redirect::to("/tokens").into_response())
}

/// `POST /tokens/{id}/revoke`: revokes one of the user's tokens; from the
/// next request on it signs nobody in.
async fn revoke_token(
    State(app): State<App>,
    CurrentUser(user): CurrentUser,
    session: Session,
    id: Result<Path<String>, PathRejection>,
    form: Result<CsrfForm<NoFields>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    if let Err(rejection) = form {
        return Ok(form_refused(rejection, "/tokens"));
    }
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
/// the forms (`csrf` being their token field). Every value escaped.
fn tokens_body(
    user: &AuthUser,
    tokens: &[ApiTokenRecord],
    flash: &str,
    new: Option<&CreatedToken>,
    csrf: &str,
    sudo: Duration,
    base: &str,
) -> String {
    let manage = may_manage_tokens(user);
    let now = chrono::Utc::now();
    // The example names this site as the browser reached it, and the new
    // token while it is shown; a placeholder otherwise.
    let example = format!(
        "curl -H 'Authorization: Bearer {}' '{base}/api/whoami'",
        new.map_or("kc_…", |new| new.secret.as_str())
    );
    let created = new
        .map(|new| {
            format!(
                r#"<div class="secret">
<p>Your new token <strong>{name}</strong>. Copy it now: it is shown this once and cannot be shown again.</p>
<p><code id="new-token">{secret}</code></p>
</div>
"#,
                name = escape(&new.name),
                secret = escape(&new.secret),
            )
        })
        .unwrap_or_default();
    let list = if tokens.is_empty() {
        r#"<p class="note">You have no API tokens.</p>"#.to_owned()
    } else {
        let rows: String = tokens
            .iter()
            .map(|token| token_row(token, manage, csrf, now))
            .collect();
        format!(
            r#"<table class="sessions">
<tr><th>Name</th><th>Created</th><th>Last used</th><th></th></tr>
{rows}</table>"#
        )
    };
    let create = if manage {
        format!(
            r#"<form method="post" action="/tokens">{csrf}
<label>New token named <input name="name" required maxlength="64" placeholder="CI pipeline"></label>
<button>Create</button>
</form>
<p class="note">Creating a token asks you to confirm your password if you signed in more than {}
ago.</p>"#,
            escape(&describe(sudo))
        )
    } else {
        r#"<p class="note">Signed in with an API token: sign in with your password to create or revoke tokens.</p>"#.to_owned()
    };
    format!(
        r#"<h1>API tokens</h1>
{flash}{created}<p>Tokens of <strong>{user}</strong>, for scripts and API clients. Send one as
<code>Authorization: Bearer kc_…</code>, for example:</p>
<pre><code id="curl-example">{example}</code></pre>
<p class="note">Only a hash of each token is kept.</p>
{list}
{create}"#,
        user = escape(&user.id),
        example = escape(&example),
    )
}

/// One row of the tokens table, `csrf` being the forms' token field; every
/// value escaped.
fn token_row(
    token: &ApiTokenRecord,
    manage: bool,
    csrf: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let revoke = if manage {
        format!(
            r#"<form method="post" action="/tokens/{}/revoke"{ask}>{csrf}<button class="danger">Revoke</button></form>"#,
            token.id,
            ask = ask_first("Revoke this token? Scripts using it stop working."),
        )
    } else {
        String::new()
    };
    format!(
        "<tr><td>{name}</td><td>{created}</td><td>{last}</td><td>{revoke}</td></tr>\n",
        name = escape(&token.name),
        created = when(token.created_at, now),
        last = token
            .last_used_at
            .map_or_else(|| "never".to_owned(), |at| when(at, now)),
    )
}

/// `http://HOST` as the request names this site (its `Host` header), for
/// examples to copy; the address the demo listens on when the header is
/// missing or not a plain `host[:port]`. Escape it for a page.
fn request_base(headers: &axum::http::HeaderMap, listening: &str) -> String {
    headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host.len() <= 255
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .map_or_else(|| listening.to_owned(), |host| format!("http://{host}"))
}

/// `GET /api/whoami`: `USER METHOD api|human`, as plain text; `401` with the
/// auth layer's challenges when nobody is signed in.
async fn api_whoami(CurrentUser(user): CurrentUser) -> String {
    format!(
        "{} {} {}\n",
        user.id,
        user.method.as_deref().unwrap_or("unknown"),
        if user.is_api { "api" } else { "human" }
    )
}

/// `POST /api/visit`: counts a visit in the session, atomically, and
/// answers the new count. A bearer request is signed in for that request
/// only and has no session to count in: `400` ([`keycard::Error::RequestOnly`]).
/// For API clients, so no synchronizer token; browsers' cross-origin posts
/// are refused by the session layer all the same.
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

/// Where [`page`] puts the site header; the [`layout`] middleware fills it
/// in for the request's session. Page content is escaped, so it never
/// holds this comment by chance.
const HEADER_SLOT: &str = "<!--keycard-demo-header-->";

/// The most bytes of an HTML page [`layout`] reads to fill in its header.
const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// A complete HTML page; `title` is escaped here, `body` must already be.
/// The site header (who is signed in, the menu, the sign-out form) is
/// added by the [`layout`] middleware, which knows the session: every
/// page, error pages too, gets the same one.
fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title>
<style>
*, *::before, *::after {{ box-sizing: border-box; }}
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.5; color: #1d1d24; background: #f6f6f8; margin: 0; }}
header.site {{ background: #23233a; color: #e8e8f0; }}
header.site .bar {{ max-width: 60rem; margin: 0 auto; padding: 0.6rem 1rem; display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: center; justify-content: space-between; }}
header.site a {{ color: #fff; }}
header.site .brand {{ font-weight: 700; text-decoration: none; letter-spacing: 0.02em; }}
header.site nav {{ display: flex; flex-wrap: wrap; gap: 0.25rem 0.5rem; align-items: center; }}
header.site form {{ display: inline; margin: 0; }}
header.site button {{ background: none; border: none; color: #fff; text-decoration: underline; padding: 0; font: inherit; cursor: pointer; }}
main {{ max-width: 60rem; margin: 1.5rem auto; padding: 1.25rem 1.5rem; background: #fff; border: 1px solid #e2e2ea; border-radius: 8px; }}
h1 {{ margin-top: 0; font-size: 1.6rem; }}
h2 {{ font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #e2e2ea; padding-bottom: 0.25rem; }}
a {{ color: #2f4fb5; }}
code {{ font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 0.92em; background: #f1f1f5; padding: 0.05rem 0.25rem; border-radius: 3px; overflow-wrap: anywhere; }}
pre {{ background: #f1f1f5; padding: 0.75rem; border-radius: 6px; white-space: pre-wrap; overflow-wrap: anywhere; }}
pre code {{ background: none; padding: 0; }}
th {{ text-align: left; padding-right: 1rem; }}
form {{ margin: 1rem 0; }}
label {{ display: block; margin: 0.5rem 0; }}
label.inline {{ display: flex; gap: 0.4rem; align-items: center; margin: 0.75rem 0; }}
input[type="text"], input:not([type]), input[type="password"] {{ display: block; margin-top: 0.2rem; padding: 0.4rem 0.5rem; width: 100%; max-width: 22rem; font: inherit; border: 1px solid #babac8; border-radius: 4px; }}
button {{ font: inherit; padding: 0.35rem 0.9rem; border-radius: 4px; border: 1px solid #2f4fb5; background: #2f4fb5; color: #fff; cursor: pointer; }}
button:hover {{ background: #233d91; }}
button.danger {{ background: #fff; color: #a32020; border-color: #c86464; }}
button.danger:hover {{ background: #fbeaea; }}
button.quiet {{ background: #fff; color: #2f4fb5; }}
.note {{ color: #5a5a66; font-size: 0.9rem; }}
.flash {{ background: #eef6ee; border-left: 4px solid #4a9a4a; padding: 0.5rem 0.75rem; }}
.error {{ background: #fbeaea; border-left: 4px solid #c04040; padding: 0.5rem 0.75rem; }}
.cards {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 1rem; }}
.card {{ border: 1px solid #e2e2ea; border-radius: 6px; padding: 0.25rem 1rem; }}
.card h2 {{ margin-top: 0.75rem; border: none; }}
table.sessions {{ border-collapse: collapse; width: 100%; }}
table.sessions td, table.sessions th {{ padding: 0.4rem 0.5rem; border-bottom: 1px solid #e2e2ea; vertical-align: top; }}
table.sessions th {{ font-size: 0.85rem; color: #5a5a66; font-weight: 600; }}
table.sessions form {{ margin: 0; }}
time[title] {{ text-decoration: underline dotted #999; }}
tr.current {{ background: #f3f3ff; }}
.badge {{ display: inline-block; font-size: 0.75rem; font-weight: 600; background: #2f4fb5; color: #fff; border-radius: 999px; padding: 0 0.5rem; margin-left: 0.25rem; }}
.secret {{ background: #fff6e0; border: 1px solid #e0c070; border-radius: 6px; padding: 0.5rem 0.75rem; }}
.secret code {{ font-size: 1.05rem; user-select: all; }}
</style>
</head>
<body>
{HEADER_SLOT}
<main>
{}
</main>
</body>
</html>
"#,
        if title == SITE_NAME {
            escape(SITE_NAME)
        } else {
            format!("{} · {}", escape(title), escape(SITE_NAME))
        },
        body
    ))
}

/// Fills in the site header of every HTML page ([`HEADER_SLOT`]) for the
/// request's session, as the handler left it: after a sign-in or a
/// sign-out the header says so. Other answers pass unchanged.
async fn layout(session: Session, request: axum::extract::Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if !is_html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let page = match axum::body::to_bytes(body, MAX_PAGE_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => {
            tracing::error!(%error, "demo: reading a page to add its header failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let header = match site_header(&session).await {
        Ok(header) => header,
        Err(error) => return error.into_response(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let page = page.replacen(HEADER_SLOT, &header, 1);
    Response::from_parts(parts, axum::body::Body::from(page))
}

/// The header of every page: the site's name and, signed in, who, the
/// menu and a sign-out form; anonymous, a link to sign in. Every value
/// escaped.
async fn site_header(session: &Session) -> Result<String, keycard::Error> {
    let nav = match session.user_id().await? {
        Some(user) => {
            // A request signed in by its own credentials (a bearer token)
            // has no session to sign out of.
            let sign_out = if session.is_request_only() {
                String::new()
            } else {
                format!(
                    r#" · <form method="post" action="/logout" class="sign-out">{}<button>Sign out</button></form>"#,
                    csrf_field(session).await?
                )
            };
            format!(
                r#"<span class="who">signed in as <strong>{user}</strong></span> · <a href="/sessions">Sessions</a> · <a href="/tokens">Tokens</a> · <a href="{totp}">Two-step</a>{passkeys}{sign_out}"#,
                user = escape(&user),
                totp = escape(TOTP_URL),
                passkeys = if cfg!(feature = "passkeys") {
                    r#" · <a href="/security/passkeys">Passkeys</a>"#
                } else {
                    ""
                },
            )
        }
        None => r#"<a href="/#sign-in" class="sign-in">Sign in</a>"#.to_owned(),
    };
    Ok(format!(
        r#"<header class="site"><div class="bar"><a class="brand" href="/">{site}</a>
<nav>{nav}</nav></div></header>"#,
        site = escape(SITE_NAME),
    ))
}

/// The sign-in page (home) sending the browser on to `next`, a path on
/// this site, once signed in: what every page that needs a user answers
/// an anonymous browser, as [`CurrentUser`] does for the tokens page.
fn sign_in_url(next: &str) -> String {
    let next = local_or_home(Some(next));
    let encoded: String = next
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/?next={encoded}")
}

/// Redirects an anonymous browser to sign in, then on to `next`.
fn sign_in_first(next: &str) -> Response {
    Redirect::to(&sign_in_url(next)).into_response()
}

/// A moment as the pages show it: relative to `now` ("5 minutes ago", "in
/// 29 days"), with the exact time as its `title` and `datetime`.
fn when(at: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        r#"<time datetime="{}" title="{}">{}</time>"#,
        escape(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        escape(&time(at)),
        escape(&relative(at, now))
    )
}

/// How long before or after `now` the moment `at` is, in words.
fn relative(at: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let (future, seconds) = (seconds < 0, seconds.unsigned_abs());
    if seconds < 10 {
        return "just now".to_owned();
    }
    let (count, unit) = match seconds {
        0..60 => (seconds, "second"),
        60..3_600 => (seconds / 60, "minute"),
        3_600..86_400 => (seconds / 3_600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    let plural = if count == 1 { "" } else { "s" };
    if future {
        format!("in {count} {unit}{plural}")
    } else {
        format!("{count} {unit}{plural} ago")
    }
}

/// `onsubmit` for a form whose button destroys something: the browser
/// asks first (where scripts run; the server never depends on it).
fn ask_first(question: &str) -> String {
    format!(
        r#" onsubmit="return confirm('{}')""#,
        escape(&question.replace('\\', "\\\\").replace('\'', "\\'"))
    )
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
