//! Black-box tests of `examples/demo.rs`, `examples/api_client.rs` and
//! `examples/notes.rs`: the real binaries, over real HTTP, on a temporary
//! SQLite file. The demo is
//! started on a free port (`--addr 127.0.0.1:0`, which it reports); the demo
//! users' passwords are read from what it prints on first start.
//!
//! Examples are built by a full `cargo test`; for this test alone, run
//! `cargo build --all-features --examples` first.

#[path = "common/example_binary.rs"]
mod example_binary;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the demo may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running demo, killed when dropped.
struct Demo {
    child: Child,
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
    /// Starts the demo on `db` and waits for its address.
    fn start(db: &Path) -> Demo {
        Self::start_example("demo", "keycard demo: listening on ", db)
    }

    /// Starts the example `name` on `db` and waits for the line that
    /// begins with `banner` and ends with its address.
    fn start_example(name: &str, banner: &str, db: &Path) -> Demo {
        let mut child = Command::new(example_binary::example_binary(name))
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(db)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("stdout");
        // A thread reads every line (so the pipe never fills up) and hands
        // them over; the test waits for the banner with a timeout.
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    // Nobody listens any more: keep draining.
                    continue;
                }
            }
        });
        let mut demo = Demo {
            child,
            base: String::new(),
            lines: Vec::new(),
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

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.send(reqwest::Method::POST, path, Some(form), &[])
            .await
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

/// The secret a `POST /tokens` page shows.
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

    // Wrong password, unknown user: the same 401 page, no session.
    let wrong = browser
        .post(
            "/login",
            &[("name", "ada"), ("password", "not the password")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong user name or password."));
    let unknown = browser
        .post("/login", &[("name", "nobody"), ("password", "whatever")])
        .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.body, wrong.body, "one answer whatever the reason");
    assert!(browser.jar.is_empty(), "no session for failed sign-ins");
    let empty = browser
        .post("/login", &[("name", "ada"), ("password", "")])
        .await;
    assert_eq!(empty.status, 400);

    // The right password signs in, and goes where it was asked to.
    let reply = browser
        .post(
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
        .post(
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

    // An API token, created through the page: the secret is shown once.
    let reply = browser.post("/tokens", &[("name", "ci <pipeline>")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), "no-store");
    let secret = new_token_secret(&reply.body);
    assert!(reply.body.contains("ci &lt;pipeline&gt;"), "escaped");
    assert!(!reply.body.contains("<pipeline>"), "escaped");
    let page = browser.get("/tokens").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ci &lt;pipeline&gt;"));
    assert!(!page.body.contains(&secret), "the secret is shown once");
    assert!(!page.body.contains("new-token"));

    // Bad forms and ids.
    assert_eq!(browser.post("/tokens", &[("name", " ")]).await.status, 400);
    assert_eq!(browser.post("/tokens/abc/revoke", &[]).await.status, 400);
    assert_eq!(browser.post("/tokens/0/revoke", &[]).await.status, 400);
    assert_eq!(
        browser
            .post("/tokens/99999999999999999999/revoke", &[])
            .await
            .status,
        400
    );

    // A second token, revoked: it signs nobody in any more.
    let reply = browser.post("/tokens", &[("name", "temporary")]).await;
    let temporary = new_token_secret(&reply.body);
    let ids = revoke_ids(&browser.get("/tokens").await.body);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let reply = browser
        .post(&format!("/tokens/{}/revoke", ids[1]), &[])
        .await;
    assert_eq!((reply.status, reply.header("location")), (303, "/tokens"));
    let page = browser.get("/tokens").await;
    assert!(page.body.contains("Token revoked"), "{}", page.body);
    assert!(!page.body.contains("temporary"));
    assert_eq!(revoke_ids(&page.body), ids[..1]);
    let mut api = Browser::new(&demo);
    let bearer = format!("Bearer {temporary}");
    let reply = api
        .get_with("/api/whoami", &[("authorization", &bearer)])
        .await;
    assert_eq!(reply.status, 401, "a revoked token");

    // The live token signs in as its owner, as an API client.
    let bearer = format!("Bearer {secret}");
    let reply = api
        .get_with("/api/whoami", &[("authorization", &bearer)])
        .await;
    assert_eq!((reply.status, reply.body.trim()), (200, "ada bearer api"));
    // A token session may not mint tokens.
    let reply = api.post("/tokens", &[("name", "more")]).await;
    assert_eq!(reply.status, 403);

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
