//! Black-box tests of `examples/bench_server.rs`: the real binary, over
//! real HTTP, on every store whose URL is set (SQLite always).

#[path = "common/example_binary.rs"]
mod example_binary;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `bench_server` example binary.
fn binary() -> PathBuf {
    example_binary::example_binary("bench_server")
}

fn start(store: Option<String>, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store.unwrap_or_else(|| format!("sqlite:{}", dir.path().join("b.db").display()));
    let mut child = Command::new(binary())
        .args([
            "--addr",
            "127.0.0.1:0",
            "--store",
            &store,
            "--insecure-cookies",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start bench_server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("banner");
    let base = line
        .trim()
        .strip_prefix("bench_server listening on ")
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
        .to_owned();
    Server {
        child,
        base,
        _dir: dir,
    }
}

/// A tiny browser: remembers the cookies the server sets.
#[derive(Clone)]
struct Browser {
    http: reqwest::Client,
    base: String,
    jar: HashMap<String, String>,
}

impl Browser {
    fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.base.clone(),
            jar: HashMap::new(),
        }
    }

    async fn send(&mut self, method: reqwest::Method, path: &str) -> (u16, String, usize) {
        self.send_with(method, path, &[]).await.0
    }

    /// Sends with extra headers; also returns the `Cache-Control` answered.
    async fn send_with(
        &mut self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> ((u16, String, usize), Option<String>) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if !self.jar.is_empty() {
            let cookies: Vec<_> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", cookies.join("; "));
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let cache_control = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut set = 0;
        for value in response.headers().get_all("set-cookie") {
            set += 1;
            let c =
                cookie::Cookie::parse(value.to_str().expect("ascii").to_owned()).expect("cookie");
            if c.max_age() == Some(cookie::time::Duration::ZERO) {
                self.jar.remove(c.name());
            } else {
                self.jar.insert(c.name().to_owned(), c.value().to_owned());
            }
        }
        (
            (status, response.text().await.expect("body"), set),
            cache_control,
        )
    }

    async fn get(&mut self, path: &str) -> (u16, String, usize) {
        self.send(reqwest::Method::GET, path).await
    }

    async fn post(&mut self, path: &str) -> (u16, String, usize) {
        self.send(reqwest::Method::POST, path).await
    }
}

async fn contract(server: Server) {
    let mut browser = Browser::new(&server);
    assert_eq!(browser.get("/anon").await, (200, "ok".into(), 0));
    assert_eq!(browser.get("/read").await, (200, "0".into(), 0));
    assert_eq!(browser.get("/whoami").await.0, 401);
    assert_eq!(browser.post("/incr").await, (200, "1".into(), 2));
    assert_eq!(browser.post("/incr").await, (200, "2".into(), 0));
    assert_eq!(browser.get("/read").await, (200, "2".into(), 0));
    assert_eq!(browser.get("/anon").await, (200, "ok".into(), 0));
    let before = browser.jar.clone();
    assert_eq!(browser.post("/login/bob").await.2, 2, "rotated cookies");
    assert_ne!(browser.jar, before);
    assert_eq!(browser.get("/whoami").await, (200, "bob".into(), 0));
    assert_eq!(browser.get("/read").await.1, "2");

    // Forged by another origin's page (the server's own origin is its
    // `Host`, 127.0.0.1:<port>): refused before any session work.
    let port = server.base.rsplit(':').next().expect("port").to_owned();
    let other_port = format!(
        "http://127.0.0.1:{}",
        port.parse::<u16>().expect("port") ^ 1
    );
    let own = format!("http://127.0.0.1:{port}");
    let jar = browser.jar.clone();
    for headers in [
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", other_port.as_str()),
        ],
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.example"),
        ],
        vec![("origin", other_port.as_str())],
        vec![("origin", "null")],
    ] {
        for path in ["/incr", "/login/mallory", "/logout"] {
            let ((status, body, set), cache) = browser
                .send_with(reqwest::Method::POST, path, &headers)
                .await;
            assert_eq!(status, 403, "{path} {headers:?}: {body}");
            assert_eq!(set, 0, "{path} {headers:?}: no cookie");
            assert_eq!(cache.as_deref(), Some("no-store"));
        }
    }
    assert_eq!(browser.jar, jar);
    assert_eq!(browser.get("/whoami").await.1, "bob", "still signed in");
    // Identities no store can hold the same way: refused as invalid input.
    for user in ["%00", "a%00b", "line%0Abreak"] {
        let (status, _, set) = browser.post(&format!("/login/{user}")).await;
        assert_eq!((status, set), (400, 0), "{user}");
    }
    assert_eq!(browser.get("/whoami").await.1, "bob");
    assert_eq!(browser.get("/read").await.1, "2", "nothing counted");
    let ((status, body, _), _) = browser
        .send_with(
            reqwest::Method::POST,
            "/incr",
            &[("sec-fetch-site", "same-origin"), ("origin", own.as_str())],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "3"), "its own pages may");
    let ((_, who, _), cache) = browser
        .send_with(reqwest::Method::GET, "/whoami", &[])
        .await;
    assert_eq!(who, "bob");
    assert_eq!(cache.as_deref(), Some("no-store"), "a signed-in page");
    let captured = browser.clone();
    assert_eq!(browser.post("/logout").await.2, 2, "expired cookies");
    assert_eq!(browser.get("/whoami").await.0, 401);
    let mut replay = captured;
    assert_eq!(replay.get("/whoami").await.0, 401, "old cookies are dead");

    // The race scenario: 8 clients x 25 increments on one session.
    let mut racer = Browser::new(&server);
    racer.post("/incr").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut racer = racer.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    assert_eq!(racer.post("/incr").await.0, 200);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("racer");
    }
    assert_eq!(racer.get("/read").await.1, "201", "no increment lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_server_contract_on_sqlite() {
    contract(start(None, &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn bench_server_contract_on_postgres() {
    if !cfg!(feature = "postgres") {
        return;
    }
    if let Some(url) = common_url("KEYCARD_TEST_POSTGRES_URL") {
        contract(start(Some(url), &[])).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(keycard_no_mysql_url, ignore = "KEYCARD_TEST_MYSQL_URL is not set")]
async fn bench_server_contract_on_mysql() {
    if !cfg!(feature = "mysql") {
        return;
    }
    if let Some(url) = common_url("KEYCARD_TEST_MYSQL_URL") {
        contract(start(Some(url), &[])).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_server_contract_on_sqlite_with_cache() {
    contract(start(None, &["--cache"])).await;
}

/// One connection: no request may need a second one while it holds the
/// first, or it would wait for itself until its acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_server_contract_on_sqlite_with_a_pool_of_one() {
    contract(start(None, &["--sqlite-pool", "1"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn bench_server_contract_on_postgres_with_cache() {
    if !cfg!(feature = "postgres") {
        return;
    }
    if let Some(url) = common_url("KEYCARD_TEST_POSTGRES_URL") {
        contract(start(Some(url), &["--cache"])).await;
    }
}

#[test]
fn bench_server_refuses_bad_flags() {
    for args in [
        &["--bogus"][..],
        &["--addr", "nowhere"],
        &["--idle-timeout", "-5"],
        &["--idle-timeout"],
        &["--store", "redis://x"],
        &["--purge-interval", "-1"],
        &["--purge-interval", "0"],
        &["--purge-interval"],
        &["--sqlite-pool", "0"],
        &["--sqlite-pool", "many"],
        &["--sqlite-pool"],
    ] {
        let output = Command::new(binary()).args(args).output().expect("run");
        assert!(!output.status.success(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?} explains itself");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

fn common_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("{var} is not set under CI"),
        _ => None,
    }
}
