//! Black-box tests of `examples/admin.rs`: the real binary against a
//! temporary SQLite file, with sessions made by the library itself.

#[path = "common/example_binary.rs"]
mod example_binary;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use chrono::{TimeDelta, Utc};
use http::{Request, header};
use http_body_util::BodyExt as _;
use keycard::store::{SessionData, SessionFields, SessionStore};
use keycard::token::SessionToken;
use keycard::{Login, Session, SessionId, SessionLayer, SqliteStore};
use tower::ServiceExt as _;

/// The `admin` example binary.
fn binary() -> PathBuf {
    example_binary::example_binary("admin")
}

/// A temporary database, and the app and store that seed it.
struct Fixture {
    dir: tempfile::TempDir,
    url: String,
    store: SqliteStore,
    app: Router,
    layer: SessionLayer,
}

/// A session made through the layer: its id, and the secret token of its
/// cookie.
struct Seeded {
    id: SessionId,
    token: String,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("sessions.db").display());
        let store = SqliteStore::connect(&url).await.expect("open store");
        store.migrate().await.expect("migrate");
        let layer = SessionLayer::new(store.clone());
        let app = Router::new()
            .route(
                "/login/{user}",
                post(
                    |session: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                        session
                            .login_with(Login::new(user).method("password"))
                            .await?;
                        Ok::<_, keycard::Error>("ok")
                    },
                ),
            )
            .route(
                "/whoami",
                get(|session: Session| async move {
                    Ok::<_, keycard::Error>(
                        session
                            .user_id()
                            .await?
                            .unwrap_or_else(|| "anonymous".into()),
                    )
                }),
            )
            .layer(layer.clone());
        Self {
            dir,
            url,
            store,
            app,
            layer,
        }
    }

    /// Signs `user` in from `ip`, as a browser would, and returns the new
    /// session's id and token (from the cookies).
    async fn sign_in(&self, user: &str, ip: &str) -> Seeded {
        let peer = SocketAddr::new(ip.parse().expect("ip"), 40000);
        let request = Request::post(format!("/login/{user}"))
            .extension(ConnectInfo(peer))
            .header(
                header::USER_AGENT,
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            )
            .body(Body::empty())
            .expect("request");
        let response = self.app.clone().oneshot(request).await.expect("response");
        assert_eq!(response.status(), 200, "sign-in of {user}");
        let config = self.layer.config();
        let cookie = |name: &str| -> String {
            response
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .filter_map(|value| value.split(';').next())
                .filter_map(|pair| pair.split_once('='))
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_owned())
                .unwrap_or_else(|| panic!("no {name} cookie"))
        };
        let id = cookie(config.id_cookie_name()).parse().expect("id cookie");
        let token = cookie(config.token_cookie_name());
        assert_eq!(token.len(), 43, "a token is 43 characters");
        Seeded { id, token }
    }

    /// Who the layer says the session is now.
    async fn whoami(&self, session: &Seeded) -> String {
        let config = self.layer.config();
        let request = Request::get("/whoami")
            .header(
                header::COOKIE,
                format!(
                    "{}={}; {}={}",
                    config.id_cookie_name(),
                    session.id,
                    config.token_cookie_name(),
                    session.token
                ),
            )
            .body(Body::empty())
            .expect("request");
        let response = self.app.clone().oneshot(request).await.expect("response");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.expect("body");
        String::from_utf8(body.to_bytes().to_vec()).expect("utf-8")
    }

    /// A session of `user` whose last use was two hours ago: expired by the
    /// 30-minute idle timeout, but still in the table until purged.
    async fn insert_expired(&self, user: &str) -> (SessionId, SessionToken) {
        let token = SessionToken::generate().expect("randomness");
        let then = Utc::now() - TimeDelta::hours(2);
        let id = self
            .store
            .insert(&{
                let mut fields = SessionFields::new(token.hash(), then);
                fields.user_id = Some(user.to_owned());
                fields.ip_address = Some("192.0.2.99".to_owned());
                fields.auth_method = Some("password".to_owned());
                fields.authenticated_at = Some(then);
                fields.data = SessionData::new();
                fields
            })
            .await
            .expect("insert");
        (id, token)
    }

    /// Runs the admin binary on this database.
    fn admin(&self, args: &[&str]) -> Output {
        admin_in(self.dir.path(), &[&["--store", &self.url], args].concat())
    }
}

/// Runs the admin binary in `dir` with exactly `args`.
fn admin_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run admin")
}

/// The stdout of a successful run.
fn ok(output: Output) -> String {
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "admin failed ({:?}): {stderr}",
        output.status
    );
    assert!(stderr.is_empty(), "unexpected stderr: {stderr}");
    stdout
}

/// One line of `list`, split into its seven fields.
struct Line {
    id: SessionId,
    fields: Vec<String>,
}

fn list(fixture: &Fixture, user: &str) -> Vec<Line> {
    ok(fixture.admin(&["list", user]))
        .lines()
        .map(|line| {
            let fields: Vec<String> = line.split('\t').map(str::to_owned).collect();
            assert_eq!(fields.len(), 7, "seven tab-separated fields: {line:?}");
            Line {
                id: fields[0].parse().expect("id field"),
                fields,
            }
        })
        .collect()
}

fn ids(lines: &[Line]) -> Vec<SessionId> {
    let mut ids: Vec<_> = lines.iter().map(|l| l.id).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<SessionId>) -> Vec<SessionId> {
    ids.sort();
    ids
}

#[tokio::test]
async fn count_list_end_and_purge() {
    let fx = Fixture::new().await;
    let a1 = fx.sign_in("alice", "203.0.113.7").await;
    let a2 = fx.sign_in("alice", "198.51.100.2").await;
    let a3 = fx.sign_in("alice", "2001:db8::1").await;
    let b1 = fx.sign_in("bob", "203.0.113.8").await;
    let (expired, expired_token) = fx.insert_expired("alice").await;

    // count: the four live sessions; the expired one was last used 2 hours
    // ago, outside the default window (the idle timeout) but inside 3 hours.
    assert_eq!(ok(fx.admin(&["count"])), "4\n");
    assert_eq!(ok(fx.admin(&["count", "--since", "10800"])), "5\n");
    assert_eq!(ok(fx.admin(&["count", "--since", "60"])), "4\n");

    // list: alice's active sessions only, with what the layer recorded, and
    // nothing secret.
    let raw = ok(fx.admin(&["list", "alice"]));
    for (what, secret) in [
        ("a1 token", a1.token.as_str()),
        ("a2 token", a2.token.as_str()),
        ("a3 token", a3.token.as_str()),
        ("expired token", expired_token.expose().as_str()),
    ] {
        assert!(!raw.contains(secret), "{what} leaked into: {raw}");
    }
    let hash_hex: String = expired_token
        .hash()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!raw.contains(&hash_hex[..16]), "hash leaked into: {raw}");
    assert!(
        !raw.contains(&expired_token.hash().fingerprint()),
        "hash fingerprint leaked into: {raw}"
    );

    let lines = list(&fx, "alice");
    assert_eq!(ids(&lines), sorted(vec![a1.id, a2.id, a3.id]));
    assert!(
        !lines.iter().any(|l| l.id == expired),
        "expired is not listed"
    );
    // Most recently used first: a3 signed in last.
    assert_eq!(lines[0].id, a3.id);
    let now = Utc::now();
    for line in &lines {
        for at in [&line.fields[1], &line.fields[2]] {
            let at = chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339 time");
            assert!(
                (now - at.with_timezone(&Utc)).abs() < TimeDelta::minutes(5),
                "recent time: {at}"
            );
        }
        assert_eq!(line.fields[4], "browser");
        assert_eq!(line.fields[5], "password");
        assert_eq!(
            line.fields[6], "Firefox\\u{20}on\\u{20}Linux",
            "the device, escaped"
        );
    }
    let ip_of = |id: SessionId| {
        lines
            .iter()
            .find(|l| l.id == id)
            .map(|l| l.fields[3].clone())
            .expect("listed")
    };
    assert_eq!(ip_of(a1.id), "203.0.113.7");
    assert_eq!(ip_of(a2.id), "198.51.100.2");
    assert_eq!(ip_of(a3.id), "2001:db8::1");
    assert_eq!(ids(&list(&fx, "bob")), vec![b1.id]);
    assert!(list(&fx, "nobody").is_empty());

    // end USER ID: never another user's session.
    let b1_id = b1.id.to_string();
    assert_eq!(ok(fx.admin(&["end", "alice", &b1_id])), "ended 0\n");
    assert_eq!(ids(&list(&fx, "bob")), vec![b1.id]);
    assert_eq!(fx.whoami(&b1).await, "bob");
    // Nor an expired one, which only purge removes.
    let expired_id = expired.to_string();
    assert_eq!(ok(fx.admin(&["end", "alice", &expired_id])), "ended 0\n");

    // One of alice's: that one ends, at once, and only that one, though the
    // server's store had it cached.
    for _ in 0..200 {
        assert_eq!(fx.whoami(&a1).await, "alice");
        if fx.store.is_cached(a1.id) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(fx.store.is_cached(a1.id), "the server has a1 cached");
    assert_eq!(fx.whoami(&a1).await, "alice");
    let a1_id = a1.id.to_string();
    assert_eq!(ok(fx.admin(&["end", "alice", &a1_id])), "ended 1\n");
    assert_eq!(fx.whoami(&a1).await, "anonymous");
    assert_eq!(fx.whoami(&a2).await, "alice");
    assert_eq!(ids(&list(&fx, "alice")), sorted(vec![a2.id, a3.id]));
    assert_eq!(ok(fx.admin(&["end", "alice", &a1_id])), "ended 0\n");

    // purge: the expired row, nothing else.
    assert_eq!(ok(fx.admin(&["purge"])), "purged 1\n");
    assert!(fx.store.load(expired).await.expect("load").is_none());
    assert!(fx.store.load(a2.id).await.expect("load").is_some());
    assert_eq!(ok(fx.admin(&["purge"])), "purged 0\n");
    assert_eq!(ok(fx.admin(&["count", "--since", "10800"])), "3\n");

    // end USER --all: the rest of alice's, bob's untouched.
    assert_eq!(ok(fx.admin(&["end", "alice", "--all"])), "ended 2\n");
    assert!(list(&fx, "alice").is_empty());
    assert_eq!(fx.whoami(&a2).await, "anonymous");
    assert_eq!(fx.whoami(&a3).await, "anonymous");
    assert_eq!(fx.whoami(&b1).await, "bob");
    assert_eq!(ok(fx.admin(&["end", "alice", "--all"])), "ended 0\n");
    assert_eq!(ok(fx.admin(&["count"])), "1\n");

    // end-everyone: bob's too.
    assert_eq!(ok(fx.admin(&["end-everyone"])), "ended 1\n");
    assert_eq!(fx.whoami(&b1).await, "anonymous");
    assert_eq!(ok(fx.admin(&["count"])), "0\n");
}

#[tokio::test]
async fn timeouts_decide_what_is_expired() {
    let fx = Fixture::new().await;
    let (expired, _) = fx.insert_expired("carol").await;
    // With a 3-hour idle timeout the 2-hour-old session is still active:
    // listed, counted, endable, and not purged.
    let long = ["--idle-timeout", "10800"];
    assert_eq!(ok(fx.admin(&[&long[..], &["count"]].concat())), "1\n");
    let listed = ok(fx.admin(&[&long[..], &["list", "carol"]].concat()));
    assert!(listed.starts_with(&format!("{expired}\t")), "{listed}");
    assert_eq!(
        ok(fx.admin(&[&long[..], &["purge"]].concat())),
        "purged 0\n"
    );
    // An absolute timeout shorter than its age expires it all the same.
    assert_eq!(
        ok(fx.admin(&[&long[..], &["--absolute-timeout", "3600", "purge"]].concat())),
        "purged 1\n"
    );
}

#[tokio::test]
async fn a_fresh_database_is_migrated_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fresh.db");
    let url = format!("sqlite:{}", path.display());
    assert_eq!(ok(admin_in(dir.path(), &["--store", &url, "count"])), "0\n");
    assert!(path.exists());
    assert_eq!(
        ok(admin_in(dir.path(), &["--store", &url, "purge"])),
        "purged 0\n"
    );
    assert_eq!(
        ok(admin_in(dir.path(), &["--store", &url, "list", "x"])),
        ""
    );
    assert_eq!(
        ok(admin_in(
            dir.path(),
            &["--store", &url, "end", "x", "--all"]
        )),
        "ended 0\n"
    );
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("s.db").display());
    let cases: &[&[&str]] = &[
        &["--bogus"],
        &["--bogus", "count"],
        &[],
        &["frobnicate"],
        &["end"],
        &["end", "alice"],
        &["end", "alice", "notanumber"],
        &["end", "alice", "0"],
        &["end", "alice", "-1"],
        &["end", "alice", "1", "--all"],
        &["end", "alice", "1", "2"],
        &["list"],
        &["list", ""],
        &["list", "alice", "bob"],
        &["count", "--since", "x"],
        &["count", "--since", "-5"],
        &["count", "--since"],
        &["count", "extra"],
        &["purge", "--all"],
        &["list", "alice", "--since", "5"],
        &["--idle-timeout", "0", "count"],
        &["--idle-timeout", "many", "count"],
        &["--absolute-timeout", "99999999999999999999", "purge"],
        &["--idle-timeout", "99999999999999", "purge"],
        &["--store", "ftp://example.com/x", "count"],
    ];
    for args in cases {
        // Always name a temporary store, so a mistake cannot touch the
        // default file; `--store` given twice is an error of its own.
        let full: Vec<&str> = if args.first() == Some(&"--store") {
            args.to_vec()
        } else {
            [&["--store", url.as_str()][..], args].concat()
        };
        let output = admin_in(dir.path(), &full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
        assert!(stderr.starts_with("admin: "), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: admin"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // `--store` twice is refused too.
    let output = admin_in(dir.path(), &["--store", &url, "--store", &url, "count"]);
    assert_eq!(output.status.code(), Some(2));
    // Usage errors never open (or create) the database.
    assert!(!dir.path().join("s.db").exists());
    assert!(!dir.path().join("keycard-demo.db").exists());
}

#[test]
fn help_prints_the_usage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = ok(admin_in(dir.path(), &["--help"]));
    assert!(output.starts_with("usage: admin"), "{output}");
}

#[test]
fn an_unreachable_store_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite:{}",
        dir.path().join("no-such-dir").join("s.db").display()
    );
    let output = admin_in(dir.path(), &["--store", &url, "count"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(stderr.starts_with("admin: "), "{stderr}");
    assert!(!stderr.contains("usage:"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
