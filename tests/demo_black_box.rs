//! Black-box tests of `examples/demo/`, `examples/api_client.rs`,
//! `examples/notes.rs` and `examples/own_users.rs`: the real binaries, over real HTTP, on a temporary
//! SQLite file. The demo is
//! started on a free port (`--addr 127.0.0.1:0`, which it reports); the demo
//! users' passwords are read from what it prints on first start.
//!
//! Browsers are played by hand: the [`Browser`] below keeps cookies, and
//! its [`Browser::submit`] posts a form the way a browser posts one of the
//! demo's own pages (`Sec-Fetch-Site: same-origin`, the page's `Origin`
//! and the synchronizer token from the page). Forgeries send the victim's
//! cookies and a valid token, with the headers a browser sends for another
//! site's page.
//!
//! Examples are built by a full `cargo test`; for this test alone, run
//! `cargo build --all-features --examples` first.

#[path = "common/example_binary.rs"]
mod example_binary;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// How long the demo may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The body of the session layer's answer to a cross-origin unsafe request.
const CROSS_ORIGIN_REFUSED: &str = "Cross-origin request refused";

/// The demo's page for a form whose synchronizer token is missing or wrong.
const FORM_REFUSED: &str = "Form refused";

/// The heading of the demo's page that asks for the password again.
const CONFIRM_HEADING: &str = "<h1>Confirm it's you</h1>";

/// How long a sign-in counts as recent in the "sudo mode" tests
/// (`--sudo-seconds`), and how long they wait for one to be old: long
/// enough that the steps after a confirmation fit in it on a loaded CI
/// machine.
const SHORT_SUDO: &str = "3";
const PAST_SHORT_SUDO: Duration = Duration::from_millis(3_500);

/// How long the demo may take to print an e-mail line.
const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// How the demo's "e-mails" begin.
const MAIL_PREFIX: &str = "demo e-mail to ";

/// The button of the page a sign-in link opens.
const LINK_BUTTON: &str = "Sign in as the link's owner";

/// The demo's answer to a request for a sign-in link.
const LINK_ON_ITS_WAY: &str = "If that account exists, a sign-in link is on its way.";

/// The demo's answer to a sign-in link that cannot sign in.
const LINK_INVALID: &str = "This link is not valid any more.";

/// The remember-me cookie, as the demo names it (development cookies: no
/// `__Host-` prefix).
const REMEMBER_COOKIE: &str = "keycard-remember";

/// How long the demo remembers a browser by default (`--remember-days`
/// 30), in seconds.
const THIRTY_DAYS: i64 = 30 * 24 * 60 * 60;

/// The sign-in form's "remember me" box.
const REMEMBER_BOX: &str = r#"<input type="checkbox" name="remember" value="on">"#;

/// The two-step sign-in page of a signed-in user.
const TOTP_PAGE: &str = "/security/totp";

/// The page that asks a half-open sign-in for its code.
const CODE_PAGE: &str = "/login/code";

/// The heading of the code page.
const CODE_HEADING: &str = "<h1>Enter your code</h1>";

/// What the code page says of a wrong or used code.
const WRONG_CODE: &str = "Wrong code, or one used already.";

/// The heading of the page for a half-open sign-in that waited too long.
const SIGN_IN_EXPIRED: &str = "<h1>Sign-in expired</h1>";

/// The length of a TOTP step, in seconds.
const TOTP_STEP: u64 = 30;

/// A running demo, killed when dropped.
struct Demo {
    child: Child,
    base: String,
    /// The SQLite file it keeps everything in.
    db: PathBuf,
    /// What it printed before it listened.
    lines: Vec<String>,
    /// Every line it printed so far, before and after it listened.
    output: Arc<Mutex<Vec<String>>>,
    /// The demo users it created, with their passwords.
    users: BTreeMap<String, String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts the demo on `db` and waits for its address.
    fn start(db: &Path) -> Demo {
        Self::start_with(db, &[])
    }

    /// Starts the demo on `db` with the further arguments `args`.
    fn start_with(db: &Path, args: &[&str]) -> Demo {
        Self::start_example_with("demo", "keycard demo: listening on ", db, args)
    }

    /// Starts the example `name` on `db` and waits for the line that
    /// begins with `banner` and ends with its address.
    fn start_example(name: &str, banner: &str, db: &Path) -> Demo {
        Self::start_example_with(name, banner, db, &[])
    }

    /// [`Demo::start_example`] with the further arguments `args`.
    fn start_example_with(name: &str, banner: &str, db: &Path, args: &[&str]) -> Demo {
        let mut child = Command::new(example_binary::example_binary(name))
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(db)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("stdout");
        // A thread reads every line (so the pipe never fills up) and hands
        // them over; the test waits for the banner with a timeout.
        let (lines_tx, lines_rx) = mpsc::channel();
        let output = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                kept.lock().expect("the output").push(line.clone());
                if lines_tx.send(line).is_err() {
                    // Nobody listens any more: keep draining.
                    continue;
                }
            }
        });
        let mut demo = Demo {
            child,
            base: String::new(),
            db: db.to_owned(),
            lines: Vec::new(),
            output,
            users: BTreeMap::new(),
        };
        loop {
            let line = match lines_rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => line,
                Err(error) => panic!(
                    "the demo did not print its address ({error:?}); it printed {:#?}",
                    demo.lines
                ),
            };
            if let Some(base) = line.strip_prefix(banner) {
                demo.base = base.trim().to_owned();
                break;
            }
            if let Some(rest) = line.strip_prefix("keycard demo: created user ") {
                let (user, rest) = rest
                    .split_once(", password ")
                    .unwrap_or_else(|| panic!("unexpected credentials line {line:?}"));
                let password = rest.split_whitespace().next().expect("a password");
                demo.users.insert(user.to_owned(), password.to_owned());
            }
            demo.lines.push(line);
        }
        assert!(demo.base.starts_with("http://127.0.0.1:"), "{}", demo.base);
        demo
    }

    /// The password printed for `user`.
    fn password(&self, user: &str) -> &str {
        self.users
            .get(user)
            .unwrap_or_else(|| panic!("no password printed for {user}: {:#?}", self.lines))
    }

    /// The "e-mails" it printed so far, in order.
    fn mails(&self) -> Vec<String> {
        self.output
            .lock()
            .expect("the output")
            .iter()
            .filter(|line| line.starts_with(MAIL_PREFIX))
            .cloned()
            .collect()
    }

    /// Waits for the e-mail after the first `seen` ones, and returns it.
    async fn mail_after(&self, seen: usize) -> String {
        let deadline = std::time::Instant::now() + MAIL_TIMEOUT;
        loop {
            if let Some(mail) = self.mails().get(seen) {
                return mail.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no e-mail after the first {seen}: {:#?}",
                self.output.lock().expect("the output")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks for a sign-in link for `user` through `browser`'s home page and
    /// returns the link's secret, read from the e-mail the demo printed.
    async fn sign_in_link(&self, browser: &mut Browser, user: &str) -> String {
        let seen = self.mails().len();
        let reply = browser.request_link(user).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.body.contains(LINK_ON_ITS_WAY), "{}", reply.body);
        let mail = self.mail_after(seen).await;
        let prefix = format!(
            "{MAIL_PREFIX}{user}: sign-in link {}/login/link?token=",
            self.base
        );
        let secret = mail
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{mail:?} is not {prefix:?}…"))
            .to_owned();
        assert_eq!(secret.len(), 43, "{mail:?}");
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "base64url: {mail:?}"
        );
        secret
    }

    /// The port it listens on.
    fn port(&self) -> u16 {
        self.base
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.base))
    }

    /// Another port of the same host: a sibling site, same-site but
    /// cross-origin.
    fn sibling_origin(&self) -> String {
        let port = self.port();
        let other = if port == u16::MAX { port - 1 } else { port + 1 };
        format!("http://127.0.0.1:{other}")
    }

    /// How many rows the sessions table holds, read from the demo's SQLite
    /// file beside it (read-only).
    async fn session_rows(&self) -> i64 {
        let url = format!("sqlite://{}?mode=ro", self.db.display());
        let pool = sqlx::SqlitePool::connect(&url)
            .await
            .expect("open the demo's database read-only");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keycard_sessions")
            .fetch_one(&pool)
            .await
            .expect("count the session rows");
        pool.close().await;
        rows
    }
}

/// A response, read whole.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Every value of the header `name`, joined with `, `.
    fn all(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether `Vary` names `Cookie`.
    fn varies_on_cookie(&self) -> bool {
        self.all("vary")
            .split(',')
            .any(|name| name.trim().eq_ignore_ascii_case("cookie"))
    }
}

/// A tiny browser: remembers the cookies the server sets, follows no
/// redirects.
struct Browser {
    http: reqwest::Client,
    base: String,
    jar: BTreeMap<String, String>,
}

impl Browser {
    fn new(demo: &Demo) -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            base: demo.base.clone(),
            jar: BTreeMap::new(),
        }
    }

    async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !self.jar.is_empty() {
            let cookies: Vec<_> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", cookies.join("; "));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(form) = form {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encode_form(form));
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for value in headers.get_all("set-cookie") {
            let c = cookie::Cookie::parse(value.to_str().expect("ASCII").to_owned())
                .expect("a valid Set-Cookie");
            if c.max_age() == Some(cookie::time::Duration::ZERO) {
                self.jar.remove(c.name());
            } else {
                self.jar.insert(c.name().to_owned(), c.value().to_owned());
            }
        }
        let body = response.text().await.expect("body");
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None, &[]).await
    }

    async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(reqwest::Method::GET, path, None, headers).await
    }

    /// A bare `POST`, as `curl` sends it: no `Origin`, no `Sec-Fetch-Site`,
    /// no synchronizer token unless `form` has one.
    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.send(reqwest::Method::POST, path, Some(form), &[])
            .await
    }

    /// The synchronizer token of the forms on the home page, as the server
    /// renders it now for this browser's cookies.
    async fn token(&mut self) -> String {
        let home = self.get("/").await;
        assert_eq!(home.status, 200, "{}", home.body);
        csrf_token(&home.body).unwrap_or_else(|| panic!("no synchronizer token:\n{}", home.body))
    }

    /// Posts `form` the way a browser posts one of the demo's own pages
    /// (`Sec-Fetch-Site: same-origin`, `Origin` of the demo), with
    /// `csrf_token` set to `token` if there is one.
    async fn post_from_page(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        token: Option<&str>,
    ) -> Reply {
        let mut fields = form.to_vec();
        if let Some(token) = token {
            fields.push(("csrf_token", token));
        }
        let origin = self.base.clone();
        self.send(
            reqwest::Method::POST,
            path,
            Some(&fields),
            &[("sec-fetch-site", "same-origin"), ("origin", &origin)],
        )
        .await
    }

    /// Loads the home page and submits `form` to `path` with the page's
    /// token, as a user clicking the button would.
    async fn submit(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let token = self.token().await;
        self.post_from_page(path, form, Some(&token)).await
    }

    /// [`Browser::submit`], also saying `Accept: text/html` as a browser's
    /// form navigation does: the guards send such a client to a page (the
    /// confirmation page) rather than refuse it.
    async fn submit_html(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let token = self.token().await;
        let mut fields = form.to_vec();
        fields.push(("csrf_token", &token));
        let origin = self.base.clone();
        self.send(
            reqwest::Method::POST,
            path,
            Some(&fields),
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", &origin),
                ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            ],
        )
        .await
    }

    /// Confirms the password on the confirmation page, going on to `next`.
    async fn confirm(&mut self, password: &str, next: &str) -> Reply {
        self.submit_html("/confirm", &[("password", password), ("next", next)])
            .await
    }

    /// Signs in as `user` through the sign-in form, and checks it worked.
    async fn sign_in(&mut self, user: &str, password: &str) {
        let reply = self
            .submit("/login", &[("name", user), ("password", password)])
            .await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, "/"),
            "{}",
            reply.body
        );
        assert_eq!(self.user().await.as_deref(), Some(user));
    }

    /// Signs in as `user` with "remember me on this device" ticked, checks
    /// it worked, and returns the sign-in's answer.
    async fn sign_in_remembered(&mut self, user: &str, password: &str) -> Reply {
        let reply = self
            .submit(
                "/login",
                &[("name", user), ("password", password), ("remember", "on")],
            )
            .await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, "/"),
            "{}",
            reply.body
        );
        assert!(
            self.jar.contains_key(REMEMBER_COOKIE),
            "a remember-me cookie: {:?}",
            reply.headers
        );
        assert_eq!(self.user().await.as_deref(), Some(user));
        reply
    }

    /// The value of this browser's remember-me cookie.
    fn remember_cookie(&self) -> String {
        self.jar
            .get(REMEMBER_COOKIE)
            .unwrap_or_else(|| panic!("no remember-me cookie: {:?}", self.jar))
            .clone()
    }

    /// A browser of `demo` holding only the remember-me cookie `value`:
    /// one that was closed and opened again (its session cookies were
    /// for the browsing session only), or that got hold of a copy.
    fn with_remember_cookie(demo: &Demo, value: &str) -> Self {
        let mut browser = Browser::new(demo);
        browser
            .jar
            .insert(REMEMBER_COOKIE.to_owned(), value.to_owned());
        browser
    }

    /// This browser's remembered browser on its sessions page: its id.
    async fn remembered_id(&mut self) -> String {
        let page = self.get("/sessions").await;
        assert_eq!(page.status, 200, "{}", page.body);
        remembered_rows(&page.body)
            .into_iter()
            .find_map(|(id, current)| current.then_some(id))
            .unwrap_or_else(|| panic!("this browser is not remembered:\n{}", page.body))
    }

    /// Who the home page says is signed in; `None` for anonymous.
    async fn user(&mut self) -> Option<String> {
        let home = self.get("/").await;
        assert_eq!(home.status, 200, "{}", home.body);
        signed_in_user(&home.body)
    }

    /// The visit counter on the home page.
    async fn visits(&mut self) -> u64 {
        let home = self.get("/").await;
        let start = home
            .body
            .find(r#"<td id="visits">"#)
            .unwrap_or_else(|| panic!("no visit counter:\n{}", home.body))
            + r#"<td id="visits">"#.len();
        let end = home.body[start..]
            .find("</td>")
            .expect("end of the counter")
            + start;
        home.body[start..end].parse().expect("a count")
    }

    /// Opens the sign-in link with `secret` and presses its button, as its
    /// owner would: the page must not sign anybody in by itself.
    async fn redeem_link(&mut self, secret: &str) -> Reply {
        let page = self.get(&format!("/login/link?token={secret}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains(LINK_BUTTON), "{}", page.body);
        assert!(
            page.body.contains(&format!(
                r#"<input type="hidden" name="token" value="{secret}">"#
            )),
            "{}",
            page.body
        );
        let token = csrf_token(&page.body)
            .unwrap_or_else(|| panic!("no synchronizer token:\n{}", page.body));
        self.post_from_page("/login/link/redeem", &[("token", secret)], Some(&token))
            .await
    }

    /// Asks for a sign-in link for `name` from the home page: the request
    /// goes on (`303`) to the page saying a link is on its way, which this
    /// returns (a reload of it sends nothing).
    async fn request_link(&mut self, name: &str) -> Reply {
        let reply = self.submit("/login/link", &[("name", name)]).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, "/login/link/sent"),
            "{name:.20}: {}",
            reply.body
        );
        self.get("/login/link/sent").await
    }

    /// Creates a token through the tokens page; its id and secret.
    async fn create_token(&mut self, name: &str) -> (String, String) {
        let before = revoke_ids(&self.get("/tokens").await.body);
        let reply = self.submit("/tokens", &[("name", name)]).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, "/tokens"),
            "{}",
            reply.body
        );
        let page = self.get("/tokens").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let secret = new_token_secret(&page.body);
        let id = revoke_ids(&page.body)
            .into_iter()
            .find(|id| !before.contains(id))
            .expect("the new token's revoke form");
        (id, secret)
    }
}

/// `application/x-www-form-urlencoded`, every byte but the unreserved ones
/// percent-encoded.
fn encode_form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The synchronizer token in the forms of `page`: every form carries the
/// same one. `None` when the page has none.
fn csrf_token(page: &str) -> Option<String> {
    const FIELD: &str = r#"<input type="hidden" name="csrf_token" value=""#;
    let tokens: Vec<&str> = page
        .split(FIELD)
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(token, _)| token))
        .collect();
    let first = *tokens.first()?;
    assert!(
        tokens.iter().all(|token| *token == first),
        "one token per page: {tokens:?}"
    );
    assert!(first.len() >= 32, "{first:?}");
    Some(first.to_owned())
}

/// Who a home page says is signed in.
fn signed_in_user(home: &str) -> Option<String> {
    let (_, rest) = home.split_once("signed in as <strong>")?;
    rest.split_once("</strong>")
        .map(|(user, _)| user.to_owned())
}

/// The secret a tokens page shows right after a token was created.
fn new_token_secret(page: &str) -> String {
    let start = page
        .find(r#"<code id="new-token">"#)
        .unwrap_or_else(|| panic!("no new token on the page:\n{page}"))
        + r#"<code id="new-token">"#.len();
    let end = page[start..].find("</code>").expect("end of the token") + start;
    let secret = page[start..end].to_owned();
    assert!(secret.starts_with("kc_"), "{secret:?}");
    secret
}

/// The ids in the revoke forms of a tokens page, in page order (oldest
/// token first).
fn revoke_ids(page: &str) -> Vec<String> {
    page.split(r#"action="/tokens/"#)
        .skip(1)
        .filter_map(|rest| rest.split_once(r#"/revoke""#).map(|(id, _)| id.to_owned()))
        .collect()
}

/// The remembered browsers on a sessions page, in page order: the id in
/// each one's revoke form, and whether it is "(this browser)".
fn remembered_rows(page: &str) -> Vec<(String, bool)> {
    page.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(r#"action="/remembered/"#)?;
            let (id, _) = rest.split_once(r#"/revoke""#)?;
            Some((id.to_owned(), line.contains("(this browser)")))
        })
        .collect()
}

/// The ids of the remembered browsers on a sessions page.
fn remembered_ids(page: &str) -> Vec<String> {
    remembered_rows(page)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// The cookie `name` that `reply` sets, if it sets one.
fn set_cookie(reply: &Reply, name: &str) -> Option<cookie::Cookie<'static>> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| cookie::Cookie::parse(value.to_owned()).ok())
        .find(|cookie| cookie.name() == name)
}

/// Whether `reply` removes the cookie `name` (`Max-Age=0`).
fn removes_cookie(reply: &Reply, name: &str) -> bool {
    set_cookie(reply, name)
        .is_some_and(|cookie| cookie.max_age() == Some(cookie::time::Duration::ZERO))
}

/// The cookies of `jar` but the remember-me one: the session's.
fn session_cookies(jar: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    jar.iter()
        .filter(|(name, _)| *name != REMEMBER_COOKIE)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// The ids of the other sessions a sessions page offers to end.
fn other_session_ids(page: &str) -> Vec<String> {
    page.split(r#"action="/sessions/"#)
        .skip(1)
        .filter_map(|rest| rest.split_once(r#"/end""#).map(|(id, _)| id.to_owned()))
        .collect()
}

/// Runs the `api_client` example with `args`: its exit code and output.
async fn api_client(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(example_binary::example_binary("api_client"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run api_client");
    (
        output.status.code().expect("an exit code, not a signal"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `GET /api/whoami` with `Authorization: Bearer secret` and no cookie: its
/// status and body.
async fn bearer_whoami(http: &reqwest::Client, demo: &Demo, secret: &str) -> (u16, String) {
    let response = http
        .get(format!("{}/api/whoami", demo.base))
        .bearer_auth(secret)
        .send()
        .await
        .expect("request");
    assert!(
        response.headers().get("set-cookie").is_none(),
        "a bearer request sets no cookie"
    );
    let status = response.status().as_u16();
    (
        status,
        response.text().await.expect("body").trim().to_owned(),
    )
}

/// A plain HTTP client with no cookie store.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// What the victim of a forgery has, as the demo's pages show it; a
/// forged request must leave all of it as it was.
#[derive(Debug, PartialEq, Eq)]
struct Account {
    /// Who the victim's cookies sign in.
    user: Option<String>,
    visits: u64,
    /// The other sessions on the victim's sessions page.
    other_sessions: Vec<String>,
    /// The token ids on the victim's tokens page.
    tokens: Vec<String>,
    /// The remembered browsers on the victim's sessions page.
    remembered: Vec<(String, bool)>,
    /// Who the victim's other browser is signed in as.
    other_browser: Option<String>,
    /// What the victim's two-step sign-in page says of it (off, being
    /// set up, on).
    two_step: String,
}

impl Account {
    async fn read(victim: &mut Browser, other: &mut Browser) -> Self {
        let user = victim.user().await;
        let visits = victim.visits().await;
        let sessions = victim.get("/sessions").await;
        assert_eq!(sessions.status, 200, "{}", sessions.body);
        let tokens = victim.get("/tokens").await;
        assert_eq!(tokens.status, 200, "{}", tokens.body);
        let two_step = victim.get(TOTP_PAGE).await;
        assert_eq!(two_step.status, 200, "{}", two_step.body);
        Self {
            user,
            visits,
            other_sessions: other_session_ids(&sessions.body),
            tokens: revoke_ids(&tokens.body),
            remembered: remembered_rows(&sessions.body),
            other_browser: other.user().await,
            two_step: two_step_status(&two_step.body),
        }
    }
}

/// A victim signed in as ada, with a visit counted, one token and a second
/// signed-in browser, both remembered; and grace's password, for the
/// attacker's forms.
struct Scene {
    demo: Demo,
    victim: Browser,
    other: Browser,
    ada_password: String,
    grace_password: String,
    token_id: String,
    token_secret: String,
    other_session: String,
    /// The other browser's remembered browser: a forged revocation would
    /// sign it out.
    other_remembered: String,
    /// A sign-in link of grace's, unused: a forged redemption would sign
    /// the victim in as grace.
    grace_link: String,
}

impl Scene {
    async fn new(dir: &Path) -> Self {
        let demo = Demo::start(&dir.join("demo.db"));
        let ada_password = demo.password("ada").to_owned();
        let grace_password = demo.password("grace").to_owned();
        let mut victim = Browser::new(&demo);
        victim.sign_in_remembered("ada", &ada_password).await;
        let reply = victim.submit("/visit", &[]).await;
        assert_eq!(reply.status, 303, "{}", reply.body);
        assert_eq!(victim.visits().await, 1);
        let (token_id, token_secret) = victim.create_token("victim's token").await;
        let mut other = Browser::new(&demo);
        other.sign_in_remembered("ada", &ada_password).await;
        let other_remembered = other.remembered_id().await;
        let others = other_session_ids(&victim.get("/sessions").await.body);
        assert_eq!(others.len(), 1, "{others:?}");
        let other_session = others[0].clone();
        let grace_link = demo.sign_in_link(&mut Browser::new(&demo), "grace").await;
        Self {
            demo,
            victim,
            other,
            ada_password,
            grace_password,
            token_id,
            token_secret,
            other_session,
            other_remembered,
            grace_link,
        }
    }

    /// Every state-changing route of the demo, with the fields of its form
    /// (an attacker's choice of them): path and fields.
    fn routes(&self) -> Vec<(String, Vec<(&'static str, String)>)> {
        vec![
            ("/visit".to_owned(), vec![]),
            (
                "/login".to_owned(),
                vec![
                    ("name", "grace".to_owned()),
                    ("password", self.grace_password.clone()),
                ],
            ),
            ("/login/link".to_owned(), vec![("name", "ada".to_owned())]),
            (
                "/login/link/redeem".to_owned(),
                vec![("token", self.grace_link.clone())],
            ),
            ("/logout".to_owned(), vec![]),
            ("/sessions/end-others".to_owned(), vec![]),
            (format!("/sessions/{}/end", self.other_session), vec![]),
            ("/tokens".to_owned(), vec![("name", "forged".to_owned())]),
            (format!("/tokens/{}/revoke", self.token_id), vec![]),
            (
                format!("/remembered/{}/revoke", self.other_remembered),
                vec![],
            ),
            ("/remembered/forget".to_owned(), vec![]),
            (
                "/account/password".to_owned(),
                vec![
                    ("current", self.ada_password.clone()),
                    ("new", "forged password".to_owned()),
                ],
            ),
            (
                "/confirm".to_owned(),
                vec![
                    ("password", self.ada_password.clone()),
                    ("next", "/tokens".to_owned()),
                ],
            ),
            (
                "/login/code".to_owned(),
                vec![("code", "123456".to_owned())],
            ),
            ("/security/totp/setup".to_owned(), vec![]),
            (
                "/security/totp/confirm".to_owned(),
                vec![("code", "123456".to_owned())],
            ),
            (
                "/security/totp/recovery-codes".to_owned(),
                vec![("password", self.ada_password.clone())],
            ),
            (
                "/security/totp/remove".to_owned(),
                vec![("password", self.ada_password.clone())],
            ),
        ]
    }

    async fn account(&mut self) -> Account {
        Account::read(&mut self.victim, &mut self.other).await
    }

    /// Checks that ada's password is still the printed one (and not the
    /// forged one), and that the victim's token still signs in.
    async fn check_credentials_unchanged(&self) {
        let mut fresh = Browser::new(&self.demo);
        let forged = fresh
            .submit(
                "/login",
                &[("name", "ada"), ("password", "forged password")],
            )
            .await;
        assert_eq!(forged.status, 401, "the password was not changed");
        fresh.sign_in("ada", &self.ada_password).await;
        let (status, body) = bearer_whoami(&plain_client(), &self.demo, &self.token_secret).await;
        assert_eq!((status, body.as_str()), (200, "ada bearer api"));
    }

    /// Checks that no refused request sent a mail (the only one is grace's
    /// from the start) nor used grace's link, by using it now.
    async fn check_link_unused(&self) {
        assert_eq!(self.demo.mails().len(), 1, "{:#?}", self.demo.mails());
        let mut fresh = Browser::new(&self.demo);
        let reply = fresh.redeem_link(&self.grace_link).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, "/"),
            "{}",
            reply.body
        );
        assert_eq!(fresh.user().await.as_deref(), Some("grace"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_signs_in_with_passwords_and_serves_api_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let ada_password = demo.password("ada").to_owned();
    let grace_password = demo.password("grace").to_owned();
    assert_eq!(ada_password.len(), 16);
    assert_ne!(ada_password, grace_password);

    // Anonymous: the API challenges, the tokens page sends browsers to sign in.
    let mut browser = Browser::new(&demo);
    let reply = browser.get("/api/whoami").await;
    assert_eq!(reply.status, 401);
    let challenges: Vec<_> = reply
        .headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer")),
        "{challenges:?}"
    );
    let reply = browser
        .get_with("/tokens", &[("accept", "text/html")])
        .await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), "/?next=/tokens");
    let reply = browser.get("/?next=/tokens").await;
    assert!(
        reply
            .body
            .contains(r#"<input type="hidden" name="next" value="/tokens">"#),
        "{}",
        reply.body
    );
    // Asking for the forms' token stores no session.
    assert!(csrf_token(&reply.body).is_some(), "{}", reply.body);
    assert!(browser.jar.is_empty(), "no session for a page view");

    // Wrong password, unknown user: the same 401 page, no session.
    let wrong = browser
        .submit(
            "/login",
            &[("name", "ada"), ("password", "not the password")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong user name or password."));
    let unknown = browser
        .submit("/login", &[("name", "nobody"), ("password", "whatever")])
        .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.body, wrong.body, "one answer whatever the reason");
    assert!(browser.jar.is_empty(), "no session for failed sign-ins");
    let empty = browser
        .submit("/login", &[("name", "ada"), ("password", "")])
        .await;
    assert_eq!(empty.status, 400);

    // The right password signs in, and goes where it was asked to.
    let reply = browser
        .submit(
            "/login",
            &[
                ("name", "Ada"),
                ("password", &ada_password),
                ("next", "/tokens"),
            ],
        )
        .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(reply.header("location"), "/tokens");
    assert!(!browser.jar.is_empty(), "session cookies");
    let home = browser.get("/").await;
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("signed in as <strong>ada</strong>"),
        "{}",
        home.body
    );
    assert!(home.body.contains(r#"href="/tokens""#));
    let reply = browser.get("/api/whoami").await;
    assert_eq!(
        (reply.status, reply.body.trim()),
        (200, "ada password human")
    );
    // A redirect elsewhere is refused: home instead.
    let mut other = Browser::new(&demo);
    let reply = other
        .submit(
            "/login",
            &[
                ("name", "grace"),
                ("password", &grace_password),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/"),
        "no open redirect"
    );

    // An API token, created through the page: the POST redirects, and the
    // tokens page shows the secret once.
    let reply = browser
        .submit("/tokens", &[("name", "ci <pipeline>")])
        .await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/tokens"),
        "{}",
        reply.body
    );
    assert!(
        !reply.body.contains("kc_"),
        "the secret is not on the POST's answer"
    );
    let page = browser.get("/tokens").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("cache-control"), "no-store");
    let secret = new_token_secret(&page.body);
    assert!(page.body.contains("ci &lt;pipeline&gt;"), "escaped");
    assert!(!page.body.contains("<pipeline>"), "escaped");
    let page = browser.get("/tokens").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ci &lt;pipeline&gt;"));
    assert!(!page.body.contains(&secret), "the secret is shown once");
    assert!(!page.body.contains("new-token"));

    // Bad forms and ids.
    assert_eq!(
        browser.submit("/tokens", &[("name", " ")]).await.status,
        400
    );
    assert_eq!(browser.submit("/tokens/abc/revoke", &[]).await.status, 400);
    assert_eq!(browser.submit("/tokens/0/revoke", &[]).await.status, 400);
    assert_eq!(
        browser
            .submit("/tokens/99999999999999999999/revoke", &[])
            .await
            .status,
        400
    );
    assert_eq!(browser.submit("/sessions/abc/end", &[]).await.status, 400);

    // A second token, revoked: it signs nobody in any more.
    let (temporary_id, temporary) = browser.create_token("temporary").await;
    let ids = revoke_ids(&browser.get("/tokens").await.body);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[1], temporary_id);
    let reply = browser
        .submit(&format!("/tokens/{temporary_id}/revoke"), &[])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, "/tokens"));
    let page = browser.get("/tokens").await;
    assert!(page.body.contains("Token revoked"), "{}", page.body);
    assert!(!page.body.contains("temporary"));
    assert_eq!(revoke_ids(&page.body), ids[..1]);
    let http = plain_client();
    assert_eq!(
        bearer_whoami(&http, &demo, &temporary).await.0,
        401,
        "a revoked token"
    );

    // The live token signs in as its owner, as an API client, for the
    // request only: no cookie.
    let (status, body) = bearer_whoami(&http, &demo, &secret).await;
    assert_eq!((status, body.as_str()), (200, "ada bearer api"));
    let bearer = format!("Bearer {secret}");
    let mut api = Browser::new(&demo);
    // A token may not mint tokens.
    let reply = api
        .send(
            reqwest::Method::POST,
            "/tokens",
            Some(&[("name", "more")]),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains("Not with a token"), "{}", reply.body);
    // Nor end sessions.
    let reply = api
        .send(
            reqwest::Method::POST,
            "/sessions/end-others",
            Some(&[]),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(browser.user().await.as_deref(), Some("ada"), "not ended");
    // It has no session to count a visit in: 400.
    let reply = api
        .send(
            reqwest::Method::POST,
            "/api/visit",
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(api.jar.is_empty(), "a bearer request sets no cookie");
    // The tokens page reads fine with a bearer token, without its forms.
    let reply = api.get_with("/tokens", &[("authorization", &bearer)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("ci &lt;pipeline&gt;"), "{}", reply.body);
    assert!(revoke_ids(&reply.body).is_empty(), "{}", reply.body);
    assert!(api.jar.is_empty(), "a bearer request sets no cookie");

    // The visit counter of the API.
    let mut visitor = Browser::new(&demo);
    assert_eq!(visitor.post("/api/visit", &[]).await.body.trim(), "1");
    assert_eq!(visitor.post("/api/visit", &[]).await.body.trim(), "2");

    // The API client, against the running demo, with both users and the token.
    let (code, stdout, stderr) = api_client(&[
        "--url",
        &demo.base,
        "--user",
        "ada",
        "--password",
        &ada_password,
        "--user2",
        "grace",
        "--password2",
        &grace_password,
        "--token",
        &secret,
    ])
    .await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("swap"), "{stdout}");
    assert!(stdout.contains("\"grace basic api\""), "{stdout}");
    assert!(stdout.contains("\"ada bearer api\""), "{stdout}");
    assert!(stdout.contains("no session row was stored"), "{stdout}");
    assert!(!stdout.contains("skipped"), "{stdout}");

    // A wrong password is an unexpected answer: exit 1, saying what came.
    let (code, _, stderr) = api_client(&[
        "--url",
        &demo.base,
        "--user",
        "grace",
        "--password",
        "not the password",
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("expected"), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
}

/// A page of another origin posts the demo's forms with the victim's
/// cookies and even a valid synchronizer token (as if it had stolen one):
/// from a sibling port of the same host (same-site, which `SameSite`
/// cookies let through), from another site, with only `Origin`, and with
/// `Origin: null`. The session layer refuses each before the handler runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cross_origin_posts_change_nothing_on_any_route() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut scene = Scene::new(dir.path()).await;
    let sibling = scene.demo.sibling_origin();
    let forgeries: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "a sibling port",
            vec![("sec-fetch-site", "same-site"), ("origin", &sibling)],
        ),
        (
            "another site",
            vec![
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://evil.example"),
            ],
        ),
        ("a sibling port, Origin only", vec![("origin", &sibling)]),
        ("Origin: null", vec![("origin", "null")]),
    ];
    let before = scene.account().await;
    assert_eq!(before.user.as_deref(), Some("ada"));
    assert_eq!(before.visits, 1);
    assert!(
        before.two_step.contains("<strong>off</strong>"),
        "{}",
        before.two_step
    );
    assert_eq!(before.other_sessions, [scene.other_session.clone()]);
    assert_eq!(before.tokens, [scene.token_id.clone()]);
    assert_eq!(before.other_browser.as_deref(), Some("ada"));
    assert_eq!(before.remembered.len(), 2, "{:?}", before.remembered);
    assert_eq!(
        before
            .remembered
            .iter()
            .filter(|(_, current)| *current)
            .count(),
        1,
        "{:?}",
        before.remembered
    );
    let token = scene.victim.token().await;
    let routes = scene.routes();

    for (what, headers) in &forgeries {
        for (path, fields) in &routes {
            let mut form: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            form.push(("csrf_token", &token));
            let jar = scene.victim.jar.clone();
            let reply = scene
                .victim
                .send(reqwest::Method::POST, path, Some(&form), headers)
                .await;
            assert_eq!(reply.status, 403, "{what}, POST {path}: {}", reply.body);
            assert!(
                reply.body.contains(CROSS_ORIGIN_REFUSED),
                "{what}, POST {path}: refused by the layer: {}",
                reply.body
            );
            assert!(
                reply.headers.get("set-cookie").is_none(),
                "{what}, POST {path}: no cookie"
            );
            assert_eq!(scene.victim.jar, jar, "{what}, POST {path}");
            assert_eq!(
                scene.account().await,
                before,
                "{what}, POST {path} changed something"
            );
        }

        // Login CSRF: a visitor with no session is not signed in to the
        // attacker's account.
        let mut visitor = Browser::new(&scene.demo);
        let token = visitor.token().await;
        let reply = visitor
            .send(
                reqwest::Method::POST,
                "/login",
                Some(&[
                    ("name", "grace"),
                    ("password", &scene.grace_password),
                    ("csrf_token", &token),
                ]),
                headers,
            )
            .await;
        assert_eq!(reply.status, 403, "{what}: {}", reply.body);
        assert!(reply.headers.get("set-cookie").is_none(), "{what}");
        assert!(visitor.jar.is_empty(), "{what}");
        assert_eq!(visitor.user().await, None, "{what}");
    }

    assert_eq!(
        scene.victim.token().await,
        token,
        "the session was not rotated"
    );
    scene.check_credentials_unchanged().await;
    scene.check_link_unused().await;
}

/// Same-origin posts need the session's own synchronizer token: without
/// it, or with another session's, each route answers 403 and changes
/// nothing; with it, each does its work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_posts_need_the_sessions_own_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut scene = Scene::new(dir.path()).await;
    let mut grace = Browser::new(&scene.demo);
    grace.sign_in("grace", &scene.grace_password.clone()).await;
    let grace_token = grace.token().await;
    let other_token = scene.other.token().await;
    let token = scene.victim.token().await;
    assert_ne!(token, other_token, "one token per session");
    assert_ne!(token, grace_token, "one token per session");
    let before = scene.account().await;

    let routes = scene.routes();
    let wrong = [
        ("no token", None),
        (
            "the token of the user's other session",
            Some(other_token.as_str()),
        ),
        ("another user's token", Some(grace_token.as_str())),
        (
            "a made-up token",
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
    ];
    for (what, presented) in wrong {
        for (path, fields) in &routes {
            let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let reply = scene.victim.post_from_page(path, &form, presented).await;
            assert_eq!(reply.status, 403, "{what}, POST {path}: {}", reply.body);
            assert!(
                reply.body.contains(FORM_REFUSED),
                "{what}, POST {path}: {}",
                reply.body
            );
            assert!(
                reply.headers.get("set-cookie").is_none(),
                "{what}, POST {path}: no cookie"
            );
            assert_eq!(
                scene.account().await,
                before,
                "{what}, POST {path} changed something"
            );
        }
    }
    // Two different tokens in one form are no token.
    let reply = scene
        .victim
        .send(
            reqwest::Method::POST,
            "/visit",
            Some(&[("csrf_token", &token), ("csrf_token", &other_token)]),
            &[],
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(scene.victim.visits().await, 1);
    scene.check_credentials_unchanged().await;
    scene.check_link_unused().await;

    // With the page's token, each route does its work.
    let victim = &mut scene.victim;
    let reply = victim.submit("/visit", &[]).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(victim.visits().await, 2);

    let (id, secret) = victim.create_token("second").await;
    let (status, body) = bearer_whoami(&plain_client(), &scene.demo, &secret).await;
    assert_eq!((status, body.as_str()), (200, "ada bearer api"));
    let reply = victim.submit(&format!("/tokens/{id}/revoke"), &[]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/tokens"));
    assert_eq!(
        revoke_ids(&victim.get("/tokens").await.body),
        [scene.token_id.clone()]
    );

    let reply = victim
        .submit(&format!("/sessions/{}/end", scene.other_session), &[])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, "/sessions"));
    assert_eq!(scene.other.user().await, None, "that device is signed out");
    // (check_credentials_unchanged signed in one more session of ada's.)
    let others = other_session_ids(&victim.get("/sessions").await.body);
    assert!(!others.contains(&scene.other_session), "{others:?}");
    assert_eq!(others.len(), 1, "{others:?}");

    scene.other.sign_in("ada", &scene.ada_password).await;
    let reply = victim.submit("/sessions/end-others", &[]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/sessions"));
    assert_eq!(scene.other.user().await, None, "signed out everywhere else");
    assert_eq!(victim.user().await.as_deref(), Some("ada"));
    assert!(other_session_ids(&victim.get("/sessions").await.body).is_empty());

    // Changing the password keeps this session with a fresh token (the old
    // one fails), and ends the others.
    scene.other.sign_in("ada", &scene.ada_password).await;
    let old_token = victim.token().await;
    let old_jar = victim.jar.clone();
    let reply = victim
        .post_from_page(
            "/account/password",
            &[("current", "not the password"), ("new", "whatever else")],
            Some(&old_token),
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(
        reply.body.contains("The current password is wrong"),
        "{}",
        reply.body
    );
    let reply = victim
        .post_from_page(
            "/account/password",
            &[("current", &scene.ada_password), ("new", "a new password")],
            Some(&old_token),
        )
        .await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/sessions"),
        "{}",
        reply.body
    );
    assert!(reply.headers.get("set-cookie").is_some(), "a fresh token");
    assert_ne!(victim.jar, old_jar);
    assert_eq!(
        victim.user().await.as_deref(),
        Some("ada"),
        "still signed in here"
    );
    assert!(
        victim
            .get("/sessions")
            .await
            .body
            .contains("Password changed"),
        "the flash"
    );
    assert_eq!(scene.other.user().await, None, "signed out everywhere else");
    let mut replay = Browser::new(&scene.demo);
    replay.jar = old_jar;
    assert_eq!(replay.user().await, None, "the old cookies are dead");
    let reply = victim.post_from_page("/visit", &[], Some(&old_token)).await;
    assert_eq!(reply.status, 403, "the token from before the change");
    assert_eq!(victim.visits().await, 2);
    let mut fresh = Browser::new(&scene.demo);
    let reply = fresh
        .submit(
            "/login",
            &[("name", "ada"), ("password", &scene.ada_password)],
        )
        .await;
    assert_eq!(reply.status, 401, "the old password");
    fresh.sign_in("ada", "a new password").await;

    // Signing in as somebody else, then out.
    let reply = victim
        .submit(
            "/login",
            &[("name", "grace"), ("password", &scene.grace_password)],
        )
        .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(victim.user().await.as_deref(), Some("grace"));
    let reply = victim.submit("/logout", &[]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert_eq!(victim.user().await, None);
}

/// A token captured before signing in does not work after it: the token is
/// derived from the session's, which the sign-in replaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_before_sign_in_fails_after_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();

    // An anonymous session that is stored (it counted a visit).
    let mut browser = Browser::new(&demo);
    assert_eq!(browser.submit("/visit", &[]).await.status, 303);
    assert!(!browser.jar.is_empty(), "a stored anonymous session");
    let before = browser.token().await;
    // Its token is checked already: a post without it is refused.
    let reply = browser.post_from_page("/visit", &[], None).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(browser.visits().await, 1);
    let reply = browser
        .post_from_page(
            "/login",
            &[("name", "ada"), ("password", &password)],
            Some(&before),
        )
        .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
    let reply = browser.post_from_page("/visit", &[], Some(&before)).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains(FORM_REFUSED), "{}", reply.body);
    assert_eq!(browser.visits().await, 1, "nothing counted");
    let after = browser.token().await;
    assert_ne!(after, before);
    assert_eq!(
        browser
            .post_from_page("/visit", &[], Some(&after))
            .await
            .status,
        303
    );
    assert_eq!(browser.visits().await, 2);

    // A session that was not stored yet: the page's token is not the
    // signed-in session's either.
    let mut browser = Browser::new(&demo);
    let before = browser.token().await;
    browser.sign_in("ada", &password).await;
    let reply = browser.post_from_page("/logout", &[], Some(&before)).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(
        browser.user().await.as_deref(),
        Some("ada"),
        "still signed in"
    );
    // And after signing out, the signed-in page's token is dead too.
    let signed_in = browser.token().await;
    assert_eq!(browser.submit("/logout", &[]).await.status, 303);
    assert_eq!(browser.submit("/visit", &[]).await.status, 303);
    let reply = browser
        .post_from_page("/visit", &[], Some(&signed_in))
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(browser.visits().await, 1);
}

/// Signed-in pages are never cached, and a sign-out tells the browser to
/// drop what it cached; the old cookies are anonymous afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_pages_are_private_and_sign_out_clears_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);

    let anonymous = browser.get("/").await;
    assert!(anonymous.varies_on_cookie(), "{:?}", anonymous.headers);

    browser.sign_in("ada", &password).await;
    for path in ["/", "/sessions", "/tokens"] {
        let reply = browser.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.all("cache-control"), "no-store", "{path}");
        assert!(reply.varies_on_cookie(), "{path}: {:?}", reply.headers);
        assert!(
            signed_in_user(&reply.body).is_some() || reply.body.contains("<strong>ada</strong>"),
            "{path}: signed in"
        );
    }

    let signed_in = browser.jar.clone();
    let reply = browser.submit("/logout", &[]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert_eq!(reply.all("clear-site-data"), "\"cache\"");
    assert_eq!(reply.all("cache-control"), "no-store");
    assert!(browser.jar.is_empty(), "the cookies are expired");

    let mut replay = Browser::new(&demo);
    replay.jar = signed_in;
    let home = replay.get("/").await;
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("<strong>anonymous</strong>"),
        "{}",
        home.body
    );
    assert_eq!(
        replay.get("/sessions").await.header("location"),
        "/?next=/sessions",
        "sent to sign in"
    );
    let reply = replay.get_with("/tokens", &[("accept", "text/html")]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/?next=/tokens")
    );

    // Signing out a session nobody was signed in to clears nothing.
    let mut visitor = Browser::new(&demo);
    assert_eq!(visitor.submit("/visit", &[]).await.status, 303);
    let reply = visitor.submit("/logout", &[]).await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.all("clear-site-data"), "");
}

/// Bearer requests are signed in for the request only: a thousand of them
/// store no session row. HTTP Basic clients keep one stored session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_requests_store_no_session_and_basic_stores_one() {
    const BEARER_REQUESTS: usize = 1_000;
    const BASIC_REQUESTS: usize = 50;
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    browser.sign_in("ada", &password).await;
    let (_, secret) = browser.create_token("load").await;
    let rows = demo.session_rows().await;
    assert_eq!(rows, 1, "the browser's session");

    let http = plain_client();
    for i in 0..BEARER_REQUESTS {
        let (status, body) = bearer_whoami(&http, &demo, &secret).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "ada bearer api"),
            "request {i}"
        );
    }
    assert_eq!(
        demo.session_rows().await,
        rows,
        "no row for bearer requests"
    );

    // A bearer request with a browser's cookies answers as the token's
    // owner and leaves the cookies' session alone.
    let jar = browser.jar.clone();
    let bearer = format!("Bearer {secret}");
    let reply = browser
        .get_with("/api/whoami", &[("authorization", &bearer)])
        .await;
    assert_eq!((reply.status, reply.body.trim()), (200, "ada bearer api"));
    assert!(reply.headers.get("set-cookie").is_none());
    assert_eq!(browser.jar, jar);
    assert_eq!(
        browser.get("/api/whoami").await.body.trim(),
        "ada password human"
    );
    assert_eq!(demo.session_rows().await, rows);

    let mut client = Browser::new(&demo);
    let basic = format!("Basic {}", STANDARD.encode(format!("ada:{password}")));
    for i in 0..BASIC_REQUESTS {
        let reply = client
            .get_with("/api/whoami", &[("authorization", &basic)])
            .await;
        assert_eq!(
            (reply.status, reply.body.trim()),
            (200, "ada basic api"),
            "request {i}"
        );
        if i == 0 {
            assert!(!client.jar.is_empty(), "a stored session's cookies");
        } else {
            assert!(
                reply.headers.get("set-cookie").is_none(),
                "request {i}: the same session"
            );
        }
    }
    assert_eq!(
        demo.session_rows().await,
        rows + 1,
        "one row for the Basic client"
    );
}

/// Revoking a token signs its bearer out at the very next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_at_the_next_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    browser.sign_in("ada", &password).await;
    let (id, secret) = browser.create_token("to revoke").await;
    let (kept_id, kept) = browser.create_token("to keep").await;
    let http = plain_client();
    for token in [&secret, &kept] {
        let (status, body) = bearer_whoami(&http, &demo, token).await;
        assert_eq!((status, body.as_str()), (200, "ada bearer api"));
    }

    let reply = browser.submit(&format!("/tokens/{id}/revoke"), &[]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/tokens"));
    let (status, _) = bearer_whoami(&http, &demo, &secret).await;
    assert_eq!(status, 401, "the revoked token");
    let (status, body) = bearer_whoami(&http, &demo, &kept).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "ada bearer api"),
        "the other token"
    );
    assert_eq!(revoke_ids(&browser.get("/tokens").await.body), [kept_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_the_passwords_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("demo.db");
    let first = Demo::start(&db);
    assert_eq!(
        first.users.keys().collect::<Vec<_>>(),
        ["ada", "grace"],
        "{:#?}",
        first.lines
    );
    let password = first.password("ada").to_owned();
    drop(first);

    let second = Demo::start(&db);
    assert!(second.users.is_empty(), "{:#?}", second.lines);
    assert!(
        !second
            .lines
            .iter()
            .any(|line| line.contains("created user") || line.contains(&password)),
        "{:#?}",
        second.lines
    );
    for user in ["ada", "grace"] {
        assert!(
            second
                .lines
                .iter()
                .any(|line| line.contains(&format!("user {user} exists already"))),
            "{:#?}",
            second.lines
        );
    }
    // The password printed the first time still signs in.
    let (code, stdout, stderr) = api_client(&[
        "--url",
        &second.base,
        "--user",
        "ada",
        "--password",
        &password,
    ])
    .await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("skipped"), "{stdout}");
}

#[tokio::test]
async fn demo_and_api_client_refuse_bad_arguments() {
    for args in [
        &["--bogus"][..],
        &["--addr", "nowhere"],
        &["--addr"],
        &["--db", ""],
        &["--sudo-seconds"],
        &["--sudo-seconds", "0"],
        &["--sudo-seconds", "-5"],
        &["--sudo-seconds", "soon"],
        &["--remember-days"],
        &["--remember-days", "0"],
        &["--remember-days", "-1"],
        &["--remember-days", "3651"],
        &["--remember-days", "a month"],
        &["--remember-days", "99999999999999999999"],
        &["--remember-grace-seconds"],
        &["--remember-grace-seconds", "-1"],
        &["--remember-grace-seconds", "3601"],
        &["--remember-grace-seconds", "soon"],
        &["--code-seconds"],
        &["--code-seconds", "0"],
        &["--code-seconds", "3601"],
        &["--code-seconds", "soon"],
    ] {
        let output = Command::new(example_binary::example_binary("demo"))
            .args(args)
            .output()
            .expect("run the demo");
        assert_eq!(output.status.code(), Some(2), "demo {args:?}");
    }
    for args in [
        &["--bogus"][..],
        &[],
        &["--user", "ada"],
        &["--user", "ada", "--password"],
        &["--user", "ada", "--password", "pw", "--user2", "grace"],
        &[
            "--url",
            "https://example.com",
            "--user",
            "a",
            "--password",
            "b",
        ],
        &["--url", "ftp://x", "--user", "a", "--password", "b"],
        &["--user", "a:b", "--password", "pw"],
    ] {
        let (code, _, stderr) = api_client(args).await;
        assert_eq!(code, 2, "api_client {args:?}: {stderr}");
        assert!(stderr.contains("usage"), "api_client {args:?}: {stderr}");
    }
}

/// `examples/notes.rs`: a note and the session's `last_note` are kept
/// together or not at all, and the sign-in's audit row is written by the
/// hook in the same transaction.
#[tokio::test]
async fn the_notes_example_keeps_a_note_and_its_session_value_or_neither() {
    let dir = tempfile::tempdir().expect("temp dir");
    let notes = Demo::start_example(
        "notes",
        "notes: listening on ",
        &dir.path().join("notes.db"),
    );
    let mut browser = Browser::new(&notes);
    assert_eq!(browser.post("/notes/early", &[]).await.status, 401);
    assert_eq!(browser.post("/login/ada", &[]).await.status, 200);
    assert_eq!(browser.post("/notes/hello", &[]).await.status, 200);
    let failed = browser.post("/notes/lost?fail=1", &[]).await;
    assert_eq!(failed.status, 500, "{}", failed.body);
    assert_eq!(browser.get("/notes").await.body, "hello (last: hello)\n");
    assert_eq!(browser.post("/logout", &[]).await.status, 200);
    assert_eq!(
        browser.get("/audit").await.body,
        "ada signed in\nada signed out\n"
    );
}

/// The demo's help names every flag, the new `--sudo-seconds` and the
/// remember-me ones too.
#[test]
fn demo_help_names_its_flags() {
    let output = Command::new(example_binary::example_binary("demo"))
        .arg("--help")
        .output()
        .expect("run the demo");
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--addr",
        "--db",
        "--sudo-seconds",
        "--remember-days",
        "--remember-grace-seconds",
        "--code-seconds",
        "--help",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}

/// "Sudo mode": with an old sign-in, `POST /tokens` sends the browser to
/// confirm its password (and creates nothing); a wrong password is refused
/// and confirms nothing; the right one rotates the session and lets the
/// token be created at once, until the confirmation is old in its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_sign_in_confirms_the_password_before_creating_a_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start_with(&dir.path().join("demo.db"), &["--sudo-seconds", SHORT_SUDO]);
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    browser.sign_in("ada", &password).await;
    let page = browser.get("/tokens").await;
    assert!(
        page.body
            .contains("asks you to confirm your password if you signed in more than 3 seconds"),
        "{}",
        page.body
    );
    tokio::time::sleep(PAST_SHORT_SUDO).await;

    // The browser is sent to confirm, back to the tokens page afterwards.
    let reply = browser.submit_html("/tokens", &[("name", "late")]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/confirm?next=/tokens"),
        "{}",
        reply.body
    );
    assert!(revoke_ids(&browser.get("/tokens").await.body).is_empty());
    // An API client (no `Accept: text/html`) gets the guard's 403.
    let reply = browser.submit("/tokens", &[("name", "late")]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(revoke_ids(&browser.get("/tokens").await.body).is_empty());

    let page = browser
        .get_with("/confirm?next=/tokens", &[("accept", "text/html")])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(CONFIRM_HEADING), "{}", page.body);
    assert!(page.body.contains(r#"action="/confirm""#), "{}", page.body);
    assert!(
        page.body.contains(r#"name="password" type="password""#),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"<input type="hidden" name="next" value="/tokens">"#),
        "{}",
        page.body
    );
    assert!(csrf_token(&page.body).is_some(), "{}", page.body);

    // A wrong password: the page again, 401, and still not confirmed.
    let jar = browser.jar.clone();
    let reply = browser.confirm("not the password", "/tokens").await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains(CONFIRM_HEADING), "{}", reply.body);
    assert!(reply.body.contains("Wrong password."), "{}", reply.body);
    assert!(
        reply
            .body
            .contains(r#"<input type="hidden" name="next" value="/tokens">"#),
        "{}",
        reply.body
    );
    assert!(reply.headers.get("set-cookie").is_none(), "no new token");
    assert_eq!(browser.jar, jar);
    let reply = browser.submit_html("/tokens", &[("name", "late")]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/confirm?next=/tokens"),
        "still not confirmed"
    );

    // The right password: back to the tokens page, with a fresh token; the
    // token is created at once.
    let reply = browser.confirm(&password, "/tokens").await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/tokens"),
        "{}",
        reply.body
    );
    assert!(reply.headers.get("set-cookie").is_some(), "a fresh token");
    assert_ne!(browser.jar, jar);
    let reply = browser
        .submit_html("/tokens", &[("name", "confirmed")])
        .await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/tokens"),
        "{}",
        reply.body
    );
    let page = browser.get("/tokens").await;
    let secret = new_token_secret(&page.body);
    assert_eq!(revoke_ids(&page.body).len(), 1, "{}", page.body);
    let (status, body) = bearer_whoami(&plain_client(), &demo, &secret).await;
    assert_eq!((status, body.as_str()), (200, "ada bearer api"));
    let mut replay = Browser::new(&demo);
    replay.jar = jar;
    assert_eq!(replay.user().await, None, "the old cookies are dead");
    assert_eq!(browser.user().await.as_deref(), Some("ada"));

    // The confirmation gets old too.
    tokio::time::sleep(PAST_SHORT_SUDO).await;
    let reply = browser.submit_html("/tokens", &[("name", "later")]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/confirm?next=/tokens")
    );
    assert_eq!(revoke_ids(&browser.get("/tokens").await.body).len(), 1);
}

/// Signing out everywhere else with an old sign-in: sent to confirm, and
/// nothing is ended until the password is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_sign_in_confirms_the_password_before_signing_out_everywhere_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start_with(&dir.path().join("demo.db"), &["--sudo-seconds", SHORT_SUDO]);
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    browser.sign_in("ada", &password).await;
    let mut other = Browser::new(&demo);
    other.sign_in("ada", &password).await;
    let page = browser.get("/sessions").await;
    assert_eq!(other_session_ids(&page.body).len(), 1, "{}", page.body);
    assert!(
        page.body.contains(
            "Signing out everywhere else asks you to confirm your password if you signed in\n\
             more than 3 seconds ago."
        ),
        "{}",
        page.body
    );
    tokio::time::sleep(PAST_SHORT_SUDO).await;

    let reply = browser.submit_html("/sessions/end-others", &[]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/confirm?next=/sessions"),
        "{}",
        reply.body
    );
    let reply = browser.submit("/sessions/end-others", &[]).await;
    assert_eq!(reply.status, 403, "an API client: {}", reply.body);
    assert_eq!(other.user().await.as_deref(), Some("ada"), "nothing ended");
    assert_eq!(
        other_session_ids(&browser.get("/sessions").await.body).len(),
        1
    );

    let reply = browser.confirm(&password, "/sessions").await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/sessions"),
        "{}",
        reply.body
    );
    let reply = browser.submit_html("/sessions/end-others", &[]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/sessions"),
        "{}",
        reply.body
    );
    assert_eq!(other.user().await, None, "signed out everywhere else");
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
}

/// The confirmation page goes on only to paths on this site: anything else
/// in `next` (another site, a scheme, `//host`, `/\host`) means home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confirmation_redirects_only_to_this_site() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    browser.sign_in("ada", &password).await;

    for next in [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "/tokens\r\nLocation: https://evil.example",
        "",
    ] {
        let reply = browser.confirm(&password, next).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, "/"),
            "next={next:?}: {}",
            reply.body
        );
    }
    let reply = browser.confirm(&password, "/sessions").await;
    assert_eq!((reply.status, reply.header("location")), (303, "/sessions"));

    // The page does not carry them either.
    for query in [
        "%2F%2Fevil.example",
        "https%3A%2F%2Fevil.example",
        "%2F%5Cevil",
    ] {
        let page = browser.get(&format!("/confirm?next={query}")).await;
        assert_eq!(page.status, 200, "{query}: {}", page.body);
        assert!(
            page.body
                .contains(r#"<input type="hidden" name="next" value="/">"#),
            "{query}: {}",
            page.body
        );
        assert!(!page.body.contains("evil"), "{query}: {}", page.body);
    }

    // Anonymous: sent to sign in (then on to `next`, a fresh sign-in being
    // recent), and home after the form.
    let mut anonymous = Browser::new(&demo);
    let reply = anonymous.get("/confirm?next=/tokens").await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/?next=/tokens")
    );
    let reply = anonymous.confirm(&password, "/tokens").await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert_eq!(anonymous.user().await, None);
}

/// A page of another site cannot confirm the victim's password for them,
/// even with the password and a valid synchronizer token: the session
/// layer refuses the post, and the sign-in stays old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_confirmation_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start_with(&dir.path().join("demo.db"), &["--sudo-seconds", SHORT_SUDO]);
    let password = demo.password("ada").to_owned();
    let mut victim = Browser::new(&demo);
    victim.sign_in("ada", &password).await;
    tokio::time::sleep(PAST_SHORT_SUDO).await;

    let token = victim.token().await;
    let jar = victim.jar.clone();
    let form = [
        ("password", password.as_str()),
        ("next", "/tokens"),
        ("csrf_token", &token),
    ];
    let reply = victim
        .send(
            reqwest::Method::POST,
            "/confirm",
            Some(&form),
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://evil.example"),
                ("accept", "text/html"),
            ],
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains(CROSS_ORIGIN_REFUSED), "{}", reply.body);
    assert!(reply.headers.get("set-cookie").is_none(), "not rotated");
    assert_eq!(victim.jar, jar);
    // Same-origin without the page's token: refused by the form check.
    let reply = victim
        .post_from_page("/confirm", &[("password", &password)], None)
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains(FORM_REFUSED), "{}", reply.body);
    assert_eq!(victim.token().await, token, "the session was not rotated");

    let reply = victim.submit_html("/tokens", &[("name", "forged")]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/confirm?next=/tokens"),
        "still not confirmed"
    );
    assert!(revoke_ids(&victim.get("/tokens").await.body).is_empty());
}

/// A sign-in link: opening it signs nobody in, its button signs the
/// browser in as the owner (new cookies, method `link`), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_signs_in_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let mut browser = Browser::new(&demo);
    let home = browser.get("/").await;
    assert!(
        home.body.contains(r#"action="/login/link""#)
            && home.body.contains("Email me a sign-in link"),
        "{}",
        home.body
    );
    let secret = demo.sign_in_link(&mut browser, "ada").await;

    // Opening the link (as a mail scanner would) uses nothing.
    let page = browser.get(&format!("/login/link?token={secret}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(LINK_BUTTON), "{}", page.body);
    assert_eq!(page.header("referrer-policy"), "no-referrer");
    assert_eq!(
        browser.user().await,
        None,
        "opening the link signs nobody in"
    );
    let mut scanner = Browser::new(&demo);
    assert_eq!(
        scanner
            .get(&format!("/login/link?token={secret}"))
            .await
            .status,
        200
    );
    assert_eq!(scanner.user().await, None);

    let before = browser.jar.clone();
    let reply = browser.redeem_link(&secret).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/"),
        "{}",
        reply.body
    );
    assert!(reply.headers.get("set-cookie").is_some(), "a fresh token");
    assert_ne!(browser.jar, before, "new cookies");
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
    assert!(browser.get("/").await.body.contains("(by link)"));

    // Used once: another browser (or this one) gets nowhere with it.
    let mut other = Browser::new(&demo);
    let reply = other.redeem_link(&secret).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains(LINK_INVALID), "{}", reply.body);
    assert_eq!(other.user().await, None);
    let reply = browser.redeem_link(&secret).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(demo.mails().len(), 1, "{:#?}", demo.mails());
}

/// Asking for a link answers the same for an account and for nobody; only
/// the account gets a mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_a_link_does_not_tell_who_exists() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let mut nobody_browser = Browser::new(&demo);
    let nobody = nobody_browser
        .submit("/login/link", &[("name", "nobody-here")])
        .await;
    let mut ada_browser = Browser::new(&demo);
    let ada = ada_browser.submit("/login/link", &[("name", "ada")]).await;
    assert_eq!(
        (ada.status, ada.header("location")),
        (303, "/login/link/sent"),
        "{}",
        ada.body
    );
    assert_eq!(
        (nobody.status, nobody.header("location"), &nobody.body),
        (ada.status, ada.header("location"), &ada.body)
    );
    assert_eq!(
        nobody.headers.get("set-cookie"),
        ada.headers.get("set-cookie")
    );
    let ada_page = ada_browser.get("/login/link/sent").await;
    assert_eq!(ada_page.status, 200, "{}", ada_page.body);
    assert!(ada_page.body.contains(LINK_ON_ITS_WAY), "{}", ada_page.body);
    let nobody_page = nobody_browser.get("/login/link/sent").await;
    assert_eq!(
        (nobody_page.status, &nobody_page.body),
        (ada_page.status, &ada_page.body)
    );
    // Lines come in order: a mail for nobody-here would come before ada's.
    let mail = demo.mail_after(0).await;
    assert!(mail.starts_with("demo e-mail to ada: "), "{mail:?}");
    assert_eq!(demo.mails(), [mail]);
}

/// Changing the password kills the links made before; a link made after
/// works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_dies_when_the_password_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let secret = demo.sign_in_link(&mut Browser::new(&demo), "ada").await;

    let mut owner = Browser::new(&demo);
    owner.sign_in("ada", &password).await;
    let reply = owner
        .submit(
            "/account/password",
            &[("current", &password), ("new", "a brand new password")],
        )
        .await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/sessions"),
        "{}",
        reply.body
    );

    let mut browser = Browser::new(&demo);
    let reply = browser.redeem_link(&secret).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains(LINK_INVALID), "{}", reply.body);
    assert_eq!(browser.user().await, None);

    let fresh = demo.sign_in_link(&mut Browser::new(&demo), "ada").await;
    let reply = browser.redeem_link(&fresh).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
}

/// A page of another site cannot ask for a link in the victim's browser
/// (the layer refuses it before any mail), nor redeem one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_link_request_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    // A stored (anonymous) session, so that the form check applies too:
    // a browser with no stored session has none to ride on.
    let mut victim = Browser::new(&demo);
    assert_eq!(victim.submit("/visit", &[]).await.status, 303);
    assert!(!victim.jar.is_empty(), "a stored anonymous session");
    let token = victim.token().await;
    let cross_site = [
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.example"),
    ];
    let reply = victim
        .send(
            reqwest::Method::POST,
            "/login/link",
            Some(&[("name", "ada"), ("csrf_token", &token)]),
            &cross_site,
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains(CROSS_ORIGIN_REFUSED), "{}", reply.body);
    // Same-origin without the page's token: refused by the form check.
    let reply = victim
        .post_from_page("/login/link", &[("name", "ada")], None)
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains(FORM_REFUSED), "{}", reply.body);

    // The next mail is the one asked for properly: the forged ones sent none.
    let secret = demo.sign_in_link(&mut Browser::new(&demo), "grace").await;
    assert_eq!(demo.mails().len(), 1, "{:#?}", demo.mails());
    let reply = victim
        .send(
            reqwest::Method::POST,
            "/login/link/redeem",
            Some(&[("token", &secret), ("csrf_token", &token)]),
            &cross_site,
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains(CROSS_ORIGIN_REFUSED), "{}", reply.body);
    assert_eq!(victim.user().await, None);
    // Not used up by the refused post.
    let reply = victim.redeem_link(&secret).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert_eq!(victim.user().await.as_deref(), Some("grace"));
}

/// Bad links and link forms get a 400 page, never a server error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_link_input_is_refused_without_a_server_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let mut browser = Browser::new(&demo);
    let long = "A".repeat(10 * 1024);
    let made_up = "A".repeat(43);
    for token in ["garbage", "", long.as_str(), made_up.as_str()] {
        let reply = browser
            .submit("/login/link/redeem", &[("token", token)])
            .await;
        assert_eq!(reply.status, 400, "token {:.20}…: {}", token, reply.body);
        assert!(reply.body.contains(LINK_INVALID), "{}", reply.body);
    }
    let reply = browser.submit("/login/link/redeem", &[]).await;
    assert_eq!(reply.status, 400, "no token: {}", reply.body);
    assert_eq!(browser.user().await, None);

    for query in [
        String::new(),
        "?token=".to_owned(),
        "?token=garbage".to_owned(),
        format!("?token={long}"),
        "?token=%FF%FE".to_owned(),
        "?token=a&token=b".to_owned(),
    ] {
        let reply = browser.get(&format!("/login/link{query}")).await;
        assert_eq!(
            reply.status, 400,
            "GET /login/link{query:.30}: {}",
            reply.body
        );
        assert!(!reply.body.contains(LINK_BUTTON), "{}", reply.body);
    }

    for name in ["", "   "] {
        let reply = browser.submit("/login/link", &[("name", name)]).await;
        assert_eq!(reply.status, 400, "name {name:?}: {}", reply.body);
    }
    for name in [long.as_str(), "a\u{0}b", "ada:x"] {
        let reply = browser.request_link(name).await;
        assert_eq!(reply.status, 200, "name {name:.20}: {}", reply.body);
        assert!(reply.body.contains(LINK_ON_ITS_WAY), "{}", reply.body);
    }
    assert!(demo.mails().is_empty(), "{:#?}", demo.mails());
}

/// `examples/own_users.rs`: the application's own `app_users` table signs
/// in (its form and HTTP Basic), handlers get its `User`, and a user
/// deleted from the table is signed out on their next request.
#[tokio::test]
async fn the_own_users_example_signs_in_against_its_own_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = Demo::start_example(
        "own_users",
        "own_users: listening on ",
        &dir.path().join("own.db"),
    );
    let mut browser = Browser::new(&app);
    assert!(browser.get("/").await.body.contains("<h1>Sign in</h1>"));
    let me = browser.get_with("/me", &[("accept", "text/html")]).await;
    assert_eq!((me.status, me.header("location")), (303, "/?next=/me"));
    let password = "correct horse battery staple";
    let wrong = [("email", "ada@example.com"), ("password", "nope")];
    assert_eq!(browser.post("/login", &wrong).await.status, 401);
    let right = [("email", "ADA@example.com"), ("password", password)];
    let signed_in = browser.post("/login", &right).await;
    assert_eq!((signed_in.status, signed_in.header("location")), (303, "/"));
    assert!(browser.get("/").await.body.contains("Hello, Ada Lovelace"));
    assert_eq!(
        browser.get("/me").await.body,
        "1 ada@example.com Ada Lovelace\n"
    );
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("ada@example.com:{password}"))
    );
    let reply = plain_client()
        .get(format!("{}/me", app.base))
        .header("authorization", basic)
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(
        reply.text().await.expect("body"),
        "1 ada@example.com Ada Lovelace\n"
    );
    // The account goes from the application's table: its session ends.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", app.db.display()))
        .await
        .expect("open the example's database");
    sqlx::query("DELETE FROM app_users WHERE id = 1")
        .execute(&pool)
        .await
        .expect("delete the user");
    pool.close().await;
    let gone = browser.get("/me").await;
    assert_eq!(gone.status, 401, "{}", gone.body);
    assert!(browser.jar.is_empty(), "signed out: {:?}", browser.jar);
    assert_eq!(app.session_rows().await, 0);
}

/// "Remember me on this device": the sign-in sets a long-lived HttpOnly
/// cookie; a browser holding only that cookie (closed and opened again,
/// here even after the demo restarted) is signed back in on its first
/// page, with new session cookies, a rotated remember-me cookie and the
/// method `remember`. Without the box ticked there is no such cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_browser_is_signed_back_in_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("demo.db");
    let demo = Demo::start(&db);
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    let home = browser.get("/").await;
    assert!(
        home.body.contains(REMEMBER_BOX) && home.body.contains("Remember me on this device"),
        "{}",
        home.body
    );

    let reply = browser.sign_in_remembered("ada", &password).await;
    let cookie = set_cookie(&reply, REMEMBER_COOKIE).expect("a remember-me cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(cookie.path(), Some("/"), "{cookie}");
    let max_age = cookie.max_age().expect("Max-Age").whole_seconds();
    assert!(
        (THIRTY_DAYS - 120..=THIRTY_DAYS).contains(&max_age),
        "about 30 days: {cookie}"
    );
    assert!(reply.all("cache-control").contains("no-store"));
    let remembered = cookie.value().to_owned();
    let signed_in = session_cookies(&browser.jar);
    assert!(!signed_in.is_empty(), "{:?}", browser.jar);

    let page = browser.get("/sessions").await;
    assert!(
        page.body.contains("<h2>Remembered browsers</h2>"),
        "{}",
        page.body
    );
    let rows = remembered_rows(&page.body);
    assert_eq!(rows.len(), 1, "{}", page.body);
    assert!(rows[0].1, "(this browser): {}", page.body);
    assert!(
        page.body.contains(r#"action="/remembered/forget""#)
            && page.body.contains("Forget this browser"),
        "{}",
        page.body
    );

    // The demo restarts too: the remembered browser is kept in its database.
    drop(demo);
    let demo = Demo::start(&db);
    let mut restarted = Browser::with_remember_cookie(&demo, &remembered);
    let page = restarted.get("/sessions").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Signed in as <strong>ada</strong>"),
        "{}",
        page.body
    );
    let rotated = set_cookie(&page, REMEMBER_COOKIE).expect("a rotated remember-me cookie");
    assert_ne!(rotated.value(), remembered, "a new token");
    assert_eq!(rotated.http_only(), Some(true), "{rotated}");
    let rotated_age = rotated.max_age().expect("Max-Age").whole_seconds();
    assert!(
        rotated_age <= max_age && rotated_age > max_age - 300,
        "the same expiry, not extended: {rotated}"
    );
    let restored = session_cookies(&restarted.jar);
    assert!(!restored.is_empty(), "new session cookies");
    for (name, value) in &restored {
        assert_ne!(signed_in.get(name), Some(value), "{name}: a new session");
    }
    assert_eq!(remembered_rows(&page.body).len(), 1, "{}", page.body);
    assert!(remembered_rows(&page.body)[0].1, "{}", page.body);
    // How it signed in: on the sessions page (this session's row, and the
    // first browser's), the home page and the API.
    let page = restarted.get("/sessions").await;
    let current = page
        .body
        .lines()
        .find(|line| line.contains("<strong>this device</strong>"))
        .unwrap_or_else(|| panic!("no row for this session:\n{}", page.body));
    assert!(
        current.contains("<td>remember (remembered browser "),
        "{current}"
    );
    assert_eq!(other_session_ids(&page.body).len(), 1, "{}", page.body);
    assert!(
        page.body.contains("<td>password (remembered browser "),
        "the session that asked: {}",
        page.body
    );
    let home = restarted.get("/").await;
    assert_eq!(signed_in_user(&home.body).as_deref(), Some("ada"));
    assert!(home.body.contains("(by remember)"), "{}", home.body);
    assert!(home.headers.get("set-cookie").is_none(), "one restore");
    assert_eq!(
        restarted.get("/api/whoami").await.body.trim(),
        "ada remember human"
    );

    // A request of the same burst with the token just replaced (within
    // the grace window) is signed in for itself only: no cookie.
    let mut racing = Browser::with_remember_cookie(&demo, &remembered);
    let reply = racing.get("/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(signed_in_user(&reply.body).as_deref(), Some("ada"));
    assert!(
        reply.headers.get("set-cookie").is_none(),
        "{:?}",
        reply.headers
    );
    assert_eq!(restarted.user().await.as_deref(), Some("ada"), "no theft");

    // Without the box ticked: no remember-me cookie.
    let mut plain = Browser::new(&demo);
    let reply = plain
        .submit("/login", &[("name", "ada"), ("password", &password)])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert!(
        set_cookie(&reply, REMEMBER_COOKIE).is_none(),
        "{:?}",
        reply.headers
    );
    assert!(!plain.jar.contains_key(REMEMBER_COOKIE), "{:?}", plain.jar);
    assert_eq!(plain.user().await.as_deref(), Some("ada"));
    let page = plain.get("/sessions").await;
    assert!(!page.body.contains("/remembered/forget"), "{}", page.body);
    let rows = remembered_rows(&page.body);
    assert_eq!(rows.len(), 1, "the other browser's: {}", page.body);
    assert!(!rows[0].1, "not this one: {}", page.body);
    assert!(
        Browser::new(&demo).user().await.is_none(),
        "nobody else is signed in"
    );
}

/// A remember-me cookie copied to a second browser: once the original has
/// been signed back in (rotating the token) and the grace window is over,
/// the copy's token is an old one. The copy is refused, and every session
/// and remembered browser of the user ends, the original's too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_remember_cookie_signs_everybody_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start_with(
        &dir.path().join("demo.db"),
        &["--remember-grace-seconds", "1"],
    );
    let password = demo.password("ada").to_owned();
    let grace_password = demo.password("grace").to_owned();
    let mut original = Browser::new(&demo);
    original.sign_in_remembered("ada", &password).await;
    let copied = original.remember_cookie();
    let mut elsewhere = Browser::new(&demo);
    elsewhere.sign_in("ada", &password).await;
    let mut grace = Browser::new(&demo);
    grace.sign_in_remembered("grace", &grace_password).await;

    // The original browser restarts and is signed back in: a new token.
    let mut restored = Browser::with_remember_cookie(&demo, &copied);
    assert_eq!(restored.user().await.as_deref(), Some("ada"));
    let rotated = restored.remember_cookie();
    assert_ne!(rotated, copied);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The copy, used after the grace window: refused, its cookie removed.
    let mut thief = Browser::with_remember_cookie(&demo, &copied);
    let reply = thief.get("/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(signed_in_user(&reply.body), None, "{}", reply.body);
    assert!(
        removes_cookie(&reply, REMEMBER_COOKIE),
        "{:?}",
        reply.headers
    );
    assert!(thief.jar.is_empty(), "{:?}", thief.jar);
    let reply = thief.get("/sessions").await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/?next=/sessions"),
        "anonymous: sent to sign in"
    );

    // Every sign-in of ada ended: the restored browser, the one that asked
    // to be remembered, and the one signed in with the password.
    assert_eq!(restored.user().await, None, "the restored browser");
    assert!(!restored.jar.contains_key(REMEMBER_COOKIE));
    assert_eq!(original.user().await, None, "the original session");
    assert_eq!(elsewhere.user().await, None, "ada's other session");
    assert_eq!(
        Browser::with_remember_cookie(&demo, &rotated).user().await,
        None,
        "the rotated token restores nothing"
    );
    assert_eq!(
        Browser::with_remember_cookie(&demo, &copied).user().await,
        None,
        "nor the copy, again"
    );
    // Another user is not concerned.
    assert_eq!(grace.user().await.as_deref(), Some("grace"));
    grace.remembered_id().await;
    // The password signs in again.
    original.sign_in("ada", &password).await;
}

/// Signing out on a remembered browser forgets it: its remember-me cookie
/// is removed, and a copy of it restores nothing. "Sign out everywhere
/// else" forgets the other remembered browsers and keeps this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_forgets_the_remembered_browser() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    browser.sign_in_remembered("ada", &password).await;
    let remembered = browser.remember_cookie();

    let reply = browser.submit("/logout", &[]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert!(
        removes_cookie(&reply, REMEMBER_COOKIE),
        "{:?}",
        reply.headers
    );
    assert!(browser.jar.is_empty(), "{:?}", browser.jar);
    let mut restarted = Browser::with_remember_cookie(&demo, &remembered);
    let reply = restarted.get("/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(signed_in_user(&reply.body), None, "{}", reply.body);
    assert!(
        removes_cookie(&reply, REMEMBER_COOKIE),
        "{:?}",
        reply.headers
    );
    assert!(restarted.jar.is_empty(), "{:?}", restarted.jar);
    assert_eq!(demo.session_rows().await, 0, "no session was restored");

    // Sign out everywhere else: the other remembered browser is forgotten.
    let mut here = Browser::new(&demo);
    here.sign_in_remembered("ada", &password).await;
    let here_cookie = here.remember_cookie();
    let mut there = Browser::new(&demo);
    there.sign_in_remembered("ada", &password).await;
    let there_cookie = there.remember_cookie();
    assert_eq!(remembered_ids(&here.get("/sessions").await.body).len(), 2);
    let reply = here.submit("/sessions/end-others", &[]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/sessions"),
        "{}",
        reply.body
    );
    assert_eq!(there.user().await, None, "signed out everywhere else");
    assert_eq!(
        Browser::with_remember_cookie(&demo, &there_cookie)
            .user()
            .await,
        None,
        "and not remembered any more"
    );
    let rows = remembered_rows(&here.get("/sessions").await.body);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].1, "this browser stays remembered: {rows:?}");
    assert_eq!(here.user().await.as_deref(), Some("ada"));
    assert_eq!(
        Browser::with_remember_cookie(&demo, &here_cookie)
            .user()
            .await
            .as_deref(),
        Some("ada"),
        "this browser is still signed back in after a restart"
    );
}

/// Browser B revokes browser A's remembered browser from B's sessions
/// page: A is signed out at its next page, and A's remember-me cookie
/// restores nothing. Another user cannot revoke it; "forget this
/// browser" keeps the session but ends the remembering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_remembered_browser_from_the_sessions_page() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let grace_password = demo.password("grace").to_owned();
    let mut a = Browser::new(&demo);
    a.sign_in_remembered("ada", &password).await;
    let a_cookie = a.remember_cookie();
    let a_id = a.remembered_id().await;
    let mut b = Browser::new(&demo);
    b.sign_in_remembered("ada", &password).await;
    let b_cookie = b.remember_cookie();
    let b_id = b.remembered_id().await;
    assert_ne!(a_id, b_id);

    let page = b.get("/sessions").await;
    assert_eq!(
        remembered_rows(&page.body),
        [(a_id.clone(), false), (b_id.clone(), true)],
        "{}",
        page.body
    );
    let reply = b.submit(&format!("/remembered/{a_id}/revoke"), &[]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/sessions"),
        "{}",
        reply.body
    );
    let page = b.get("/sessions").await;
    assert!(
        page.body
            .contains("That browser is forgotten and signed out"),
        "{}",
        page.body
    );
    assert_eq!(
        remembered_ids(&page.body),
        std::slice::from_ref(&b_id),
        "{}",
        page.body
    );
    assert!(other_session_ids(&page.body).is_empty(), "{}", page.body);

    // A is signed out at its next page, and its cookie restores nothing.
    let reply = a.get("/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(signed_in_user(&reply.body), None, "{}", reply.body);
    assert!(!a.jar.contains_key(REMEMBER_COOKIE), "{:?}", a.jar);
    assert_eq!(
        Browser::with_remember_cookie(&demo, &a_cookie).user().await,
        None
    );
    assert_eq!(b.user().await.as_deref(), Some("ada"), "B stays");

    // Revoking again, or another user's browser: nothing happens.
    let reply = b.submit(&format!("/remembered/{a_id}/revoke"), &[]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/sessions"));
    assert!(
        b.get("/sessions")
            .await
            .body
            .contains("That browser is not one of yours, or is no longer remembered."),
    );
    let mut grace = Browser::new(&demo);
    grace.sign_in_remembered("grace", &grace_password).await;
    let reply = grace
        .submit(&format!("/remembered/{b_id}/revoke"), &[])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, "/sessions"));
    assert!(
        grace
            .get("/sessions")
            .await
            .body
            .contains("not one of yours")
    );
    assert_eq!(b.remembered_id().await, b_id, "still remembered");
    for bad in ["abc", "0", "-1", "99999999999999999999"] {
        let reply = b.submit(&format!("/remembered/{bad}/revoke"), &[]).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
    assert_eq!(b.remembered_id().await, b_id);

    // Revoking this browser signs out here.
    let grace_id = grace.remembered_id().await;
    let reply = grace
        .submit(&format!("/remembered/{grace_id}/revoke"), &[])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert_eq!(grace.user().await, None);
    assert!(!grace.jar.contains_key(REMEMBER_COOKIE), "{:?}", grace.jar);

    // Forgetting this browser: still signed in, but not remembered.
    let reply = b.submit("/remembered/forget", &[]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/sessions"),
        "{}",
        reply.body
    );
    assert!(
        removes_cookie(&reply, REMEMBER_COOKIE),
        "{:?}",
        reply.headers
    );
    assert!(!b.jar.contains_key(REMEMBER_COOKIE), "{:?}", b.jar);
    let page = b.get("/sessions").await;
    assert!(
        page.body.contains("This browser is no longer remembered."),
        "{}",
        page.body
    );
    assert!(remembered_ids(&page.body).is_empty(), "{}", page.body);
    assert!(!page.body.contains("/remembered/forget"), "{}", page.body);
    assert_eq!(b.user().await.as_deref(), Some("ada"));
    assert_eq!(
        Browser::with_remember_cookie(&demo, &b_cookie).user().await,
        None
    );
}

/// A sign-in restored from a remembered browser is never recent: creating
/// an API token (or signing out everywhere else) confirms the password
/// first, even right after the restore; confirming makes the method
/// `password`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_sign_in_confirms_the_password_before_creating_a_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut first = Browser::new(&demo);
    first.sign_in_remembered("ada", &password).await;
    let remembered = first.remember_cookie();
    // The sign-in that asked is recent: a token at once.
    first.create_token("at once").await;

    let mut restored = Browser::with_remember_cookie(&demo, &remembered);
    assert_eq!(restored.user().await.as_deref(), Some("ada"));
    assert!(restored.get("/").await.body.contains("(by remember)"));
    let reply = restored
        .submit_html("/tokens", &[("name", "restored")])
        .await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/confirm?next=/tokens"),
        "{}",
        reply.body
    );
    assert_eq!(revoke_ids(&restored.get("/tokens").await.body).len(), 1);
    let reply = restored.submit_html("/sessions/end-others", &[]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/confirm?next=/sessions"),
        "{}",
        reply.body
    );
    assert_eq!(first.user().await.as_deref(), Some("ada"), "nothing ended");

    let reply = restored.confirm("not the password", "/tokens").await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    let reply = restored.confirm(&password, "/tokens").await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/tokens"),
        "{}",
        reply.body
    );
    assert!(restored.get("/").await.body.contains("(by password)"));
    let (_, secret) = restored.create_token("confirmed").await;
    let (status, body) = bearer_whoami(&plain_client(), &demo, &secret).await;
    assert_eq!((status, body.as_str()), (200, "ada bearer api"));
    assert_eq!(revoke_ids(&restored.get("/tokens").await.body).len(), 2);
    // Still the remembered browser.
    restored.remembered_id().await;
}

/// A remember-me cookie that cannot be one (truncated, 10 KB, empty, made
/// up, sent twice with two values) gets the normal anonymous page, never
/// a server error, and is removed; the real one still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_remember_cookie_gets_an_anonymous_page() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut owner = Browser::new(&demo);
    owner.sign_in_remembered("ada", &password).await;
    let real = owner.remember_cookie();
    let (series, _) = real.split_once('.').expect("series.token");
    let made_up = format!("{}.{}", "A".repeat(43), "A".repeat(43));
    let cases = [
        (
            "truncated",
            format!("{REMEMBER_COOKIE}={}", &real[..real.len() - 5]),
        ),
        ("the series only", format!("{REMEMBER_COOKIE}={series}")),
        (
            "10 KB",
            format!("{REMEMBER_COOKIE}={}", "A".repeat(10 * 1024)),
        ),
        ("empty", format!("{REMEMBER_COOKIE}=")),
        ("made up", format!("{REMEMBER_COOKIE}={made_up}")),
        (
            "not base64url",
            format!("{REMEMBER_COOKIE}=%00%FF.<script>"),
        ),
        (
            "two values",
            format!("{REMEMBER_COOKIE}={real}; {REMEMBER_COOKIE}={made_up}"),
        ),
    ];
    for (what, header) in &cases {
        let mut browser = Browser::new(&demo);
        let reply = browser.get_with("/", &[("cookie", header)]).await;
        assert_eq!(reply.status, 200, "{what}: {}", reply.body);
        assert!(
            reply.body.contains("<strong>anonymous</strong>"),
            "{what}: {}",
            reply.body
        );
        assert!(
            set_cookie(&reply, REMEMBER_COOKIE)
                .is_none_or(|cookie| cookie.max_age() == Some(cookie::time::Duration::ZERO)),
            "{what}: removed if anything: {:?}",
            reply.headers
        );
        let reply = browser.get_with("/sessions", &[("cookie", header)]).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, "/?next=/sessions"),
            "{what}: {}",
            reply.body
        );
        let reply = browser.get_with("/api/whoami", &[("cookie", header)]).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
    }
    // Two copies of the same value are one cookie: it signs in.
    let twice = format!("{REMEMBER_COOKIE}={real}; {REMEMBER_COOKIE}={real}");
    let reply = Browser::new(&demo)
        .get_with("/", &[("cookie", &twice)])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(signed_in_user(&reply.body).as_deref(), Some("ada"));
    // No garbage was taken for a copied cookie: the owner is still signed
    // in and remembered.
    assert_eq!(owner.user().await.as_deref(), Some("ada"));
    owner.remembered_id().await;
}

/// The paragraph of a two-step sign-in page that says whether it is on.
fn two_step_status(page: &str) -> String {
    let (_, rest) = page
        .split_once(r#"<p id="two-step-status">"#)
        .unwrap_or_else(|| panic!("no two-step status:\n{page}"));
    rest.split_once("</p>")
        .map(|(status, _)| status.to_owned())
        .expect("end of the status")
}

/// The text of the element that `start` (its opening tag) begins, up to
/// `end`, on `page`; `None` if the page has none.
fn element_text<'p>(page: &'p str, start: &str, end: &str) -> Option<&'p str> {
    let (_, rest) = page.split_once(start)?;
    rest.split_once(end).map(|(text, _)| text)
}

/// Undoes the demo's HTML escaping.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The recovery codes a two-step sign-in page shows, if it shows them.
fn recovery_codes(page: &str) -> Option<Vec<String>> {
    let list = element_text(page, r#"<ol id="recovery-codes">"#, "</ol>")?;
    Some(
        list.split("<li><code>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</code>").map(|(code, _)| unescape(code)))
            .collect(),
    )
}

/// The seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The authenticator app of a test: the enrolment it read from the page.
struct Authenticator {
    totp: totp_rs::Totp,
}

impl Authenticator {
    /// The app, set up from what an enrolment page shows: the `otpauth://`
    /// URI, which must agree with the secret shown as text.
    fn from_page(page: &str) -> Self {
        let uri = element_text(page, r#"<code id="totp-uri">"#, "</code>")
            .map(unescape)
            .unwrap_or_else(|| panic!("no otpauth URI:\n{page}"));
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains("issuer=keycard%20demo"), "{uri}");
        let totp = totp_rs::Totp::from_url(&uri).unwrap_or_else(|e| panic!("{uri}: {e:?}"));
        let grouped = element_text(page, r#"<code id="totp-secret">"#, "</code>")
            .unwrap_or_else(|| panic!("no secret:\n{page}"));
        let groups: Vec<&str> = grouped.split(' ').collect();
        assert!(
            groups.iter().all(|group| (1..=4).contains(&group.len()))
                && groups[..groups.len() - 1].iter().all(|g| g.len() == 4),
            "in groups of four: {grouped}"
        );
        let typed = totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(TOTP_STEP)
            .with_secret(
                totp_rs::Secret::try_from_base32(groups.concat()).expect("a base32 secret"),
            )
            .build()
            .expect("a TOTP of the typed secret");
        let now = unix_now();
        assert_eq!(
            typed.generate(now).to_string(),
            totp.generate(now).to_string(),
            "the secret as text and the URI agree"
        );
        Self { totp }
    }

    /// The code of the current step.
    fn now(&self) -> String {
        self.totp.generate(unix_now()).to_string()
    }

    /// The code of the next step: the server accepts it (one step of
    /// skew), and no use of [`now`](Self::now)'s code before burnt it.
    fn next(&self) -> String {
        self.totp.generate(unix_now() + TOTP_STEP).to_string()
    }

    /// A code that no step near now has.
    fn wrong(&self) -> String {
        let now = unix_now();
        let near: Vec<String> = (0..5)
            .map(|i| {
                self.totp
                    .generate(now + i * TOTP_STEP - 2 * TOTP_STEP)
                    .to_string()
            })
            .collect();
        (0..)
            .map(|n: u32| format!("{:06}", (n * 137_911) % 1_000_000))
            .find(|code| !near.contains(code))
            .expect("a wrong code")
    }
}

impl Browser {
    /// Loads `path` and returns its synchronizer token.
    async fn token_of(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        csrf_token(&page.body).unwrap_or_else(|| panic!("no token on {path}:\n{}", page.body))
    }

    /// Submits a form of the two-step sign-in page, with its token.
    async fn submit_two_step(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let token = self.token_of(TOTP_PAGE).await;
        self.post_from_page(path, form, Some(&token)).await
    }

    /// Sets up two-step sign-in from its page and confirms it with the
    /// app's current code: the app, and the recovery codes shown once.
    async fn enable_two_step(&mut self) -> (Authenticator, Vec<String>) {
        let page = self.get(TOTP_PAGE).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            two_step_status(&page.body).contains("<strong>off</strong>"),
            "{}",
            page.body
        );
        let reply = self.submit_two_step("/security/totp/setup", &[]).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, TOTP_PAGE),
            "{}",
            reply.body
        );
        let page = self.get(TOTP_PAGE).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let app = Authenticator::from_page(&page.body);
        let token = csrf_token(&page.body).expect("a token");
        let reply = self
            .post_from_page(
                "/security/totp/confirm",
                &[("code", &app.now())],
                Some(&token),
            )
            .await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, TOTP_PAGE),
            "{}",
            reply.body
        );
        let page = self.get(TOTP_PAGE).await;
        let codes = recovery_codes(&page.body)
            .unwrap_or_else(|| panic!("no recovery codes:\n{}", page.body));
        assert!(
            two_step_status(&page.body).contains("<strong>on</strong>"),
            "{}",
            page.body
        );
        (app, codes)
    }

    /// Signs in with the password (and the further fields `extra`) to an
    /// account with two-step sign-in: sent to the code page, still
    /// anonymous.
    async fn sign_in_half_open(&mut self, user: &str, password: &str, extra: &[(&str, &str)]) {
        let mut form = vec![("name", user), ("password", password)];
        form.extend_from_slice(extra);
        let reply = self.submit("/login", &form).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, CODE_PAGE),
            "{}",
            reply.body
        );
        assert_eq!(self.user().await, None, "half-open is anonymous");
    }

    /// Enters `code` on the code page, with the page's token.
    async fn submit_code(&mut self, code: &str) -> Reply {
        let token = self.token_of(CODE_PAGE).await;
        self.post_from_page(CODE_PAGE, &[("code", code)], Some(&token))
            .await
    }

    /// Posts `code` to the code page with the home page's token, whatever
    /// this browser's state.
    async fn submit_code_blind(&mut self, code: &str) -> Reply {
        self.submit(CODE_PAGE, &[("code", code)]).await
    }

    /// Whether the code page asks this browser for a code.
    async fn waits_for_code(&mut self) -> bool {
        let page = self.get(CODE_PAGE).await;
        assert!(page.status < 500, "{}", page.body);
        page.status == 200 && page.body.contains(CODE_HEADING)
    }

    /// How the home page says this browser signed in.
    async fn method(&mut self) -> String {
        let home = self.get("/").await;
        element_text(&home.body, "</strong> (by ", ")")
            .unwrap_or_else(|| panic!("nobody signed in:\n{}", home.body))
            .to_owned()
    }
}

/// The status of `GET /api/whoami` with HTTP Basic.
async fn basic_whoami(demo: &Demo, user: &str, password: &str) -> u16 {
    plain_client()
        .get(format!("{}/api/whoami", demo.base))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Setting up two-step sign-in shows the secret, its URI and QR code, and
/// then the recovery codes once; from then on the password leaves the
/// browser half-open (anonymous to every page) until the code comes,
/// which a wrong code does not change, and the right one signs in with
/// fresh cookies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_step_sign_in_asks_for_a_code_after_the_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    browser.sign_in("ada", &password).await;
    let home = browser.get("/").await;
    assert!(
        home.body.contains(r#"href="/security/totp""#),
        "{}",
        home.body
    );

    // Set up: the secret as text, the URI, the QR code (tests build with
    // every feature); until confirmed, a reload shows it again.
    let reply = browser.submit_two_step("/security/totp/setup", &[]).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, TOTP_PAGE),
        "{}",
        reply.body
    );
    let page = browser.get(TOTP_PAGE).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.all("cache-control"), "no-store");
    assert!(
        two_step_status(&page.body).contains("being set up"),
        "{}",
        page.body
    );
    assert!(page.body.contains("HTTP Basic"), "the note on API clients");
    let png = element_text(
        &page.body,
        r#"<img id="totp-qr" src="data:image/png;base64,"#,
        "\"",
    )
    .unwrap_or_else(|| panic!("no QR code:\n{}", page.body));
    let png = STANDARD.decode(png).expect("base64");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let app = Authenticator::from_page(&page.body);
    let again = browser.get(TOTP_PAGE).await;
    assert_eq!(
        element_text(&again.body, r#"<code id="totp-uri">"#, "</code>"),
        element_text(&page.body, r#"<code id="totp-uri">"#, "</code>"),
        "the same enrolment until confirmed"
    );

    // A wrong first code confirms nothing.
    let reply = browser
        .submit_two_step("/security/totp/confirm", &[("code", &app.wrong())])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, TOTP_PAGE));
    let page = browser.get(TOTP_PAGE).await;
    assert!(
        page.body.contains("That code is not right"),
        "{}",
        page.body
    );
    assert!(two_step_status(&page.body).contains("being set up"));

    // The right one: on, and the recovery codes shown this once.
    let reply = browser
        .submit_two_step("/security/totp/confirm", &[("code", &app.now())])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, TOTP_PAGE));
    let page = browser.get(TOTP_PAGE).await;
    assert!(two_step_status(&page.body).contains("<strong>on</strong>"));
    let codes = recovery_codes(&page.body).unwrap_or_else(|| panic!("{}", page.body));
    assert_eq!(codes.len(), 10, "{codes:?}");
    for code in &codes {
        assert_eq!(code.len(), 14, "xxxx-xxxx-xxxx: {code}");
        assert_eq!(code.matches('-').count(), 2, "{code}");
    }
    assert!(!page.body.contains("totp-secret"), "the secret is gone");
    assert!(
        page.body
            .contains(r#"<p id="recovery-left">10 recovery codes left.</p>"#),
        "{}",
        page.body
    );
    let reload = browser.get(TOTP_PAGE).await;
    assert_eq!(recovery_codes(&reload.body), None, "shown once");
    assert!(!reload.body.contains(&codes[0]), "shown once");
    assert!(two_step_status(&reload.body).contains("<strong>on</strong>"));

    // HTTP Basic cannot carry a code: refused now, for ada only.
    assert_eq!(basic_whoami(&demo, "ada", &password).await, 401);
    assert_eq!(
        basic_whoami(&demo, "grace", demo.password("grace")).await,
        200
    );

    // Signing in: half-open after the password.
    let reply = browser.submit("/logout", &[]).await;
    assert_eq!(reply.status, 303);
    let reply = browser
        .submit("/login", &[("name", "ada"), ("password", &password)])
        .await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, CODE_PAGE),
        "{}",
        reply.body
    );
    assert!(reply.headers.get("set-cookie").is_some(), "a fresh token");
    let home = browser.get("/").await;
    assert_eq!(signed_in_user(&home.body), None, "{}", home.body);
    assert!(
        home.body.contains("A sign-in waits for its code"),
        "{}",
        home.body
    );
    for path in ["/tokens", TOTP_PAGE] {
        let reply = browser.get_with(path, &[("accept", "text/html")]).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, format!("/?next={path}").as_str()),
            "{path} while half-open"
        );
    }
    assert_eq!(
        browser.get("/sessions").await.header("location"),
        "/?next=/sessions",
        "no sessions page while half-open: sent to sign in"
    );
    let page = browser.get(CODE_PAGE).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(CODE_HEADING), "{}", page.body);
    assert!(page.body.contains("<strong>ada</strong>"), "{}", page.body);

    // A wrong code: the form again, still half-open.
    let reply = browser.submit_code(&app.wrong()).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains(WRONG_CODE), "{}", reply.body);
    assert!(reply.body.contains(CODE_HEADING), "the form again");
    assert_eq!(browser.user().await, None);
    assert!(browser.waits_for_code().await);

    // The right one signs in, with fresh cookies.
    let half_open = browser.jar.clone();
    let reply = browser.submit_code(&app.next()).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/"),
        "{}",
        reply.body
    );
    assert!(reply.headers.get("set-cookie").is_some(), "a fresh token");
    assert_ne!(browser.jar, half_open);
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
    assert_eq!(browser.method().await, "totp");
    let sessions = browser.get("/sessions").await;
    assert_eq!(sessions.status, 200);
    assert!(sessions.body.contains("<td>totp"), "{}", sessions.body);
    // The half-open cookies are dead, and the code page sends home.
    let mut replay = Browser::new(&demo);
    replay.jar = half_open;
    assert_eq!(replay.user().await, None);
    assert!(!replay.waits_for_code().await);
    assert_eq!(browser.get(CODE_PAGE).await.header("location"), "/");
}

/// A TOTP code works once: a second browser signing in with the code the
/// first one just used is refused (and stays half-open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_code_is_refused_the_second_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut setup = Browser::new(&demo);
    setup.sign_in("ada", &password).await;
    let (app, _) = setup.enable_two_step().await;

    let mut first = Browser::new(&demo);
    let mut second = Browser::new(&demo);
    first.sign_in_half_open("ada", &password, &[]).await;
    second.sign_in_half_open("ada", &password, &[]).await;
    let code = app.next();
    let reply = first.submit_code(&code).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/"),
        "{}",
        reply.body
    );
    assert_eq!(first.user().await.as_deref(), Some("ada"));
    let reply = second.submit_code(&code).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains(WRONG_CODE), "{}", reply.body);
    assert_eq!(second.user().await, None);
    assert!(second.waits_for_code().await, "still half-open");
    // Nor does the code of the confirmation work again.
    let reply = second.submit_code(&app.now()).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(second.user().await, None);
}

/// A recovery code signs in once, in place of a TOTP code; new codes
/// replace the old ones; turning two-step sign-in off (both after the
/// password) makes the password enough again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_code_signs_in_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    browser.sign_in("ada", &password).await;
    let (_, codes) = browser.enable_two_step().await;
    assert_eq!(codes.len(), 10);
    assert_eq!(browser.submit("/logout", &[]).await.status, 303);

    // Typed leniently: upper case, no dashes.
    browser.sign_in_half_open("ada", &password, &[]).await;
    let typed = codes[0].replace('-', " ").to_uppercase();
    let reply = browser.submit_code(&typed).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/"),
        "{}",
        reply.body
    );
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
    assert_eq!(browser.method().await, "recovery-code");
    let page = browser.get(TOTP_PAGE).await;
    assert!(
        page.body
            .contains(r#"<p id="recovery-left">9 recovery codes left.</p>"#),
        "{}",
        page.body
    );

    // Once only.
    assert_eq!(browser.submit("/logout", &[]).await.status, 303);
    browser.sign_in_half_open("ada", &password, &[]).await;
    let reply = browser.submit_code(&codes[0]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains(WRONG_CODE), "{}", reply.body);
    assert_eq!(browser.user().await, None);
    let reply = browser.submit_code(&codes[1]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert_eq!(browser.user().await.as_deref(), Some("ada"));

    // New codes, after the password: shown once, the old ones dead.
    let reply = browser
        .submit_two_step(
            "/security/totp/recovery-codes",
            &[("password", "not the password")],
        )
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, TOTP_PAGE));
    let page = browser.get(TOTP_PAGE).await;
    assert!(page.body.contains("Wrong password"), "{}", page.body);
    assert_eq!(recovery_codes(&page.body), None);
    assert!(
        page.body.contains("8 recovery codes left."),
        "{}",
        page.body
    );
    let reply = browser
        .submit_two_step("/security/totp/recovery-codes", &[("password", &password)])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, TOTP_PAGE));
    let page = browser.get(TOTP_PAGE).await;
    let new_codes = recovery_codes(&page.body).unwrap_or_else(|| panic!("{}", page.body));
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|code| !codes.contains(code)));
    assert!(
        page.body.contains("10 recovery codes left."),
        "{}",
        page.body
    );
    assert_eq!(recovery_codes(&browser.get(TOTP_PAGE).await.body), None);
    assert_eq!(browser.submit("/logout", &[]).await.status, 303);
    browser.sign_in_half_open("ada", &password, &[]).await;
    let reply = browser.submit_code(&codes[2]).await;
    assert_eq!(reply.status, 403, "an old code: {}", reply.body);
    let reply = browser.submit_code(&new_codes[0]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert_eq!(browser.user().await.as_deref(), Some("ada"));

    // Turned off, after the password: the password alone signs in again,
    // HTTP Basic too.
    let reply = browser
        .submit_two_step("/security/totp/remove", &[("password", "wrong")])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, TOTP_PAGE));
    let page = browser.get(TOTP_PAGE).await;
    assert!(page.body.contains("Wrong password"), "{}", page.body);
    assert!(two_step_status(&page.body).contains("<strong>on</strong>"));
    let reply = browser
        .submit_two_step("/security/totp/remove", &[("password", &password)])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, TOTP_PAGE));
    let page = browser.get(TOTP_PAGE).await;
    assert!(two_step_status(&page.body).contains("<strong>off</strong>"));
    assert_eq!(basic_whoami(&demo, "ada", &password).await, 200);
    assert_eq!(browser.submit("/logout", &[]).await.status, 303);
    browser.sign_in("ada", &password).await;
    assert_eq!(browser.method().await, "password");
}

/// "Remember me" ticked with the password waits for the code: no
/// remember-me cookie while half-open, one once the code is in; the page
/// asked for (`next`) waits too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_me_waits_for_the_second_factor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut setup = Browser::new(&demo);
    setup.sign_in("ada", &password).await;
    let (app, codes) = setup.enable_two_step().await;

    let mut browser = Browser::new(&demo);
    let token = browser.token().await;
    let reply = browser
        .post_from_page(
            "/login",
            &[
                ("name", "ada"),
                ("password", &password),
                ("remember", "on"),
                ("next", "/tokens"),
            ],
            Some(&token),
        )
        .await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, CODE_PAGE),
        "{}",
        reply.body
    );
    assert_eq!(set_cookie(&reply, REMEMBER_COOKIE), None, "not yet");
    assert!(!browser.jar.contains_key(REMEMBER_COOKIE));
    assert!(browser.waits_for_code().await);
    assert!(!browser.jar.contains_key(REMEMBER_COOKIE));

    let reply = browser.submit_code(&app.next()).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/tokens"),
        "{}",
        reply.body
    );
    let cookie = set_cookie(&reply, REMEMBER_COOKIE).expect("remembered now");
    assert!(cookie.max_age().is_some_and(|age| age.whole_seconds() > 0));
    assert!(browser.jar.contains_key(REMEMBER_COOKIE));
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
    assert!(!browser.remembered_id().await.is_empty());

    // Restarted: the remembered browser is signed back in, no code asked.
    let mut restarted = Browser::new(&demo);
    restarted.jar.insert(
        REMEMBER_COOKIE.to_owned(),
        browser.jar[REMEMBER_COOKIE].clone(),
    );
    assert_eq!(restarted.user().await.as_deref(), Some("ada"));
    assert_eq!(restarted.method().await, "remember");

    // Unticked, nothing is remembered after the code either (a recovery
    // code: the TOTP step after the one just used is not due yet).
    let mut plain = Browser::new(&demo);
    plain.sign_in_half_open("ada", &password, &[]).await;
    let reply = plain.submit_code(&codes[0]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    assert_eq!(set_cookie(&reply, REMEMBER_COOKIE), None);
    assert_eq!(plain.user().await.as_deref(), Some("ada"));
}

/// A sign-in link of an account with two-step sign-in is the first step
/// only: the code comes next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_leads_to_the_code_step() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut setup = Browser::new(&demo);
    setup.sign_in("ada", &password).await;
    let (app, _) = setup.enable_two_step().await;

    let mut browser = Browser::new(&demo);
    let secret = demo.sign_in_link(&mut browser, "ada").await;
    let reply = browser.redeem_link(&secret).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, CODE_PAGE),
        "{}",
        reply.body
    );
    assert_eq!(browser.user().await, None);
    assert!(browser.waits_for_code().await);
    let reply = browser.submit_code(&app.wrong()).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let reply = browser.submit_code(&app.next()).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/"),
        "{}",
        reply.body
    );
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
    assert_eq!(browser.method().await, "totp");
    // The link is used up.
    let mut other = Browser::new(&demo);
    let reply = other.redeem_link(&secret).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
}

/// A forged code post (another site's page, no token, another session's
/// token) is refused, leaves the browser half-open and spends no code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_code_post_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut setup = Browser::new(&demo);
    setup.sign_in("ada", &password).await;
    let (app, codes) = setup.enable_two_step().await;

    let mut browser = Browser::new(&demo);
    browser.sign_in_half_open("ada", &password, &[]).await;
    let token = browser.token_of(CODE_PAGE).await;
    let other_token = setup.token().await;
    let code = app.next();
    let sibling = demo.sibling_origin();
    for headers in [
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.example"),
        ],
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", sibling.as_str()),
        ],
        vec![("origin", "null")],
    ] {
        for proof in [code.as_str(), codes[0].as_str()] {
            let jar = browser.jar.clone();
            let reply = browser
                .send(
                    reqwest::Method::POST,
                    CODE_PAGE,
                    Some(&[("code", proof), ("csrf_token", &token)]),
                    &headers,
                )
                .await;
            assert_eq!(reply.status, 403, "{headers:?}: {}", reply.body);
            assert!(reply.body.contains(CROSS_ORIGIN_REFUSED), "{}", reply.body);
            assert_eq!(browser.jar, jar, "{headers:?}");
        }
    }
    for presented in [
        None,
        Some(other_token.as_str()),
        Some("A".repeat(43).as_str()),
    ] {
        for proof in [code.as_str(), codes[0].as_str()] {
            let reply = browser
                .post_from_page(CODE_PAGE, &[("code", proof)], presented)
                .await;
            assert_eq!(reply.status, 403, "{presented:?}: {}", reply.body);
            assert!(reply.body.contains(FORM_REFUSED), "{}", reply.body);
            assert!(reply.headers.get("set-cookie").is_none());
        }
    }
    assert_eq!(browser.user().await, None);
    assert!(browser.waits_for_code().await, "still half-open");
    // Nothing was spent: the same code and recovery code still work.
    let reply = browser.submit_code(&code).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/"),
        "{}",
        reply.body
    );
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
    let mut third = Browser::new(&demo);
    third.sign_in_half_open("ada", &password, &[]).await;
    let reply = third.submit_code(&codes[0]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
}

/// Bad input on the code form and the confirmation form: a clean page
/// (4xx, or the form again), never a server error, and nothing signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_code_input_is_refused_without_a_server_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut setup = Browser::new(&demo);
    setup.sign_in("ada", &password).await;

    // The confirmation form, while setting up.
    let reply = setup.submit_two_step("/security/totp/setup", &[]).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    let long = "1".repeat(10 * 1024);
    for code in [
        "",
        "   ",
        "abcdef",
        "1234567",
        "12345",
        long.as_str(),
        "١٢٣٤٥٦",
    ] {
        let reply = setup
            .submit_two_step("/security/totp/confirm", &[("code", code)])
            .await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, TOTP_PAGE),
            "{code:.10}: {}",
            reply.body
        );
        let page = setup.get(TOTP_PAGE).await;
        assert!(two_step_status(&page.body).contains("being set up"));
    }
    let reply = setup.submit_two_step("/security/totp/confirm", &[]).await;
    assert_eq!(reply.status, 303, "no code field: {}", reply.body);
    let page = setup.get(TOTP_PAGE).await;
    let app = Authenticator::from_page(&page.body);
    let reply = setup
        .submit_two_step("/security/totp/confirm", &[("code", &app.now())])
        .await;
    assert_eq!(reply.status, 303);
    assert!(two_step_status(&setup.get(TOTP_PAGE).await.body).contains("<strong>on</strong>"));

    // The code form.
    let mut browser = Browser::new(&demo);
    assert_eq!(
        browser.get(CODE_PAGE).await.header("location"),
        "/",
        "no sign-in waits: home"
    );
    let reply = browser.submit_code_blind("123456").await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/"),
        "{}",
        reply.body
    );
    browser.sign_in_half_open("ada", &password, &[]).await;
    let letters = "a".repeat(10 * 1024);
    let nul = "12\u{0}456";
    for code in [
        "",
        "   ",
        "abcdef",
        "1234567",
        long.as_str(),
        letters.as_str(),
        nul,
        "<script>",
    ] {
        let reply = browser.submit_code(code).await;
        assert!(
            (400..500).contains(&reply.status),
            "{code:.10}: {} {}",
            reply.status,
            reply.body
        );
        assert!(
            reply.body.contains(CODE_HEADING),
            "the form again: {}",
            reply.body
        );
        assert!(!reply.body.contains("<script>"), "escaped");
        assert_eq!(browser.user().await, None, "{code:.10}");
    }
    let token = browser.token_of(CODE_PAGE).await;
    let reply = browser.post_from_page(CODE_PAGE, &[], Some(&token)).await;
    assert_eq!(reply.status, 400, "no code field: {}", reply.body);
    let reply = browser
        .send(
            reqwest::Method::POST,
            CODE_PAGE,
            None,
            &[
                ("sec-fetch-site", "same-origin"),
                ("content-type", "text/plain"),
            ],
        )
        .await;
    assert!(
        (400..500).contains(&reply.status),
        "not a form: {}",
        reply.status
    );
    // Still half-open, and the right code still signs in.
    assert!(browser.waits_for_code().await);
    let reply = browser.submit_code(&app.next()).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/"),
        "{}",
        reply.body
    );
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
}

/// A half-open sign-in waits `--code-seconds` for its code: after that the
/// code signs nobody in, the page says the sign-in expired, and the
/// password comes first again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_waiting_too_long_for_its_code_expires() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start_with(&dir.path().join("demo.db"), &["--code-seconds", "2"]);
    let password = demo.password("ada").to_owned();
    let mut setup = Browser::new(&demo);
    setup.sign_in("ada", &password).await;
    let (app, _) = setup.enable_two_step().await;

    let mut browser = Browser::new(&demo);
    browser.sign_in_half_open("ada", &password, &[]).await;
    let page = browser.get(CODE_PAGE).await;
    assert!(
        page.body.contains("2 seconds after the password"),
        "{}",
        page.body
    );
    let token = csrf_token(&page.body).expect("a token");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let code = app.next();
    let reply = browser
        .post_from_page(CODE_PAGE, &[("code", &code)], Some(&token))
        .await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains(SIGN_IN_EXPIRED), "{}", reply.body);
    assert_eq!(browser.user().await, None);
    assert!(!browser.waits_for_code().await);

    // Expired on the page too.
    browser.sign_in_half_open("ada", &password, &[]).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let page = browser.get(CODE_PAGE).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains(SIGN_IN_EXPIRED), "{}", page.body);
    assert_eq!(browser.get(CODE_PAGE).await.header("location"), "/");

    // The password again, and the code (unspent) in time.
    browser.sign_in_half_open("ada", &password, &[]).await;
    let reply = browser.submit_code(&code).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/"),
        "{}",
        reply.body
    );
    assert_eq!(browser.user().await.as_deref(), Some("ada"));
}

/// The two-step sign-in page and its set-up need a recent sign-in: an
/// older one confirms the password first, and sets nothing up meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_sign_in_confirms_the_password_before_setting_up_two_step() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start_with(&dir.path().join("demo.db"), &["--sudo-seconds", SHORT_SUDO]);
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    browser.sign_in("ada", &password).await;
    let token = browser.token_of(TOTP_PAGE).await;
    tokio::time::sleep(PAST_SHORT_SUDO).await;

    let confirm = "/confirm?next=/security/totp";
    let reply = browser
        .get_with(TOTP_PAGE, &[("accept", "text/html")])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, confirm));
    let reply = browser
        .send(
            reqwest::Method::POST,
            "/security/totp/setup",
            Some(&[("csrf_token", &token)]),
            &[("sec-fetch-site", "same-origin"), ("accept", "text/html")],
        )
        .await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, confirm),
        "{}",
        reply.body
    );
    let reply = browser.confirm(&password, TOTP_PAGE).await;
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, TOTP_PAGE),
        "{}",
        reply.body
    );
    let page = browser.get(TOTP_PAGE).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        two_step_status(&page.body).contains("<strong>off</strong>"),
        "nothing set up before the confirmation: {}",
        page.body
    );
}

/// Wrong codes count toward the account's lockout, like wrong passwords:
/// ten lock it, and then neither the right code nor the right password
/// signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_count_toward_the_lockout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut setup = Browser::new(&demo);
    setup.sign_in("ada", &password).await;
    let (app, codes) = setup.enable_two_step().await;

    let mut browser = Browser::new(&demo);
    browser.sign_in_half_open("ada", &password, &[]).await;
    let wrong = app.wrong();
    for attempt in 0..10 {
        let reply = browser.submit_code(&wrong).await;
        assert_eq!(reply.status, 403, "attempt {attempt}: {}", reply.body);
        assert!(reply.body.contains(WRONG_CODE), "{}", reply.body);
    }
    let reply = browser.submit_code(&app.next()).await;
    assert_eq!(reply.status, 403, "locked: {}", reply.body);
    let reply = browser.submit_code(&codes[0]).await;
    assert_eq!(reply.status, 403, "locked: {}", reply.body);
    assert_eq!(browser.user().await, None);
    let mut other = Browser::new(&demo);
    let reply = other
        .submit("/login", &[("name", "ada"), ("password", &password)])
        .await;
    assert_eq!(reply.status, 401, "locked: {}", reply.body);
    assert_eq!(other.user().await, None);
    // The signed-in session is not touched.
    assert_eq!(setup.user().await.as_deref(), Some("ada"));
}

// ---------------------------------------------------------------------------
// The pages as a product: the header, the sign-in redirect, the sessions
// and tokens pages.

/// The site header of a page (every page has one).
fn site_header(page: &str) -> &str {
    element_text(page, r#"<header class="site">"#, "</header>")
        .unwrap_or_else(|| panic!("no site header:\n{page}"))
}

/// A table of a sessions page by its id, rows and all.
fn sessions_table<'p>(page: &'p str, id: &str) -> Option<&'p str> {
    element_text(
        page,
        &format!(r#"<table class="sessions" id="{id}">"#),
        "</table>",
    )
}

/// Every page has the same header: anonymous, the site's name and a link
/// to sign in; signed in, who, the menu and a sign-out form carrying the
/// page's synchronizer token, which signs out. The home page offers no
/// sign-in form to a signed-in browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_says_who_is_signed_in_and_offers_sign_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);

    let home = browser.get("/").await;
    assert_eq!(home.status, 200, "{}", home.body);
    let header = site_header(&home.body);
    assert!(header.contains(">keycard demo</a>"), "{header}");
    assert!(
        header.contains(r#"<a href="/#sign-in" class="sign-in">Sign in</a>"#),
        "{header}"
    );
    assert!(!header.contains("signed in as"), "{header}");
    assert!(!header.contains(r#"action="/logout""#), "{header}");
    assert!(home.body.contains(r#"id="sign-in""#), "{}", home.body);
    assert!(
        home.body.contains(r#"name="password" type="password""#),
        "{}",
        home.body
    );
    assert!(home.body.contains(r#"action="/login""#), "{}", home.body);
    // Error pages too.
    let error = browser.get("/login/link").await;
    assert_eq!(error.status, 400, "{}", error.body);
    assert!(
        site_header(&error.body).contains("Sign in"),
        "{}",
        error.body
    );

    browser.sign_in("ada", &password).await;
    for path in ["/", "/sessions", "/tokens", "/login/link"] {
        let page = browser.get(path).await;
        let header = site_header(&page.body);
        assert!(
            header.contains("signed in as <strong>ada</strong>"),
            "{path}: {header}"
        );
        for link in [
            r#"href="/sessions""#,
            r#"href="/tokens""#,
            r#"href="/security/totp""#,
        ] {
            assert!(header.contains(link), "{path}: {link} in {header}");
        }
        assert!(
            header.contains(r#"<form method="post" action="/logout""#)
                && header.contains("Sign out</button>"),
            "{path}: {header}"
        );
        assert!(!header.contains("Sign in"), "{path}: {header}");
        // The header's form carries the page's one token.
        let token = csrf_token(header).unwrap_or_else(|| panic!("{path}: no token in {header}"));
        assert_eq!(csrf_token(&page.body), Some(token), "{path}");
    }
    let home = browser.get("/").await;
    for sign_in_bit in [
        r#"name="password" type="password""#,
        r#"action="/login""#,
        r#"action="/login/link""#,
        REMEMBER_BOX,
    ] {
        assert!(
            !home.body.contains(sign_in_bit),
            "signed in, no {sign_in_bit}: {}",
            home.body
        );
    }
    assert!(home.body.contains(r#"action="/visit""#), "{}", home.body);

    // The header's sign-out form signs out.
    let token = csrf_token(site_header(&home.body)).expect("the header's token");
    let reply = browser.post_from_page("/logout", &[], Some(&token)).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    let home = browser.get("/").await;
    assert_eq!(signed_in_user(&home.body), None, "{}", home.body);
    assert!(site_header(&home.body).contains("Sign in"));
    assert!(home.body.contains(r#"name="password" type="password""#));
}

/// Every page that needs a user sends an anonymous browser to the sign-in
/// page with `next` the page; the sign-in form carries it and signing in
/// goes back there. A `next` of another site is not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_pages_send_anonymous_browsers_to_sign_in_and_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let html = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];

    for (path, next) in [
        ("/sessions", "/sessions"),
        ("/tokens", "/tokens"),
        (TOTP_PAGE, TOTP_PAGE),
        ("/confirm?next=/tokens", "/tokens"),
    ] {
        let mut browser = Browser::new(&demo);
        let reply = browser.get_with(path, &html).await;
        let expected = format!("/?next={next}");
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, expected.as_str()),
            "{path}: {}",
            reply.body
        );
        let page = browser.get(&expected).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(
            page.body.contains("Please sign in to see that page."),
            "{path}: {}",
            page.body
        );
        assert!(
            page.body.contains(&format!(
                r#"<input type="hidden" name="next" value="{next}">"#
            )),
            "{path}: {}",
            page.body
        );
        let token = csrf_token(&page.body).expect("a token");
        let reply = browser
            .post_from_page(
                "/login",
                &[("name", "ada"), ("password", &password), ("next", next)],
                Some(&token),
            )
            .await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (303, next),
            "{path}: back there after signing in: {}",
            reply.body
        );
        let page = browser.get_with(next, &html).await;
        assert_eq!(page.status, 200, "{path}: {next}: {}", page.body);
        assert_eq!(signed_in_user(&page.body).as_deref(), Some("ada"), "{path}");
    }

    let mut browser = Browser::new(&demo);
    let page = browser.get("/?next=//evil.example").await;
    assert!(!page.body.contains("evil"), "{}", page.body);
    let reply = browser
        .submit(
            "/login",
            &[
                ("name", "ada"),
                ("password", &password),
                ("next", "//evil.example"),
            ],
        )
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
}

/// The tokens page's `curl` example names this site as the request did
/// (its `Host`), and the new token while it is shown, once; a hostile
/// `Host` never reaches the page as markup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_example_names_the_host_and_the_new_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    browser.sign_in("ada", &password).await;
    let curl = |page: &str| -> String {
        element_text(page, r#"<code id="curl-example">"#, "</code>")
            .map(unescape)
            .unwrap_or_else(|| panic!("no curl example:\n{page}"))
    };

    let page = browser.get("/tokens").await;
    assert_eq!(
        curl(&page.body),
        format!(
            "curl -H 'Authorization: Bearer kc_…' '{}/api/whoami'",
            demo.base
        )
    );

    let reply = browser.submit("/tokens", &[("name", "ci")]).await;
    assert_eq!((reply.status, reply.header("location")), (303, "/tokens"));
    let page = browser.get("/tokens").await;
    let secret = new_token_secret(&page.body);
    let example = curl(&page.body);
    assert_eq!(
        example,
        format!(
            "curl -H 'Authorization: Bearer {secret}' '{}/api/whoami'",
            demo.base
        )
    );
    // The example works as printed.
    assert_eq!(
        bearer_whoami(&plain_client(), &demo, &secret).await,
        (200, "ada bearer api".to_owned())
    );
    // Shown once: the reload has the placeholder again.
    let page = browser.get("/tokens").await;
    assert!(!page.body.contains(&secret), "{}", page.body);
    assert!(curl(&page.body).contains("Bearer kc_…"), "{}", page.body);

    let page = browser
        .get_with("/tokens", &[("host", "demo.example:8080")])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        curl(&page.body).contains("'http://demo.example:8080/api/whoami'"),
        "{}",
        page.body
    );
    for hostile in [
        r#"evil.example"><script>alert(1)</script>"#,
        "evil.example' ; rm -rf ~ ; '",
    ] {
        let page = browser.get_with("/tokens", &[("host", hostile)]).await;
        assert_eq!(page.status, 200, "{hostile}: {}", page.body);
        assert!(!page.body.contains("<script>"), "{hostile}: {}", page.body);
        assert!(
            !page.body.contains("evil.example"),
            "{hostile}: {}",
            page.body
        );
        assert!(
            curl(&page.body).contains(&format!("'{}/api/whoami'", demo.base)),
            "{hostile}: the listening address instead: {}",
            page.body
        );
    }
}

/// The sessions page: a device label for each session, escaped whatever
/// the `User-Agent`; relative times with the exact one in a `title`;
/// browsers and API sessions in their own tables, this device marked; and
/// the destructive buttons ask first (a script's `confirm`, on top of
/// forms that work without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_page_labels_devices_groups_api_sessions_and_asks_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(&dir.path().join("demo.db"));
    let password = demo.password("ada").to_owned();
    let mut browser = Browser::new(&demo);
    let token = browser.token().await;
    let origin = demo.base.clone();
    let hostile = "<script>alert(1)</script> \"quoted\"";
    let reply = browser
        .send(
            reqwest::Method::POST,
            "/login",
            Some(&[
                ("name", "ada"),
                ("password", &password),
                ("remember", "on"),
                ("csrf_token", &token),
            ]),
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", &origin),
                ("user-agent", hostile),
            ],
        )
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, "/"));
    // Another browser, and an API client signing in with HTTP Basic.
    let mut firefox = Browser::new(&demo);
    let token = firefox.token().await;
    let reply = firefox
        .send(
            reqwest::Method::POST,
            "/login",
            Some(&[
                ("name", "ada"),
                ("password", &password),
                ("csrf_token", &token),
            ]),
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", &origin),
                (
                    "user-agent",
                    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                ),
            ],
        )
        .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    let api = plain_client()
        .get(format!("{}/api/whoami", demo.base))
        .basic_auth("ada", Some(&password))
        .header("user-agent", "curl/8.5.0")
        .send()
        .await
        .expect("request");
    assert_eq!(api.status(), 200);

    let page = browser.get("/sessions").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;"),
        "the label, escaped: {}",
        page.body
    );
    let browsers = sessions_table(&page.body, "browser-sessions")
        .unwrap_or_else(|| panic!("no browsers table:\n{}", page.body));
    let api = sessions_table(&page.body, "api-sessions")
        .unwrap_or_else(|| panic!("no API sessions table:\n{}", page.body));
    let rows = |table: &str| table.lines().filter(|l| l.starts_with("<tr")).count() - 1;
    assert_eq!(rows(browsers), 2, "{browsers}");
    assert_eq!(rows(api), 1, "{api}");
    assert!(browsers.contains("Firefox on Linux"), "{browsers}");
    assert!(api.contains(r#"<td class="device">curl</td>"#), "{api}");
    assert!(!api.contains("Firefox"), "{api}");
    let current = browsers
        .lines()
        .find(|line| line.contains("<strong>this device</strong>"))
        .unwrap_or_else(|| panic!("this device is not marked:\n{browsers}"));
    assert!(current.contains("&lt;script&gt;"), "{current}");
    assert!(current.contains(r#"class="current""#), "{current}");
    // Relative times, the exact one in the title.
    assert!(
        current.contains("just now</time>") || current.contains("seconds ago</time>"),
        "{current}"
    );
    assert!(current.contains(r#"<time datetime="20"#), "{current}");
    assert!(
        current.contains(r#"title="20"#) && current.contains(" UTC\""),
        "{current}"
    );

    // Every destructive button asks first, and still posts to its route.
    let ask = r#" onsubmit="return confirm("#;
    for id in other_session_ids(&page.body) {
        assert!(
            page.body
                .contains(&format!(r#"action="/sessions/{id}/end"{ask}"#)),
            "{id}: {}",
            page.body
        );
    }
    assert!(
        page.body
            .contains(&format!(r#"action="/sessions/end-others"{ask}"#)),
        "{}",
        page.body
    );
    let remembered = remembered_ids(&page.body);
    assert_eq!(remembered.len(), 1, "{}", page.body);
    assert!(
        page.body.contains(&format!(
            r#"action="/remembered/{}/revoke"{ask}"#,
            remembered[0]
        )),
        "{}",
        page.body
    );
    let (id, _) = browser.create_token("ci").await;
    let tokens = browser.get("/tokens").await;
    assert!(
        tokens
            .body
            .contains(&format!(r#"action="/tokens/{id}/revoke"{ask}"#)),
        "{}",
        tokens.body
    );
    assert!(tokens.body.contains("just now</time>"), "{}", tokens.body);
    let (_app, _codes) = browser.enable_two_step().await;
    let two_step = browser.get(TOTP_PAGE).await;
    assert!(
        two_step
            .body
            .contains(&format!(r#"action="/security/totp/remove"{ask}"#)),
        "{}",
        two_step.body
    );

    // Without scripts the forms work as before: ending the other browser.
    let others = other_session_ids(&page.body);
    assert_eq!(others.len(), 2, "{}", page.body);
    let reply = browser
        .submit(&format!("/sessions/{}/end", others[0]), &[])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, "/sessions"));
    let page = browser.get("/sessions").await;
    assert_eq!(other_session_ids(&page.body).len(), 1, "{}", page.body);
}
