//! End-to-end tests of `examples/demo/` in a real browser: headless
//! Chromium, driven over WebDriver (`chromedriver`, through `fantoccini`),
//! against the real demo binary on a temporary SQLite file.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; `.ci/run` installs them). Without them each
//! test says so and passes, except under `CI`, where it fails: CI must
//! never skip the browser silently.
//!
//! Each test starts its own demo (`--addr 127.0.0.1:0`, a fresh database,
//! the demo users' passwords read from what it prints) and opens it as
//! `http://localhost:PORT`. Each browser profile is its own Chromium with
//! a fresh, empty `--user-data-dir`; one `chromedriver` serves the test
//! binary, started with the first test and shut down with the last.
//!
//! After each step a screenshot goes to `screenshots/TEST/` in the test's
//! temporary directory; when a test fails, that directory (with the
//! demo's log and database) is kept and its path printed. With
//! `KEYCARD_BROWSER_KEEP=1` it is kept when the test passes too.
//!
//! The examples are built by a full `cargo test`; for this test alone, run
//! `cargo build --all-features --examples` first.

#[path = "common/example_binary.rs"]
mod example_binary;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use axum::response::IntoResponse as _;
use cookie::SameSite;
use cookie::time::OffsetDateTime;
use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Debian's Chromium and its WebDriver.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium's flags: headless, as root, and quiet on a machine with no
/// network (without the background-networking flags its own connections
/// are refused and slow it down).
const CHROMIUM_ARGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,900",
];

/// Set (to anything), keeps every test's directory, screenshots and all,
/// also when the test passes.
const KEEP_VAR: &str = "KEYCARD_BROWSER_KEEP";

/// How long the demo or chromedriver may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a page may take to load, or to show what a test waits for.
const WAIT: Duration = Duration::from_secs(20);

/// The demo's cookies (its development cookies: no `__Host-` prefix).
const ID_COOKIE: &str = "keycard-id";
const TOKEN_COOKIE: &str = "keycard-token";
const REMEMBER_COOKIE: &str = "keycard-remember";

/// The session layer's answer to a cross-origin `POST`.
const CROSS_ORIGIN_REFUSED: &str = "Cross-origin request refused";

/// The demo's home page for nobody signed in.
const ANONYMOUS: &str = "You are anonymous.";

/// The page that asks a half-open sign-in for its code.
const CODE_PAGE: &str = "/login/code";

/// The two-step sign-in page, and the page that confirms the password.
const TOTP_PAGE: &str = "/security/totp";
const CONFIRM_PAGE: &str = "/confirm";
/// The demo's passkeys page.
#[cfg(feature = "passkeys")]
const PASSKEYS_PAGE: &str = "/security/passkeys";

/// TOTP's time step, in seconds.
const TOTP_STEP: u64 = 30;

// ---------------------------------------------------------------------------
// Skipping without a browser

/// Whether Chromium and chromedriver are both installed. Without them:
/// `false` with a message, or a panic under `CI`.
fn browser_installed() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "{} not installed (Debian's `chromium` and `chromium-driver`; .ci/run installs them)",
        missing.join(" and ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message}: under CI the browser tests must run");
    }
    // Past the test harness's capture (which takes `eprintln!`), so that
    // the skip shows in a passing run too.
    let _ = writeln!(std::io::stderr(), "skipping this browser test: {message}");
    false
}

// ---------------------------------------------------------------------------
// chromedriver: one per test binary

/// The running chromedriver and how many tests use it.
struct DriverState {
    driver: Option<Driver>,
    users: usize,
}

static DRIVER: Mutex<DriverState> = Mutex::new(DriverState {
    driver: None,
    users: 0,
});

struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it listens.
    fn start() -> Driver {
        let port = free_port();
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--log-level=WARNING")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Driver { child, port };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromedriver --port={port} exited before it listened: {status}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromedriver did not listen on port {port} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks chromedriver to quit (which closes every browser it started,
    /// also those of a failed test), then makes sure it is gone.
    fn stop(mut self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let request = format!(
                "GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.port
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's hold on the shared chromedriver: the first starts it, the last
/// to let go stops it.
struct DriverLease {
    url: String,
}

impl DriverLease {
    fn take() -> DriverLease {
        let mut state = DRIVER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let port = match &state.driver {
            Some(driver) => driver.port,
            None => {
                let driver = Driver::start();
                let port = driver.port;
                state.driver = Some(driver);
                port
            }
        };
        state.users += 1;
        DriverLease {
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for DriverLease {
    fn drop(&mut self) {
        let mut state = DRIVER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.users -= 1;
        if state.users == 0
            && let Some(driver) = state.driver.take()
        {
            driver.stop();
        }
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

// ---------------------------------------------------------------------------
// The demo

/// A running demo, killed when dropped.
struct Demo {
    child: Child,
    /// `http://localhost:PORT`, as the browsers open it.
    base: String,
    /// What it printed before it listened.
    lines: Vec<String>,
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
    /// Starts the demo on a fresh database in `dir`, its log in
    /// `dir/demo.log`, and waits for its address.
    fn start(dir: &Path, args: &[&str]) -> Demo {
        let log = std::fs::File::create(dir.join("demo.log")).expect("the demo's log file");
        let mut child = Command::new(example_binary::example_binary("demo"))
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(dir.join("demo.db"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("stdout");
        // A thread reads every line, so the pipe never fills up.
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines_tx.send(line);
            }
        });
        let mut demo = Demo {
            child,
            base: String::new(),
            lines: Vec::new(),
            users: BTreeMap::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines_rx.recv_timeout(left) {
                Ok(line) => line,
                Err(error) => panic!(
                    "the demo did not print its address ({error:?}); it printed {:#?}",
                    demo.lines
                ),
            };
            if let Some(addr) = line.strip_prefix("keycard demo: listening on http://") {
                let addr: SocketAddr = addr.trim().parse().expect("the demo's address");
                demo.base = format!("http://localhost:{}", addr.port());
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
        demo
    }

    /// The password printed for `user`.
    fn password(&self, user: &str) -> String {
        self.users
            .get(user)
            .unwrap_or_else(|| panic!("no password printed for {user}: {:#?}", self.lines))
            .clone()
    }
}

// ---------------------------------------------------------------------------
// One test: its directory, its demo, its browsers

/// A test's world: a temporary directory (database, log, browser
/// profiles, screenshots), the demo, and the lease on chromedriver. When
/// the test fails, the directory is kept and its path printed.
struct World {
    demo: Demo,
    driver: DriverLease,
    name: &'static str,
    dir: Option<tempfile::TempDir>,
    shots: Arc<Shots>,
    /// Profiles opened so far, each with its own user-data-dir.
    profiles: usize,
}

impl Drop for World {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if (failed || std::env::var_os(KEEP_VAR).is_some())
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "browser test {} {}: screenshots in {}, the demo's log and database in {}",
                self.name,
                if failed { "failed" } else { "passed" },
                self.shots.dir.display(),
                kept.display()
            );
        }
    }
}

impl World {
    /// The world of the test `name`, with the demo started with `args`;
    /// `None` (the test returns) when the browser is not installed outside
    /// CI.
    fn start(name: &'static str, args: &[&str]) -> Option<World> {
        if !browser_installed() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("keycard-browser-{name}-"))
            .tempdir()
            .expect("temp dir");
        let shots = dir.path().join("screenshots").join(name);
        std::fs::create_dir_all(&shots).expect("the screenshots folder");
        let demo = Demo::start(dir.path(), args);
        let driver = DriverLease::take();
        Some(World {
            name,
            shots: Arc::new(Shots {
                dir: shots,
                next: AtomicUsize::new(1),
            }),
            demo,
            driver,
            dir: Some(dir),
            profiles: 0,
        })
    }

    fn password(&self, user: &str) -> String {
        self.demo.password(user)
    }

    /// A fresh browser profile: its own Chromium with an empty
    /// user-data-dir, so no cookie, cache or history in common with the
    /// others. `label` names it in the screenshots.
    async fn browser(&mut self, label: &'static str) -> Browser {
        self.profiles += 1;
        let profile = self
            .dir
            .as_ref()
            .expect("the test's directory")
            .path()
            .join("profiles")
            .join(format!("{}-{label}", self.profiles));
        std::fs::create_dir_all(&profile).expect("a profile directory");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|arg| (*arg).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            "timeouts": { "pageLoad": WAIT.as_millis() as u64, "script": 10_000 },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let client = tokio::time::timeout(
            START_TIMEOUT,
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&self.driver.url),
        )
        .await
        .unwrap_or_else(|_| panic!("Chromium did not start within {START_TIMEOUT:?}"))
        .unwrap_or_else(|error| panic!("start Chromium through chromedriver: {error}"));
        Browser {
            client,
            base: self.demo.base.clone(),
            label,
            shots: Arc::clone(&self.shots),
        }
    }
}

/// Where a test's screenshots go, numbered in the order taken.
struct Shots {
    dir: PathBuf,
    next: AtomicUsize,
}

/// One browser profile, on the demo at `base`.
struct Browser {
    client: Client,
    base: String,
    label: &'static str,
    shots: Arc<Shots>,
}

/// Marks the page shown now, so that [`Browser::wait_for_new_page`] sees
/// when another one has replaced it.
const MARK_PAGE: &str = "window.__keycardOldPage = true;";
const NEW_PAGE_LOADED: &str =
    "return window.__keycardOldPage !== true && document.readyState === 'complete';";

/// Answers "OK" to the page's confirmation dialogs (`confirm(…)`), as a
/// person pressing a destructive button means to.
const SAY_YES: &str = "window.confirm = function () { return true; };";

impl Browser {
    /// Saves a screenshot of the page, named after the step.
    async fn shot(&self, step: &str) {
        let n = self.shots.next.fetch_add(1, Ordering::Relaxed);
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|error| panic!("screenshot {step}: {error}"));
        let path = self
            .shots
            .dir
            .join(format!("{n:02}-{}-{step}.png", self.label));
        std::fs::write(&path, png).expect("write a screenshot");
    }

    /// Opens `path` on the demo (or a whole URL) and takes a screenshot.
    async fn open(&self, path: &str, step: &str) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|error| panic!("{}: open {url}: {error}", self.label));
        self.shot(step).await;
    }

    /// Reloads the page and takes a screenshot.
    async fn reload(&self, step: &str) {
        self.mark_page().await;
        self.client.refresh().await.expect("reload");
        self.wait_for_new_page(step).await;
    }

    /// The history's back button, and a screenshot.
    async fn back(&self, step: &str) {
        self.mark_page().await;
        self.client.back().await.expect("back");
        self.wait_for_new_page(step).await;
    }

    async fn mark_page(&self) {
        self.client
            .execute(MARK_PAGE, vec![])
            .await
            .expect("mark the page");
    }

    /// Waits until the page marked by [`Self::mark_page`] is replaced by a
    /// fully loaded one, then takes a screenshot.
    async fn wait_for_new_page(&self, step: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            // While the next page loads, a script may fail: try again.
            if let Ok(serde_json::Value::Bool(true)) =
                self.client.execute(NEW_PAGE_LOADED, vec![]).await
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no new page within {WAIT:?} after {step}; still on {}",
                self.label,
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.shot(step).await;
    }

    /// The address of the page shown.
    async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|url| url.to_string())
            .unwrap_or_else(|error| format!("(unknown: {error})"))
    }

    /// The path of the page shown.
    async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the current URL")
            .path()
            .to_owned()
    }

    /// The text of the page, as a person reads it.
    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .expect("the page's body")
            .text()
            .await
            .expect("the page's text")
    }

    /// Whether the page has an element matching `css`.
    async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find elements")
            .is_empty()
    }

    /// The text of the element matching `css`.
    async fn text_of(&self, css: &str) -> String {
        let element = match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(error) => panic!("{}: no {css} on {}: {error}", self.label, self.url().await),
        };
        element.text().await.expect("an element's text")
    }

    /// Fills the fields `fields` (by name) of the form matching `form`,
    /// ticks its checkboxes named in `ticks`, presses its button, waits for
    /// the next page and takes a screenshot.
    async fn submit(&self, form: &str, fields: &[(&str, &str)], ticks: &[&str], step: &str) {
        for (name, value) in fields {
            let input = self
                .client
                .find(Locator::Css(&format!(r#"{form} [name="{name}"]"#)))
                .await
                .unwrap_or_else(|error| {
                    panic!("{}: no field {name} in {form}: {error}", self.label)
                });
            input.clear().await.expect("clear a field");
            input.send_keys(value).await.expect("type into a field");
        }
        for name in ticks {
            let box_ = self
                .client
                .find(Locator::Css(&format!(r#"{form} input[name="{name}"]"#)))
                .await
                .unwrap_or_else(|error| panic!("{}: no box {name} in {form}: {error}", self.label));
            if !box_.is_selected().await.expect("a checkbox's state") {
                box_.click().await.expect("tick a box");
            }
        }
        let button = match self
            .client
            .find(Locator::Css(&format!("{form} button")))
            .await
        {
            Ok(button) => button,
            Err(error) => panic!(
                "{}: no button in {form} on {}: {error}",
                self.label,
                self.url().await
            ),
        };
        // Destructive buttons ask first (`onsubmit="return confirm(…)"`):
        // the person says yes. The question is kept for the test to read
        // until the next page replaces this one.
        self.client
            .execute(SAY_YES, vec![])
            .await
            .expect("answer the confirmation");
        self.mark_page().await;
        button.click().await.expect("press a button");
        self.wait_for_new_page(step).await;
    }

    /// Presses the button of the form matching `form`, a form with no
    /// fields of its own.
    async fn press(&self, form: &str, step: &str) {
        self.submit(form, &[], &[], step).await;
    }

    /// Signs in on the home page with a password alone (an account with no
    /// second factor), ticking "remember me" if `remember`; asserts the
    /// home page then says who is signed in.
    async fn sign_in(&self, user: &str, password: &str, remember: bool) {
        self.open("/", "home-before-sign-in").await;
        let ticks: &[&str] = if remember { &["remember"] } else { &[] };
        self.submit(
            r#"form[action="/login"]"#,
            &[("name", user), ("password", password)],
            ticks,
            "signed-in",
        )
        .await;
        let path = self.path().await;
        assert_ne!(
            path, CODE_PAGE,
            "{}: {user} has a second factor; this helper signs in with a password alone",
            self.label
        );
        let text = self.text().await;
        assert!(
            text.contains(&format!("signed in as {user} (by password)")),
            "{}: not signed in as {user} on {path}:\n{text}",
            self.label
        );
    }

    /// The visit counter the home page shows.
    async fn visits(&self) -> u64 {
        let text = self.text_of("#visits").await;
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("a visit count: {text:?}"))
    }

    /// Every cookie of the page shown, by name.
    async fn cookies(&self) -> BTreeMap<String, Cookie<'static>> {
        self.client
            .get_all_cookies()
            .await
            .expect("the cookies")
            .into_iter()
            .map(|cookie| (cookie.name().to_owned(), cookie))
            .collect()
    }

    /// The browser's cookies as a `Cookie` request header, for requests
    /// made outside the browser.
    async fn cookie_header(&self) -> String {
        self.cookies()
            .await
            .values()
            .map(|cookie| format!("{}={}", cookie.name(), cookie.value()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The session id the home page shows (of a stored session).
    async fn session_id(&self) -> String {
        self.open("/", "home").await;
        self.client
            .find(Locator::Css("table code"))
            .await
            .expect("a stored session's id on the home page")
            .text()
            .await
            .expect("the id")
    }

    /// How many elements match `css`.
    #[cfg(feature = "passkeys")]
    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("the elements")
            .len()
    }

    /// Clicks the button `css` whose script navigates when it is done (a
    /// passkey ceremony), waits for the next page and takes a screenshot.
    #[cfg(feature = "passkeys")]
    async fn click_and_wait(&self, css: &str, step: &str) {
        let url = self.url().await;
        let button = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{}: no {css} on {url}: {error}", self.label));
        self.mark_page().await;
        button.click().await.expect("press a button");
        self.wait_for_new_page(step).await;
    }

    /// Adds Chromium's virtual authenticator to this browser (WebDriver's
    /// WebAuthn extension): a platform authenticator with discoverable
    /// credentials that verifies its user at once. Its id.
    #[cfg(feature = "passkeys")]
    async fn virtual_authenticator(&self) -> String {
        let options = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserConsenting": true,
            "isUserVerified": true,
        });
        let id = self
            .client
            .issue_cmd(WebAuthn::post("authenticator", options))
            .await
            .expect("a virtual authenticator");
        id.as_str().expect("the authenticator's id").to_owned()
    }

    /// The credentials the virtual authenticator `id` holds.
    #[cfg(feature = "passkeys")]
    async fn authenticator_credentials(&self, id: &str) -> Vec<serde_json::Value> {
        let listed = self
            .client
            .issue_cmd(WebAuthn::get(&format!("authenticator/{id}/credentials")))
            .await
            .expect("the authenticator's credentials");
        listed.as_array().cloned().unwrap_or_default()
    }

    async fn close(self) {
        self.client.close().await.expect("close the browser");
    }
}

/// A command of WebDriver's WebAuthn extension (virtual authenticators),
/// which fantoccini has no method for.
#[cfg(feature = "passkeys")]
#[derive(Debug)]
struct WebAuthn {
    path: String,
    method: http::Method,
    body: Option<serde_json::Value>,
}

#[cfg(feature = "passkeys")]
impl WebAuthn {
    fn post(path: &str, body: serde_json::Value) -> Self {
        Self {
            path: path.to_owned(),
            method: http::Method::POST,
            body: Some(body),
        }
    }

    fn get(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            method: http::Method::GET,
            body: None,
        }
    }
}

#[cfg(feature = "passkeys")]
impl fantoccini::wd::WebDriverCompatibleCommand for WebAuthn {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session.unwrap_or_default();
        base.join(&format!("session/{session}/webauthn/{}", self.path))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(ToString::to_string),
        )
    }
}

/// The demo's names of cookies in `cookies`, sorted.
fn keycard_cookies(cookies: &BTreeMap<String, Cookie<'static>>) -> Vec<String> {
    cookies
        .keys()
        .filter(|name| name.starts_with("keycard"))
        .cloned()
        .collect()
}

/// An HTTP client outside the browser that follows no redirects.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

// ---------------------------------------------------------------------------
// The flows

/// The home page of a new visitor, and its counter across reloads: counted
/// by the form, kept by reloads, and a separate count in another profile.
#[tokio::test]
async fn anonymous_visit_and_counter() {
    let Some(mut world) = World::start("anonymous_visit_and_counter", &[]) else {
        return;
    };
    let browser = world.browser("visitor").await;

    browser.open("/", "home").await;
    let text = browser.text().await;
    assert!(text.contains("keycard demo"), "{text}");
    assert!(text.contains(ANONYMOUS), "{text}");
    assert_eq!(browser.visits().await, 0);
    // An anonymous visitor costs nothing: no stored session, no cookie.
    assert!(text.contains("not stored yet"), "{text}");
    assert_eq!(
        keycard_cookies(&browser.cookies().await),
        Vec::<String>::new()
    );

    browser
        .press(r#"form[action="/visit"]"#, "counted-once")
        .await;
    assert_eq!(browser.path().await, "/");
    assert_eq!(browser.visits().await, 1);
    let cookies = browser.cookies().await;
    assert_eq!(keycard_cookies(&cookies), [ID_COOKIE, TOKEN_COOKIE]);
    assert!(!browser.text().await.contains("not stored yet"));

    browser.reload("reloaded").await;
    assert_eq!(browser.visits().await, 1, "a reload counts nothing");
    browser
        .press(r#"form[action="/visit"]"#, "counted-twice")
        .await;
    assert_eq!(browser.visits().await, 2);
    browser.open("/", "opened-again").await;
    assert_eq!(browser.visits().await, 2);
    browser.reload("reloaded-again").await;
    assert_eq!(browser.visits().await, 2);
    assert!(browser.text().await.contains(ANONYMOUS));
    // The session kept its cookies: the same session all along.
    assert_eq!(
        browser.cookies().await[ID_COOKIE].value(),
        cookies[ID_COOKIE].value()
    );

    // Another profile is another visitor, with a count of its own.
    let other = world.browser("other-visitor").await;
    other.open("/", "home").await;
    assert_eq!(other.visits().await, 0);
    assert_eq!(
        keycard_cookies(&other.cookies().await),
        Vec::<String>::new()
    );
    other.close().await;
    browser.close().await;
}

/// A wrong password: the error page, and nobody signed in (no new session
/// cookies); the right one: "signed in as …", with HttpOnly cookies.
#[tokio::test]
async fn wrong_then_right_password() {
    let Some(mut world) = World::start("wrong_then_right_password", &[]) else {
        return;
    };
    let password = world.password("ada");
    let browser = world.browser("ada").await;

    browser.open("/", "home").await;
    browser
        .submit(
            r#"form[action="/login"]"#,
            &[("name", "ada"), ("password", "not-her-password")],
            &[],
            "wrong-password",
        )
        .await;
    let text = browser.text().await;
    assert!(text.contains("Cannot sign in"), "{text}");
    assert!(text.contains("Wrong user name or password."), "{text}");
    assert!(!text.contains("signed in as"), "{text}");
    // The failed sign-in stored no session: no cookie at all.
    assert_eq!(
        keycard_cookies(&browser.cookies().await),
        Vec::<String>::new()
    );
    browser.open("/", "home-after-wrong-password").await;
    assert!(browser.text().await.contains(ANONYMOUS));
    browser.open("/sessions", "private-page-refused").await;
    assert_eq!(browser.path().await, "/", "the sessions page needs a user");
    assert!(browser.text().await.contains(ANONYMOUS));

    browser.sign_in("ada", &password, false).await;
    assert_eq!(browser.path().await, "/");
    let cookies = browser.cookies().await;
    assert_eq!(
        keycard_cookies(&cookies),
        [ID_COOKIE, TOKEN_COOKIE],
        "no remember-me cookie unless ticked"
    );
    for name in [ID_COOKIE, TOKEN_COOKIE] {
        let cookie = &cookies[name];
        assert_eq!(
            cookie.http_only(),
            Some(true),
            "{name} is HttpOnly: {cookie:?}"
        );
        assert_eq!(cookie.path(), Some("/"), "{cookie:?}");
        assert_eq!(cookie.same_site(), Some(SameSite::Lax), "{cookie:?}");
    }
    // Scripts cannot read them.
    let script_cookies = browser
        .client
        .execute("return document.cookie;", vec![])
        .await
        .expect("document.cookie");
    assert!(
        !script_cookies
            .as_str()
            .unwrap_or_default()
            .contains("keycard"),
        "{script_cookies}"
    );

    browser.open("/sessions", "sessions").await;
    let text = browser.text().await;
    assert!(
        text.contains("Signed in as ada on 1 browser or device"),
        "{text}"
    );
    browser.close().await;
}

/// "Remember me": the remember cookie alone, in a new profile (a browser
/// restarted without its session cookies), signs back in.
#[tokio::test]
async fn remember_me_survives_a_browser_restart() {
    let Some(mut world) = World::start("remember_me_survives_a_browser_restart", &[]) else {
        return;
    };
    let password = world.password("grace");
    let first = world.browser("first-run").await;
    first.sign_in("grace", &password, true).await;
    let cookies = first.cookies().await;
    assert_eq!(
        keycard_cookies(&cookies),
        [ID_COOKIE, REMEMBER_COOKIE, TOKEN_COOKIE]
    );
    let remembered = cookies[REMEMBER_COOKIE].clone();
    assert_eq!(remembered.http_only(), Some(true), "{remembered:?}");
    // A lasting cookie (30 days by default), which outlives the browser.
    let expires = remembered
        .expires_datetime()
        .unwrap_or_else(|| panic!("the remember cookie outlives the browser: {remembered:?}"));
    let lifetime = expires - OffsetDateTime::now_utc();
    assert!(
        lifetime > cookie::time::Duration::days(29) && lifetime <= cookie::time::Duration::days(30),
        "remembered for 30 days: {remembered:?}"
    );
    first.open("/sessions", "sessions").await;
    assert!(first.text().await.contains("(this browser)"));
    first.close().await;

    // The "restarted" browser: nothing but the remember cookie.
    let restarted = world.browser("restarted").await;
    restarted.open("/", "before-the-cookie").await;
    assert!(restarted.text().await.contains(ANONYMOUS));
    // As the first run's browser has it: host, path, flags, expiry.
    restarted
        .client
        .add_cookie(remembered.clone())
        .await
        .expect("add the remember cookie");
    assert_eq!(
        keycard_cookies(&restarted.cookies().await),
        [REMEMBER_COOKIE]
    );

    restarted.open("/sessions", "private-page").await;
    assert_eq!(restarted.path().await, "/sessions");
    let text = restarted.text().await;
    assert!(text.contains("Signed in as grace"), "{text}");
    assert!(text.contains("(this browser)"), "{text}");
    restarted.open("/", "home").await;
    let text = restarted.text().await;
    assert!(text.contains("signed in as grace (by remember)"), "{text}");
    // A fresh session, and a new remember token in the cookie.
    let cookies = restarted.cookies().await;
    assert_eq!(
        keycard_cookies(&cookies),
        [ID_COOKIE, REMEMBER_COOKIE, TOKEN_COOKIE]
    );
    assert_ne!(cookies[REMEMBER_COOKIE].value(), remembered.value());
    assert_eq!(cookies[TOKEN_COOKIE].http_only(), Some(true));
    restarted.close().await;
}

/// Two profiles signed in as one user: A signs B out from "your sessions";
/// B's next page is signed out, A stays signed in.
#[tokio::test]
async fn one_profile_ends_the_other_from_your_sessions() {
    let Some(mut world) = World::start("one_profile_ends_the_other_from_your_sessions", &[]) else {
        return;
    };
    let password = world.password("ada");
    let a = world.browser("a").await;
    let b = world.browser("b").await;
    a.sign_in("ada", &password, false).await;
    b.sign_in("ada", &password, false).await;
    let b_id = b.session_id().await;
    let a_id = a.session_id().await;
    assert_ne!(a_id, b_id);

    a.open("/sessions", "sessions").await;
    let text = a.text().await;
    assert!(
        text.contains("Signed in as ada on 2 browsers or devices"),
        "{text}"
    );
    let end_b = format!(r#"form[action="/sessions/{b_id}/end"]"#);
    assert!(a.has(&end_b).await, "a form to end B's session:\n{text}");
    assert!(
        !a.has(&format!(r#"form[action="/sessions/{a_id}/end"]"#))
            .await,
        "this device is marked, not offered"
    );
    a.press(&end_b, "ended-b").await;
    assert_eq!(a.path().await, "/sessions");
    let text = a.text().await;
    assert!(text.contains("That device is signed out."), "{text}");
    assert!(
        text.contains("Signed in as ada on 1 browser or device"),
        "{text}"
    );

    b.reload("b-reloaded").await;
    let text = b.text().await;
    assert!(text.contains(ANONYMOUS), "B is signed out:\n{text}");
    assert!(!text.contains("signed in as"), "{text}");
    b.open("/sessions", "b-private-page").await;
    assert_eq!(b.path().await, "/", "B's sessions page sends it home");
    assert!(b.text().await.contains(ANONYMOUS));

    a.open("/", "a-home").await;
    assert!(a.text().await.contains("signed in as ada (by password)"));
    a.close().await;
    b.close().await;
}

/// Signing out, then the back button: the page shown holds nothing
/// private (the private page said `no-store`, so it is loaded afresh).
/// Without `no-store` this Chromium restores the page from its
/// back/forward cache, private content and all (`Clear-Site-Data:
/// "cache"` on the sign-out does not stop that): the navigation entry
/// then says `navigate`, not `back_forward`.
#[tokio::test]
async fn sign_out_then_back_shows_no_private_content() {
    let Some(mut world) = World::start("sign_out_then_back_shows_no_private_content", &[]) else {
        return;
    };
    let password = world.password("ada");
    let browser = world.browser("ada").await;
    browser.sign_in("ada", &password, false).await;
    let session_id = browser.session_id().await;
    browser.open("/sessions", "private-page").await;
    let private = browser.text().await;
    assert!(private.contains("Your sessions"), "{private}");
    assert!(private.contains("Signed in as ada"), "{private}");

    // The private page, outside the browser with its cookies: no-store.
    let reply = http()
        .get(format!("{}/sessions", world.demo.base))
        .header("cookie", browser.cookie_header().await)
        .send()
        .await
        .expect("GET /sessions");
    assert_eq!(reply.status(), 200);
    let cache_control = reply
        .headers()
        .get_all("cache-control")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        cache_control
            .split(',')
            .any(|directive| directive.trim().eq_ignore_ascii_case("no-store")),
        "Cache-Control: {cache_control:?}"
    );
    assert!(reply.text().await.expect("body").contains("Your sessions"));

    browser
        .press(r#"form[action="/logout"]"#, "signed-out")
        .await;
    assert_eq!(browser.path().await, "/");
    assert!(browser.text().await.contains(ANONYMOUS));
    assert_eq!(
        keycard_cookies(&browser.cookies().await),
        Vec::<String>::new(),
        "signing out expires the cookies"
    );

    browser.back("back").await;
    // The history entry of the private page was loaded again (no copy of
    // it kept): the server sent the signed-out browser home.
    let navigation = browser
        .client
        .execute(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return [n.type, n.redirectCount];",
            vec![],
        )
        .await
        .expect("the navigation's timing entry");
    assert_eq!(
        navigation,
        json!(["back_forward", 1]),
        "a fresh load, redirected"
    );
    assert_eq!(browser.path().await, "/");
    let text = browser.text().await;
    for private_bit in [
        "Your sessions",
        "Signed in as",
        "signed in as",
        "Sign out",
        "Change your password",
    ] {
        assert!(
            !text.contains(private_bit),
            "after sign-out, back shows {private_bit:?}:\n{text}"
        );
    }
    assert!(text.contains(ANONYMOUS), "{text}");
    if browser.has("table code").await {
        assert_ne!(
            browser.text_of("table code").await,
            session_id,
            "the ended session's id is shown"
        );
    }
    browser.close().await;
}

/// Another site's pages (served from another port) auto-submit forms to
/// the demo's state-changing routes in a signed-in browser: each is
/// refused, and nothing changes. Each route is forged from a cross-site
/// page (`127.0.0.1`) and from a same-site, cross-origin one
/// (`localhost` on another port, which `SameSite` cookies do not stop).
#[tokio::test]
async fn forged_cross_site_posts_change_nothing() {
    let Some(mut world) = World::start("forged_cross_site_posts_change_nothing", &[]) else {
        return;
    };
    let password = world.password("ada");
    let browser = world.browser("victim").await;
    browser.sign_in("ada", &password, false).await;
    browser
        .press(r#"form[action="/visit"]"#, "counted-once")
        .await;
    assert_eq!(browser.visits().await, 1);

    // A second session of ada's (an API client's, by HTTP Basic), for the
    // forms that end sessions to aim at.
    let api = http()
        .get(format!("{}/api/whoami", world.demo.base))
        .basic_auth("ada", Some(&password))
        .send()
        .await
        .expect("GET /api/whoami");
    assert_eq!(api.status(), 200);
    browser.open("/sessions", "sessions-before").await;
    assert!(
        browser
            .text()
            .await
            .contains("Signed in as ada on 2 browsers or devices")
    );
    let other_end = browser
        .client
        .find(Locator::Css(
            r#"form[action^="/sessions/"][action$="/end"]"#,
        ))
        .await
        .expect("a form ending the API session")
        .attr("action")
        .await
        .expect("its action")
        .expect("an action");
    let cookies_before = browser.cookies().await;

    let demo = world.demo.base.clone();
    // Each forged form: its page's name, the demo route it posts to, and
    // its fields (the password one even knows the password: only the
    // forgery defences stand in its way).
    #[cfg_attr(not(feature = "passkeys"), allow(unused_mut))]
    let mut forgeries: Vec<(&str, String, String)> = vec![
        ("logout", "/logout".to_owned(), hidden(&[])),
        ("visit", "/visit".to_owned(), hidden(&[])),
        ("token", "/tokens".to_owned(), hidden(&[("name", "forged")])),
        ("end-others", "/sessions/end-others".to_owned(), hidden(&[])),
        ("end-one", other_end.clone(), hidden(&[])),
        (
            "password",
            "/account/password".to_owned(),
            hidden(&[("current", &password), ("new", "attacker-chose-this")]),
        ),
    ];
    // The passkeys' routes: a plain form, and a JSON one a form can reach
    // only as a "simple" cross-site request.
    #[cfg(feature = "passkeys")]
    forgeries.extend([
        (
            "passkey-remove",
            "/security/passkeys/1/remove".to_owned(),
            hidden(&[]),
        ),
        (
            "passkey-options",
            "/security/passkeys/options".to_owned(),
            hidden(&[]),
        ),
    ]);
    let pages: BTreeMap<String, String> = forgeries
        .iter()
        .map(|(name, action, inputs)| {
            (
                format!("/{name}"),
                format!(
                    "<!doctype html>\n<html><head><title>Win a prize</title></head>\
                     <body onload=\"document.forms[0].submit()\">\
                     <form method=\"post\" action=\"{demo}{action}\">{inputs}</form>\
                     </body></html>\n"
                ),
            )
        })
        .collect();
    let attacker = Attacker::start(pages).await;

    for (name, _, _) in &forgeries {
        for host in ["127.0.0.1", "localhost"] {
            let url = format!("http://{host}:{}/{name}", attacker.port);
            browser
                .client
                .goto(&url)
                .await
                .unwrap_or_else(|error| panic!("open {url}: {error}"));
            // The page posts itself on load: wait for the demo's answer.
            let deadline = Instant::now() + WAIT;
            loop {
                let at_demo = browser.url().await.starts_with(&demo);
                let loaded = matches!(
                    browser
                        .client
                        .execute("return document.readyState === 'complete';", vec![])
                        .await,
                    Ok(serde_json::Value::Bool(true))
                );
                if at_demo && loaded {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the forged {name} form from {host} did not post: still on {}",
                    browser.url().await
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            browser.shot(&format!("forged-{name}-from-{host}")).await;
            let text = browser.text().await;
            assert!(
                text.contains(CROSS_ORIGIN_REFUSED),
                "the forged {name} form from {host} was not refused:\n{text}"
            );
        }
    }
    let served = attacker.served();
    assert_eq!(
        served,
        forgeries.len() * 2,
        "every attacker page was loaded"
    );

    // Nothing changed: the same session, signed in, the counter as it was,
    // no token, both sessions alive, the password unchanged.
    let cookies_after = browser.cookies().await;
    for name in [ID_COOKIE, TOKEN_COOKIE] {
        assert_eq!(
            cookies_after.get(name).map(|c| c.value().to_owned()),
            cookies_before.get(name).map(|c| c.value().to_owned()),
            "{name}"
        );
    }
    browser.open("/", "home-after").await;
    let text = browser.text().await;
    assert!(text.contains("signed in as ada (by password)"), "{text}");
    assert_eq!(browser.visits().await, 1, "no forged visit counted");
    browser.open("/tokens", "tokens-after").await;
    let text = browser.text().await;
    assert!(text.contains("You have no API tokens."), "{text}");
    assert!(!text.contains("forged"), "{text}");
    assert!(!browser.has("#new-token").await);
    browser.open("/sessions", "sessions-after").await;
    let text = browser.text().await;
    assert!(
        text.contains("Signed in as ada on 2 browsers or devices"),
        "{text}"
    );
    assert!(browser.has(&format!(r#"form[action="{other_end}"]"#)).await);
    let api = http()
        .get(format!("{}/api/whoami", world.demo.base))
        .basic_auth("ada", Some(&password))
        .send()
        .await
        .expect("GET /api/whoami");
    assert_eq!(api.status(), 200, "the password is unchanged");
    browser.close().await;
}

/// The API tokens page: a new token's secret is shown once; a reload
/// neither shows it again nor creates a second token; the secret works.
#[tokio::test]
async fn api_token_page_shows_a_new_token_once() {
    let Some(mut world) = World::start("api_token_page_shows_a_new_token_once", &[]) else {
        return;
    };
    let password = world.password("ada");
    let browser = world.browser("ada").await;
    browser.sign_in("ada", &password, false).await;
    browser.open("/tokens", "tokens").await;
    let text = browser.text().await;
    assert!(text.contains("You have no API tokens."), "{text}");

    browser
        .submit(
            r#"form[action="/tokens"]"#,
            &[("name", "ci pipeline")],
            &[],
            "created",
        )
        .await;
    assert_eq!(browser.path().await, "/tokens");
    let text = browser.text().await;
    assert!(text.contains("it is shown this once"), "{text}");
    let secret = browser.text_of("#new-token").await;
    assert!(secret.starts_with("kc_"), "{secret:?}");
    assert_eq!(token_rows(&browser).await, 1);

    browser.reload("reloaded").await;
    let text = browser.text().await;
    assert!(!browser.has("#new-token").await, "{text}");
    assert!(!text.contains(&secret), "the secret is not shown again");
    assert!(!text.contains("shown this once"), "{text}");
    assert_eq!(token_rows(&browser).await, 1, "a reload creates no token");
    assert!(text.contains("ci pipeline"), "{text}");

    browser.open("/tokens", "opened-again").await;
    assert!(!browser.has("#new-token").await);
    assert_eq!(token_rows(&browser).await, 1);

    let whoami = http()
        .get(format!("{}/api/whoami", world.demo.base))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("GET /api/whoami");
    assert_eq!(whoami.status(), 200);
    let body = whoami.text().await.expect("body");
    assert_eq!(body.trim(), "ada bearer api");
    browser.close().await;
}

/// Hidden form fields, for the attacker's pages.
fn hidden(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!(r#"<input type="hidden" name="{name}" value="{value}">"#))
        .collect()
}

/// How many tokens the tokens page lists (one revoke form each).
async fn token_rows(browser: &Browser) -> usize {
    browser
        .client
        .find_all(Locator::Css(
            r#"form[action^="/tokens/"][action$="/revoke"]"#,
        ))
        .await
        .expect("the tokens' forms")
        .len()
}

/// The seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Two-step sign-in, as a person sets it up and uses it: the page shows
/// the secret and its `otpauth://` URI (read here like an authenticator
/// app would), the app's code turns it on and the recovery codes show
/// once; then the password alone leads to the code page, a wrong code
/// shows an error there, and the app's code signs in. Turning it off asks
/// first: "Cancel" changes nothing, "OK" turns it off.
#[tokio::test]
async fn two_step_sign_in_in_the_browser() {
    let Some(mut world) = World::start("two_step_sign_in_in_the_browser", &[]) else {
        return;
    };
    let password = world.password("ada");
    let browser = world.browser("ada").await;
    browser.sign_in("ada", &password, false).await;

    // The header's menu leads there.
    browser
        .client
        .find(Locator::Css(&format!(r#"header a[href="{TOTP_PAGE}"]"#)))
        .await
        .expect("the header's two-step link")
        .click()
        .await
        .expect("follow the link");
    browser.wait_for_new_page("two-step-page").await;
    // An older sign-in confirms the password first (a fresh one does not).
    if browser.path().await == CONFIRM_PAGE {
        browser
            .submit(
                &format!(r#"form[action="{CONFIRM_PAGE}"]"#),
                &[("password", &password)],
                &[],
                "password-confirmed",
            )
            .await;
    }
    assert_eq!(browser.path().await, TOTP_PAGE);
    let text = browser.text().await;
    assert!(
        text.contains("Two-step sign-in is off"),
        "{}: {text}",
        browser.label
    );

    browser
        .press(r#"form[action="/security/totp/setup"]"#, "setting-up")
        .await;
    assert_eq!(browser.path().await, TOTP_PAGE);
    assert!(browser.text().await.contains("being set up"));
    // What an authenticator app reads: the URI (from the QR code or the
    // link), which must agree with the secret shown as text.
    let uri: String = browser
        .text_of("#totp-uri")
        .await
        .split_whitespace()
        .collect();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let app = totp_rs::Totp::from_url(&uri).unwrap_or_else(|error| panic!("{uri}: {error:?}"));
    let typed: String = browser
        .text_of("#totp-secret")
        .await
        .split_whitespace()
        .collect();
    let typed = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(TOTP_STEP)
        .with_secret(totp_rs::Secret::try_from_base32(&typed).expect("a base32 secret"))
        .build()
        .expect("a TOTP of the typed secret");
    let now = unix_now();
    assert_eq!(
        typed.generate(now).to_string(),
        app.generate(now).to_string(),
        "the secret as text and the URI agree"
    );

    // The app's code of now turns it on.
    browser
        .submit(
            r#"form[action="/security/totp/confirm"]"#,
            &[("code", &app.generate(unix_now()).to_string())],
            &[],
            "two-step-on",
        )
        .await;
    assert_eq!(browser.path().await, TOTP_PAGE);
    let text = browser.text().await;
    assert!(text.contains("Two-step sign-in is on"), "{text}");
    assert!(text.contains("shown this once"), "{text}");
    let codes = browser
        .client
        .find_all(Locator::Css("#recovery-codes li"))
        .await
        .expect("the recovery codes");
    assert_eq!(codes.len(), 10, "{text}");
    let first_code = codes[0].text().await.expect("a recovery code");
    assert!(!first_code.is_empty());
    assert!(!browser.has("#totp-secret").await, "the secret is gone");

    // Shown once: a reload does not show them again.
    browser.reload("reloaded").await;
    let text = browser.text().await;
    assert!(!browser.has("#recovery-codes").await, "{text}");
    assert!(!text.contains(&first_code), "{text}");
    assert!(text.contains("10 recovery codes left."), "{text}");

    // Signing out from the header.
    browser
        .press(r#"header form[action="/logout"]"#, "signed-out")
        .await;
    assert_eq!(browser.path().await, "/");
    assert!(browser.text().await.contains(ANONYMOUS));

    // The password alone: the code page, nobody signed in yet.
    browser
        .submit(
            r#"form[action="/login"]"#,
            &[("name", "ada"), ("password", &password)],
            &[],
            "password-accepted",
        )
        .await;
    assert_eq!(browser.path().await, CODE_PAGE);
    let text = browser.text().await;
    assert!(text.contains("Enter your code"), "{text}");
    assert!(!text.contains("signed in as"), "{text}");

    // A wrong code: the form again, with the error.
    let now = unix_now();
    let near: Vec<String> = (0..5)
        .map(|i| {
            app.generate(now + i * TOTP_STEP - 2 * TOTP_STEP)
                .to_string()
        })
        .collect();
    let wrong = (0..)
        .map(|n: u32| format!("{:06}", (n * 137_911) % 1_000_000))
        .find(|code| !near.contains(code))
        .expect("a wrong code");
    browser
        .submit(
            &format!(r#"form[action="{CODE_PAGE}"]"#),
            &[("code", &wrong)],
            &[],
            "wrong-code",
        )
        .await;
    assert_eq!(browser.path().await, CODE_PAGE);
    let text = browser.text().await;
    assert!(text.contains("Wrong code, or one used already."), "{text}");
    assert!(!text.contains("signed in as"), "{text}");

    // The app's code signs in: the next step's, which the server accepts
    // (one step of clock skew) and which no earlier use burnt.
    let next = app.generate(unix_now() + TOTP_STEP).to_string();
    browser
        .submit(
            &format!(r#"form[action="{CODE_PAGE}"]"#),
            &[("code", &next)],
            &[],
            "signed-in-with-code",
        )
        .await;
    assert_eq!(browser.path().await, "/");
    let text = browser.text().await;
    assert!(text.contains("signed in as ada (by totp)"), "{text}");
    browser.open("/sessions", "sessions").await;
    let text = browser.text().await;
    assert!(text.contains("Signed in as ada on"), "{text}");
    assert!(text.contains("totp"), "{text}");

    // Turning it off asks first: "Cancel" leaves the page and two-step
    // sign-in as they were, "OK" turns it off.
    browser.open(TOTP_PAGE, "two-step-page-again").await;
    let form = r#"form[action="/security/totp/remove"]"#;
    browser
        .client
        .find(Locator::Css(&format!(r#"{form} [name="password"]"#)))
        .await
        .expect("the password field")
        .send_keys(&password)
        .await
        .expect("type the password");
    browser
        .client
        .execute(
            "window.confirm = function (question) { window.__keycardAsked = question; \
             return false; };",
            vec![],
        )
        .await
        .expect("answer Cancel");
    browser.mark_page().await;
    browser
        .client
        .find(Locator::Css(&format!("{form} button")))
        .await
        .expect("the button")
        .click()
        .await
        .expect("press the button");
    let asked = browser
        .client
        .execute("return window.__keycardAsked || null;", vec![])
        .await
        .expect("the question asked");
    let asked = asked.as_str().unwrap_or_default().to_owned();
    assert!(asked.contains("Turn two-step sign-in off?"), "{asked:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stayed = browser
        .client
        .execute("return window.__keycardOldPage === true;", vec![])
        .await
        .expect("the same page");
    assert_eq!(
        stayed,
        serde_json::Value::Bool(true),
        "Cancel posts nothing"
    );
    browser.shot("turn-off-cancelled").await;
    browser.reload("still-on").await;
    assert!(browser.text().await.contains("Two-step sign-in is on"));
    browser
        .submit(form, &[("password", &password)], &[], "turned-off")
        .await;
    assert_eq!(browser.path().await, TOTP_PAGE);
    let text = browser.text().await;
    assert!(text.contains("Two-step sign-in is off"), "{text}");
    browser.close().await;
}

/// The passkeys page as a person uses it, with Chromium's virtual
/// authenticator (a platform authenticator that keeps discoverable
/// credentials and verifies the user): add a passkey; sign out; "Sign in
/// with a passkey" signs in with no user name; the password then asks for
/// the passkey as its second step; removing it asks first, and then the
/// password alone signs in again. The rows are read from the demo's
/// database as they change.
#[cfg(feature = "passkeys")]
#[tokio::test]
async fn passkeys_in_the_browser() {
    use keycard::store::UserStore as _;

    let Some(mut world) = World::start("passkeys_in_the_browser", &[]) else {
        return;
    };
    let password = world.password("ada");
    let store = keycard::SqliteStore::connect(&format!(
        "sqlite://{}",
        world
            .dir
            .as_ref()
            .expect("the test's directory")
            .path()
            .join("demo.db")
            .display()
    ))
    .await
    .expect("the demo's database");
    let browser = world.browser("ada").await;
    let authenticator = browser.virtual_authenticator().await;
    browser.sign_in("ada", &password, false).await;
    browser.open(PASSKEYS_PAGE, "passkeys-page").await;
    assert!(
        browser.has("#no-passkeys").await,
        "{}",
        browser.text().await
    );

    // Add one, named.
    browser
        .client
        .find(Locator::Css("#passkey-label"))
        .await
        .expect("the name field")
        .send_keys("my laptop")
        .await
        .expect("type a name");
    browser
        .click_and_wait("#passkey-add", "passkey-added")
        .await;
    assert_eq!(browser.path().await, PASSKEYS_PAGE);
    let text = browser.text().await;
    assert!(text.contains("Passkey “my laptop” added"), "{text}");
    assert!(
        text.contains("shown this once"),
        "the first second factor brings codes: {text}"
    );
    assert_eq!(browser.count("tr.passkey-row").await, 1, "{text}");
    let rows = store.list_passkeys("ada").await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].label.as_str(), rows[0].last_used_at),
        ("my laptop", None)
    );
    let stored = browser.authenticator_credentials(&authenticator).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        stored[0]["isResidentCredential"],
        serde_json::Value::Bool(true),
        "{stored:?}"
    );

    // Signed out, the passkey alone signs in: no user name typed.
    browser
        .press(r#"header form[action="/logout"]"#, "signed-out")
        .await;
    assert!(browser.text().await.contains(ANONYMOUS));
    browser
        .click_and_wait("#passkey-sign-in", "signed-in-with-passkey")
        .await;
    assert_eq!(browser.path().await, "/");
    let text = browser.text().await;
    assert!(text.contains("signed in as ada (by passkey)"), "{text}");
    let used = store.list_passkeys("ada").await.expect("rows");
    assert!(used[0].last_used_at.is_some(), "{used:?}");

    // The password now asks for the passkey as its second step.
    browser
        .press(r#"header form[action="/logout"]"#, "signed-out-again")
        .await;
    browser
        .submit(
            r#"form[action="/login"]"#,
            &[("name", "ada"), ("password", &password)],
            &[],
            "password-accepted",
        )
        .await;
    assert_eq!(browser.path().await, CODE_PAGE);
    let text = browser.text().await;
    assert!(text.contains("confirm with your passkey"), "{text}");
    assert!(!text.contains("signed in as"), "{text}");
    browser
        .click_and_wait("#passkey-second-factor", "second-step-with-passkey")
        .await;
    assert_eq!(browser.path().await, "/");
    let text = browser.text().await;
    assert!(
        text.contains("signed in as ada (by password-passkey)"),
        "{text}"
    );

    // Removing it asks first; then it is gone, and the password alone
    // signs in.
    browser.open(PASSKEYS_PAGE, "passkeys-page-again").await;
    browser
        .submit(r#"tr.passkey-row form"#, &[], &[], "passkey-removed")
        .await;
    assert_eq!(browser.path().await, PASSKEYS_PAGE);
    assert!(
        browser.has("#no-passkeys").await,
        "{}",
        browser.text().await
    );
    assert!(store.list_passkeys("ada").await.expect("rows").is_empty());
    browser
        .press(r#"header form[action="/logout"]"#, "signed-out-at-last")
        .await;
    browser.sign_in("ada", &password, false).await;
    browser.close().await;
}

// ---------------------------------------------------------------------------
// The attacker's site

/// A tiny web server on another port of 127.0.0.1: each path of `pages`
/// answers its HTML, anything else 404.
struct Attacker {
    port: u16,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Attacker {
    async fn start(pages: BTreeMap<String, String>) -> Attacker {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the attacker's site");
        let port = listener.local_addr().expect("its address").port();
        let pages = Arc::new(pages);
        let served = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&served);
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let pages = Arc::clone(&pages);
            let counter = Arc::clone(&counter);
            async move {
                match pages.get(uri.path()) {
                    Some(html) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        axum::response::Html(html.clone()).into_response()
                    }
                    None => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Attacker { port, served, task }
    }

    /// How many pages it served.
    fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }
}
