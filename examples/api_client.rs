//! # keycard API client
//!
//! A real HTTP client for the `demo` example's API, showing the two ways API
//! clients sign in with keycard's [`AuthLayer`](keycard::auth::AuthLayer):
//!
//! * **HTTP Basic** with a stored session: the demo wraps the Basic
//!   retriever in [`StoredSession`](keycard::auth::StoredSession), so the
//!   client gets session cookies back and keeps them (as a tablet that syncs would);
//! * **a bearer token**, signed in for each request only: no session row is
//!   stored and no cookie is set, so a thousand calls leave no trace in the
//!   sessions table.
//!
//! Start the demo, note the passwords it prints on first start, and run the
//! client against it:
//!
//! ```text
//! cargo run --example demo
//! cargo run --example api_client -- --url http://127.0.0.1:3000 --user ada --password PW
//! cargo run --example api_client -- --url http://127.0.0.1:3000 --user ada --password PW \
//!     --user2 grace --password2 PW2 --token kc_…
//! ```
//!
//! (Create the token on the demo's "API tokens" page, signed in as any
//! user.) It shows, printing each step:
//!
//! 1. **HTTP Basic** on `GET /api/whoami`, without cookies: the server
//!    answers who the client is (`USER basic api`) and sends session
//!    cookies;
//! 2. **the same session**: the cookies sent back with the same credentials
//!    bring no new cookies, and the session keeps its values (`POST
//!    /api/visit` counts on);
//! 3. **the session swap** (with `--user2` and `--password2`): the first
//!    user's cookies with the second user's credentials: the server answers
//!    as the second user and sends new cookies; the first user's session is
//!    ended (its old cookies sign nobody in any more) and nothing of it is
//!    carried over (the visit counter starts again);
//! 4. **a bearer token** (with `--token`): `Authorization: Bearer` on
//!    `GET /api/whoami` answers as the token's owner (`USER bearer api`)
//!    and sets no cookie: the request was signed in for itself only.
//!    `POST /api/visit` with the token answers `400`: there is no session
//!    to count in. If the token is `--user`'s, the client also counts that
//!    user's sessions on the demo's sessions page (through a Basic session
//!    of its own) before and after more bearer requests, one of them
//!    carrying that session's cookies: the count does not change (no
//!    session row was stored), and the cookies still sign the user in
//!    (a bearer request leaves the cookie it brought alone).
//!
//! Exit status: 0 when every answer was the expected one, 1 on an
//! unexpected answer (what was expected and what came are printed) or when
//! the server cannot be reached, 2 on bad arguments.
//!
//! The client keeps cookies itself, from the `Set-Cookie` headers, by name
//! (it only ever talks to one server): a cookie set with `Max-Age=0` or an
//! expiry in the past is dropped. It speaks plain `http://` only.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use keycard::auth::PasswordAuthenticator;

const DEFAULT_URL: &str = "http://127.0.0.1:3000";

const USAGE: &str = "\
usage: cargo run --example api_client -- [--url URL] --user NAME --password PW
                                         [--user2 NAME --password2 PW] [--token kc_...]

  --url URL         the demo's address (default: http://127.0.0.1:3000)
  --user NAME       a demo user (the demo prints its users' passwords on first start)
  --password PW     that user's password
  --user2 NAME      a second user, for the session swap (step 3; skipped without it)
  --password2 PW    the second user's password
  --token kc_...    an API token, for step 4 (skipped without it)
  -h, --help        print this message";

/// What the command line asked for.
struct Options {
    url: String,
    user: String,
    password: String,
    second: Option<(String, String)>,
    token: Option<String>,
}

/// Why the command line was refused, or a request for help.
enum ArgsError {
    Help,
    Bad(String),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, ArgsError> {
    let mut url = None;
    let mut user = None;
    let mut password = None;
    let mut user2 = None;
    let mut password2 = None;
    let mut token = None;
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--url" => &mut url,
            "--user" => &mut user,
            "--password" => &mut password,
            "--user2" => &mut user2,
            "--password2" => &mut password2,
            "--token" => &mut token,
            other => return Err(ArgsError::Bad(format!("unknown argument {other:?}"))),
        };
        let value = args
            .next()
            .ok_or_else(|| ArgsError::Bad(format!("{flag} needs a value")))?;
        if value.is_empty() {
            return Err(ArgsError::Bad(format!("{flag}: the value is empty")));
        }
        if slot.replace(value).is_some() {
            return Err(ArgsError::Bad(format!("{flag} given twice")));
        }
    }
    let url = url.unwrap_or_else(|| DEFAULT_URL.to_owned());
    let url = url.trim_end_matches('/').to_owned();
    if url.starts_with("https://") {
        return Err(ArgsError::Bad(
            "--url: this client speaks plain http only (the demo serves http)".into(),
        ));
    }
    if !url.starts_with("http://") || url.len() <= "http://".len() {
        return Err(ArgsError::Bad(format!(
            "--url: {url:?} is not an address like {DEFAULT_URL}"
        )));
    }
    let (Some(user), Some(password)) = (user, password) else {
        return Err(ArgsError::Bad("--user and --password are required".into()));
    };
    let second = match (user2, password2) {
        (Some(user2), Some(password2)) => Some((user2, password2)),
        (None, None) => None,
        _ => {
            return Err(ArgsError::Bad("--user2 and --password2 go together".into()));
        }
    };
    for name in std::iter::once(&user).chain(second.as_ref().map(|(name, _)| name)) {
        if PasswordAuthenticator::canonical_username(name).is_none() {
            return Err(ArgsError::Bad(format!(
                "{name:?} is not a valid user name (1 to 255 characters, no `:`)"
            )));
        }
    }
    Ok(Options {
        url,
        user,
        password,
        second,
        token,
    })
}

/// Why the client stopped.
enum Failure {
    /// The server answered something else than expected.
    Unexpected {
        step: &'static str,
        expected: String,
        got: String,
    },
    /// The server could not be reached, or its answer not read.
    Transport(String),
}

/// The credentials a request carries.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

/// How many bearer requests step 4 sends between the two counts of
/// sessions.
const BEARER_CALLS: usize = 5;

/// Cookies by name, as the server set them.
type Jar = BTreeMap<String, String>;

/// An answer, read whole.
struct Reply {
    status: u16,
    body: String,
    /// The `Set-Cookie` headers, parsed.
    set_cookies: Vec<cookie::Cookie<'static>>,
}

impl Reply {
    /// The body without its trailing newline.
    fn text(&self) -> &str {
        self.body.trim_end()
    }

    /// What came, for an "unexpected answer" message.
    fn describe(&self) -> String {
        format!("{} {:?}", self.status, self.text())
    }
}

/// What `GET /api/whoami` says: `USER METHOD api|human`.
#[derive(Debug, PartialEq, Eq)]
struct WhoAmI {
    user: String,
    method: String,
    kind: String,
}

impl WhoAmI {
    fn parse(text: &str) -> Option<Self> {
        // The user id may contain spaces; the method and kind do not.
        let (rest, kind) = text.rsplit_once(' ')?;
        let (user, method) = rest.rsplit_once(' ')?;
        Some(Self {
            user: user.to_owned(),
            method: method.to_owned(),
            kind: kind.to_owned(),
        })
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        jar: &Jar,
        auth: Auth<'_>,
    ) -> Result<Reply, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if !jar.is_empty() {
            let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header(reqwest::header::COOKIE, cookies.join("; "));
        }
        request = match auth {
            Auth::None => request,
            Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Transport(format!("{method} {url}: {}", chain(&e))))?;
        let status = response.status().as_u16();
        let mut set_cookies = Vec::new();
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let parsed = value
                .to_str()
                .ok()
                .and_then(|text| cookie::Cookie::parse(text.to_owned()).ok());
            match parsed {
                Some(cookie) => set_cookies.push(cookie),
                None => {
                    return Err(Failure::Transport(format!(
                        "{method} {url}: a Set-Cookie header could not be read: {value:?}"
                    )));
                }
            }
        }
        let body = response
            .text()
            .await
            .map_err(|e| Failure::Transport(format!("{method} {url}: reading the body: {e}")))?;
        Ok(Reply {
            status,
            body,
            set_cookies,
        })
    }

    async fn whoami(&self, jar: &Jar, auth: Auth<'_>) -> Result<Reply, Failure> {
        self.send(reqwest::Method::GET, "/api/whoami", jar, auth)
            .await
    }

    async fn visit(&self, jar: &Jar, auth: Auth<'_>) -> Result<Reply, Failure> {
        self.send(reqwest::Method::POST, "/api/visit", jar, auth)
            .await
    }

    /// How many sessions the user signed in to `jar` has, as the demo's
    /// sessions page says ("Signed in as … on N browsers or devices").
    async fn session_count(&self, step: &'static str, jar: &Jar) -> Result<usize, Failure> {
        let reply = self
            .send(reqwest::Method::GET, "/sessions", jar, Auth::None)
            .await?;
        let count = if reply.status == 200 {
            session_count(&reply.body)
        } else {
            None
        };
        count.ok_or_else(|| Failure::Unexpected {
            step,
            expected: "200 and the sessions page (\"on N browsers or devices\")".into(),
            got: format!("{} ({} bytes)", reply.status, reply.body.len()),
        })
    }
}

/// The number of sessions the demo's sessions page lists.
fn session_count(page: &str) -> Option<usize> {
    let (_, rest) = page.split_once("</strong> on ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// An error with its causes ("error sending request: connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Takes the cookies an answer sets into `jar`, as a browser does; returns
/// whether the jar changed.
fn absorb(jar: &mut Jar, reply: &Reply) -> bool {
    let before = jar.clone();
    for cookie in &reply.set_cookies {
        let expired = cookie.max_age() == Some(cookie::time::Duration::ZERO)
            || cookie
                .expires_datetime()
                .is_some_and(|at| at <= cookie::time::OffsetDateTime::now_utc());
        if expired {
            jar.remove(cookie.name());
        } else {
            jar.insert(cookie.name().to_owned(), cookie.value().to_owned());
        }
    }
    *jar != before
}

/// The cookie names in `jar`, for printing (the values are secrets).
fn names(jar: &Jar) -> String {
    jar.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Checks that `reply` is `200` and says `user method api`.
fn expect_whoami(
    step: &'static str,
    reply: &Reply,
    user: Option<&str>,
    method: &str,
) -> Result<WhoAmI, Failure> {
    let who = WhoAmI::parse(reply.text());
    let fits = reply.status == 200
        && who.as_ref().is_some_and(|who| {
            user.is_none_or(|user| who.user == user) && who.method == method && who.kind == "api"
        });
    match who {
        Some(who) if fits => Ok(who),
        _ => Err(Failure::Unexpected {
            step,
            expected: format!("200 \"{} {method} api\"", user.unwrap_or("USER")),
            got: reply.describe(),
        }),
    }
}

/// Checks that `reply` sets no cookie.
fn expect_no_cookies(step: &'static str, reply: &Reply) -> Result<(), Failure> {
    expect(
        step,
        reply.set_cookies.is_empty(),
        "no Set-Cookie (signed in for this request only)",
        format!("{} Set-Cookie headers", reply.set_cookies.len()),
    )
}

/// Checks that `reply` is `200` and a count; returns it.
fn expect_count(step: &'static str, reply: &Reply) -> Result<u64, Failure> {
    match reply.text().parse() {
        Ok(count) if reply.status == 200 => Ok(count),
        _ => Err(Failure::Unexpected {
            step,
            expected: "200 and the visit count".into(),
            got: reply.describe(),
        }),
    }
}

fn expect(step: &'static str, ok: bool, expected: &str, got: String) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure::Unexpected {
            step,
            expected: expected.to_owned(),
            got,
        })
    }
}

async fn run(options: &Options) -> Result<(), Failure> {
    let http = reqwest::Client::builder()
        // Straight to the demo, whatever the environment's proxy settings.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Failure::Transport(format!("building the HTTP client: {e}")))?;
    let client = Client {
        http,
        base: options.url.clone(),
    };
    // Checked by `parse_args`; the server answers with this form.
    let user = PasswordAuthenticator::canonical_username(&options.user).unwrap_or_default();
    let basic = Auth::Basic(&options.user, &options.password);
    println!("keycard API client: talking to {}", options.url);

    // 1. HTTP Basic, no cookies yet.
    let step = "step 1 (HTTP Basic)";
    println!("\nstep 1: HTTP Basic as {user}: GET /api/whoami without cookies");
    let mut jar = Jar::new();
    let reply = client.whoami(&jar, basic).await?;
    let who = expect_whoami(step, &reply, Some(&user), "basic")?;
    println!(
        "  the server says {:?}: {} signed in by HTTP Basic, a stored API session",
        reply.text(),
        who.user
    );
    let got_cookies = absorb(&mut jar, &reply);
    expect(
        step,
        got_cookies && !jar.is_empty(),
        "session cookies (Set-Cookie)",
        format!("{} Set-Cookie headers", reply.set_cookies.len()),
    )?;
    println!("  received session cookies: {}", names(&jar));

    // 2. The same credentials with the cookies: the same session.
    let step = "step 2 (same session)";
    println!("\nstep 2: the same credentials again, with the session cookies");
    let reply = client.whoami(&jar, basic).await?;
    expect_whoami(step, &reply, Some(&user), "basic")?;
    let mut again = jar.clone();
    let changed = absorb(&mut again, &reply);
    expect(
        step,
        !changed,
        "no new cookies (the same session)",
        format!("new cookies: {}", names(&again)),
    )?;
    println!(
        "  the server says {:?}, and sends no new cookies: the same session",
        reply.text()
    );
    let first = expect_count(step, &client.visit(&jar, basic).await?)?;
    let reply = client.visit(&jar, basic).await?;
    let second = expect_count(step, &reply)?;
    expect(
        step,
        second == first + 1 && !absorb(&mut jar.clone(), &reply),
        &format!("visit count {} and no new cookies", first + 1),
        format!(
            "visit count {second}, {} Set-Cookie headers",
            reply.set_cookies.len()
        ),
    )?;
    println!("  POST /api/visit twice: {first}, then {second}: the session keeps its values");

    // 3. The session swap.
    match &options.second {
        None => println!("\nstep 3: session swap skipped (no --user2 and --password2)"),
        Some((user2_raw, password2)) => {
            let step = "step 3 (session swap)";
            let user2 = PasswordAuthenticator::canonical_username(user2_raw).unwrap_or_default();
            println!("\nstep 3: the session swap: {user}'s session cookies, {user2}'s credentials");
            let old = jar.clone();
            let reply = client
                .whoami(&jar, Auth::Basic(user2_raw, password2))
                .await?;
            expect_whoami(step, &reply, Some(&user2), "basic")?;
            let swapped = absorb(&mut jar, &reply);
            expect(
                step,
                swapped && !jar.is_empty(),
                "new session cookies",
                format!("{} Set-Cookie headers", reply.set_cookies.len()),
            )?;
            println!(
                "  the server says {:?} and sends new cookies ({}): {user}'s session was \
                 swapped for a fresh one of {user2}, in the same request",
                reply.text(),
                names(&jar)
            );
            let reply = client.whoami(&old, Auth::None).await?;
            expect(
                step,
                reply.status == 401,
                &format!("401 for {user}'s old cookies alone"),
                reply.describe(),
            )?;
            println!("  {user}'s old cookies alone: 401, that session is ended");
            let reply = client.whoami(&jar, Auth::None).await?;
            expect_whoami(step, &reply, Some(&user2), "basic")?;
            let reply = client.visit(&jar, Auth::None).await?;
            let count = expect_count(step, &reply)?;
            expect(
                step,
                count == 1,
                "visit count 1 (nothing carried over)",
                reply.describe(),
            )?;
            println!(
                "  the new cookies alone: {user2}, visit count {count}: nothing of {user}'s \
                 session was carried over"
            );
        }
    }

    // 4. A bearer token.
    match &options.token {
        None => println!("\nstep 4: bearer token skipped (no --token)"),
        Some(token) => {
            let step = "step 4 (bearer token)";
            let bearer = Auth::Bearer(token);
            println!("\nstep 4: Authorization: Bearer on GET /api/whoami, without cookies");
            let reply = client.whoami(&Jar::new(), bearer).await?;
            let who = expect_whoami(step, &reply, None, "bearer")?;
            expect_no_cookies(step, &reply)?;
            println!(
                "  the server says {:?}: the token is {}'s; no Set-Cookie: the request was \
                 signed in for itself only, no session was stored",
                reply.text(),
                who.user
            );
            let reply = client.visit(&Jar::new(), bearer).await?;
            expect(
                step,
                reply.status == 400 && reply.set_cookies.is_empty(),
                "400 and no cookie (a bearer request has no session to change)",
                reply.describe(),
            )?;
            println!("  POST /api/visit with the token: 400, there is no session to count in");
            if who.user == user {
                // A Basic session of the client's own, to read the sessions
                // page with.
                let mut own = Jar::new();
                let reply = client.whoami(&own, basic).await?;
                expect_whoami(step, &reply, Some(&user), "basic")?;
                absorb(&mut own, &reply);
                let before = client.session_count(step, &own).await?;
                for _ in 0..BEARER_CALLS {
                    let reply = client.whoami(&Jar::new(), bearer).await?;
                    expect_whoami(step, &reply, Some(&user), "bearer")?;
                    expect_no_cookies(step, &reply)?;
                }
                // The token with the Basic session's cookies: the token
                // decides, the cookies are left as they are.
                let reply = client.whoami(&own, bearer).await?;
                expect_whoami(step, &reply, Some(&user), "bearer")?;
                expect_no_cookies(step, &reply)?;
                let after = client.session_count(step, &own).await?;
                expect(
                    step,
                    after == before,
                    &format!("{before} sessions of {user}, as before the bearer requests"),
                    format!("{after} sessions"),
                )?;
                println!(
                    "  {user}'s sessions before and after {} more bearer requests (one with \
                     {user}'s session cookies): {before}, then {after}: no session row was stored",
                    BEARER_CALLS + 1
                );
                let reply = client.whoami(&own, Auth::None).await?;
                expect_whoami(step, &reply, Some(&user), "basic")?;
                println!(
                    "  the session cookies alone still say {:?}: the bearer request left them alone",
                    reply.text()
                );
            } else {
                println!(
                    "  (the token is not {user}'s: its owner's sessions are not counted here)"
                );
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Bad(message)) => {
            eprintln!("api_client: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options).await {
        Ok(()) => {
            println!("\nevery answer was the expected one");
            ExitCode::SUCCESS
        }
        Err(Failure::Unexpected {
            step,
            expected,
            got,
        }) => {
            eprintln!(
                "api_client: unexpected answer at {step}\n  expected: {expected}\n  got:      {got}"
            );
            ExitCode::from(1)
        }
        Err(Failure::Transport(message)) => {
            eprintln!("api_client: {message}");
            ExitCode::from(1)
        }
    }
}
