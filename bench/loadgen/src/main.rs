//! Load generator for the bench server HTTP contract
//! (`examples/bench_server.rs`, `bench/bare_axum`, `bench/tower_sessions_server`).
//!
//! Every virtual user (VU) has its own keep-alive HTTP/1.1 connection and its
//! own cookie jar, and sends one request at a time. Every response is
//! checked: a non-2xx status, a missing cookie or a counter value other than
//! the one the VU expects counts as an error.
//!
//! Scenarios:
//!
//! | scenario | one iteration |
//! |---|---|
//! | `anon`  | `GET /anon` without cookies, expects `ok` |
//! | `read`  | `GET /read` on the VU's session (set up with one `POST /incr`), expects `1` |
//! | `write` | `POST /incr` on the VU's session, expects the previous value + 1 |
//! | `mixed` | 90 % `read`, 10 % `write` (per-VU deterministic pseudo-random choice) |
//! | `login` | fresh jar: `POST /incr` (expects `1` and a cookie), `POST /login/USER` (expects new cookie values), `GET /whoami` (expects USER), `GET /read` (expects `1`); a new user each iteration |
//! | `relogin` | as `login`, but each virtual user signs its own account in again and again (`u<VU>`), as a person signing in again does: the per-user session policy then works on a growing set of that user's sessions |
//! | `race`  | not timed by `--duration`: one session, `--race-tasks` (8) connections each sending `--race-incr` (100) `POST /incr` at once; then `GET /read`. Lost updates = 1 + 8 × 100 − final counter |
//!
//! Output: one JSON line on stdout. Exit status 0 even when errors were
//! counted (they are in the JSON); 2 for bad arguments; 1 if the server could
//! not be reached at all or the run overran its hard time limit.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const USAGE: &str = "\
usage: loadgen --url http://127.0.0.1:PORT --scenario anon|read|write|mixed|login|relogin|race
               [--clients N] [--duration SECS] [--warmup SECS] [--timeout SECS]
               [--race-tasks N] [--race-incr N]

  --url URL          server base URL (plain http, loopback only)
  --scenario NAME    anon, read, write, mixed, login, relogin or race
  --clients N        virtual users, one connection and cookie jar each (default 32)
  --duration SECS    measured time (default 5)
  --warmup SECS      unmeasured time before it (default 2)
  --timeout SECS     per-request timeout (default 10)
  --race-tasks N     race: concurrent connections on one session (default 8)
  --race-incr N      race: increments per connection (default 100)
  --sessions FILE    seeded: lines `ID TOKEN USER` of existing sessions (bench/seed);
                     each request signs in as a random one and checks /whoami";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Anon,
    Read,
    Write,
    Mixed,
    /// A new user signs in each iteration.
    Login,
    /// Each virtual user signs its own account in again and again.
    Relogin,
    Race,
    /// `GET /whoami` on a random session of `--sessions`: lookups over a
    /// large store.
    Seeded,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Anon => "anon",
            Scenario::Read => "read",
            Scenario::Write => "write",
            Scenario::Mixed => "mixed",
            Scenario::Login => "login",
            Scenario::Relogin => "relogin",
            Scenario::Race => "race",
            Scenario::Seeded => "seeded",
        }
    }
}

#[derive(Clone, Debug)]
struct Options {
    url: String,
    addr: SocketAddr,
    host: String,
    scenario: Scenario,
    clients: usize,
    duration: Duration,
    warmup: Duration,
    timeout: Duration,
    race_tasks: usize,
    race_incr: usize,
    /// `seeded`: (cookie header, user) of existing sessions.
    sessions: std::sync::Arc<Vec<(String, String)>>,
}

fn parse_secs(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or(format!(
            "{flag}: {text:?} is not a number of seconds in [0, 3600]"
        ))
}

fn parse_count(flag: &str, text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or(format!("{flag}: {text:?} is not an integer in [1, 10000]"))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut url = None;
    let mut scenario = None;
    let mut clients = 32;
    let mut duration = Duration::from_secs(5);
    let mut warmup = Duration::from_secs(2);
    let mut timeout = Duration::from_secs(10);
    let mut race_tasks = 8;
    let mut race_incr = 100;
    let mut sessions_file = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--scenario" => {
                let text = value()?;
                scenario = Some(match text.as_str() {
                    "anon" => Scenario::Anon,
                    "read" => Scenario::Read,
                    "write" => Scenario::Write,
                    "mixed" => Scenario::Mixed,
                    "login" => Scenario::Login,
                    "relogin" => Scenario::Relogin,
                    "race" => Scenario::Race,
                    "seeded" => Scenario::Seeded,
                    _ => return Err(format!("--scenario: unknown scenario {text:?}")),
                });
            }
            "--clients" => clients = parse_count(&flag, &value()?)?,
            "--duration" => duration = parse_secs(&flag, &value()?)?,
            "--warmup" => warmup = parse_secs(&flag, &value()?)?,
            "--timeout" => timeout = parse_secs(&flag, &value()?)?,
            "--race-tasks" => race_tasks = parse_count(&flag, &value()?)?,
            "--race-incr" => race_incr = parse_count(&flag, &value()?)?,
            "--sessions" => sessions_file = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let scenario = scenario.ok_or("--scenario is required")?;
    if duration.is_zero() {
        return Err("--duration must be positive".into());
    }
    if timeout.is_zero() {
        return Err("--timeout must be positive".into());
    }
    let host = url
        .strip_prefix("http://")
        .ok_or(format!("--url: {url:?} is not http://HOST:PORT"))?
        .trim_end_matches('/')
        .to_owned();
    let addr: SocketAddr = host
        .parse()
        .map_err(|_| format!("--url: {url:?} is not http://IP:PORT"))?;
    // Load is only ever sent to this machine.
    if !addr.ip().is_loopback() {
        return Err(format!("--url: {addr} is not a loopback address"));
    }
    let sessions = match (scenario, sessions_file) {
        (Scenario::Seeded, Some(path)) => read_sessions(&path)?,
        (Scenario::Seeded, None) => return Err("seeded needs --sessions FILE".into()),
        _ => Vec::new(),
    };
    Ok(Options {
        sessions: std::sync::Arc::new(sessions),
        url: url.trim_end_matches('/').to_owned(),
        addr,
        host,
        scenario,
        clients,
        duration,
        warmup,
        timeout,
        race_tasks,
        race_incr,
    })
}

/// Reads `ID TOKEN USER` lines into (cookie header, user) pairs; the bench
/// server runs with `--insecure-cookies`, so the names have no prefix.
fn read_sessions(path: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--sessions {path}: {e}"))?;
    let sessions: Vec<_> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (id, token, user) = (fields.next()?, fields.next()?, fields.next()?);
            Some((
                format!("keycard-id={id}; keycard-token={token}"),
                user.to_owned(),
            ))
        })
        .collect();
    if sessions.is_empty() {
        return Err(format!("--sessions {path}: no `ID TOKEN USER` lines"));
    }
    Ok(sessions)
}

/// One keep-alive connection, reopened after any failure.
struct Conn {
    addr: SocketAddr,
    host: String,
    timeout: Duration,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

/// What the checks need from a response.
struct Reply {
    status: u16,
    set_cookies: Vec<String>,
    body: Bytes,
}

impl Conn {
    fn new(options: &Options) -> Self {
        Self {
            addr: options.addr,
            host: options.host.clone(),
            timeout: options.timeout,
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Empty<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just set"))
    }

    async fn send(&mut self, method: Method, path: &str, cookie: &str) -> Result<Reply, String> {
        let timeout = self.timeout;
        let result = tokio::time::timeout(timeout, self.send_inner(method, path, cookie)).await;
        let result = result.unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn send_inner(
        &mut self,
        method: Method,
        path: &str,
        cookie: &str,
    ) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.host.as_str());
        if !cookie.is_empty() {
            builder = builder.header(hyper::header::COOKIE, cookie);
        }
        let request = builder.body(Empty::new()).map_err(|e| e.to_string())?;
        let sender = self.connect().await?;
        sender.ready().await.map_err(|e| format!("ready: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status().as_u16();
        let set_cookies = response
            .headers()
            .get_all(hyper::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status,
            set_cookies,
            body,
        })
    }
}

/// A cookie jar: name → value, in the order first set, with the `Cookie`
/// header kept ready.
#[derive(Clone, Default)]
struct Jar {
    cookies: Vec<(String, String)>,
    header: String,
}

impl Jar {
    fn clear(&mut self) {
        self.cookies.clear();
        self.header.clear();
    }

    /// Applies a response's `Set-Cookie` headers; returns whether any came.
    fn apply(&mut self, set_cookies: &[String]) -> bool {
        for line in set_cookies {
            let mut parts = line.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim().trim_matches('"'));
            let removed = value.is_empty()
                || parts.any(|attr| {
                    let attr = attr.trim().to_ascii_lowercase();
                    attr == "max-age=0" || attr.starts_with("max-age=-")
                });
            self.cookies.retain(|(n, _)| n != name);
            if !removed {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        if !set_cookies.is_empty() {
            self.header = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
        }
        !set_cookies.is_empty()
    }
}

/// One virtual user's tallies.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    requests: u64,
    iterations: u64,
    errors: u64,
    error_samples: Vec<String>,
}

impl Tally {
    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < 3 {
            self.error_samples.push(message);
        }
    }
}

/// The measurement window: requests that start at or after `start` and end
/// by `end` are counted; the VUs stop sending at `end`.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

struct Vu {
    conn: Conn,
    jar: Jar,
    window: Window,
    tally: Tally,
    /// The counter value the server should hold for this VU's session.
    expected: u64,
    rng: u64,
}

impl Vu {
    /// Sends one request, records its latency if it lies in the window, and
    /// checks the status. `Err` is an error already counted.
    async fn call(&mut self, method: Method, path: &str) -> Result<(Bytes, bool), ()> {
        let started = Instant::now();
        let result = self.conn.send(method.clone(), path, &self.jar.header).await;
        let ended = Instant::now();
        let measured = started >= self.window.start && ended <= self.window.end;
        if measured {
            self.tally.requests += 1;
            let us = ended.duration_since(started).as_micros();
            self.tally
                .latencies_us
                .push(u32::try_from(us).unwrap_or(u32::MAX));
        }
        match result {
            Ok(reply) if (200..300).contains(&reply.status) => {
                let set = self.jar.apply(&reply.set_cookies);
                Ok((reply.body, set))
            }
            Ok(reply) => {
                self.jar.apply(&reply.set_cookies);
                self.tally.error(format!(
                    "{method} {path}: status {} {:?}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                ));
                Err(())
            }
            Err(message) => {
                self.tally.error(format!("{method} {path}: {message}"));
                // Do not spin on a dead server.
                tokio::time::sleep(Duration::from_millis(10)).await;
                Err(())
            }
        }
    }

    /// `GET /read` or `POST /incr`, checking the counter.
    async fn counter(&mut self, write: bool) -> Result<(), ()> {
        let (method, path) = if write {
            (Method::POST, "/incr")
        } else {
            (Method::GET, "/read")
        };
        let (body, _) = self.call(method, path).await?;
        let want = if write {
            self.expected + 1
        } else {
            self.expected
        };
        match std::str::from_utf8(&body)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            Some(got) if got == want => {
                self.expected = got;
                Ok(())
            }
            Some(got) => {
                self.tally
                    .error(format!("{path}: counter {got}, expected {want}"));
                self.expected = got; // resynchronise: one error, not a cascade
                Err(())
            }
            None => {
                self.tally
                    .error(format!("{path}: body {body:?} is not a counter"));
                Err(())
            }
        }
    }

    /// Starts this VU's session: one increment from nothing.
    async fn new_session(&mut self) -> Result<(), ()> {
        self.jar.clear();
        self.expected = 0;
        let (body, set) = self.call(Method::POST, "/incr").await?;
        if body.as_ref() != b"1" {
            self.tally
                .error(format!("first /incr: body {body:?}, expected \"1\""));
            return Err(());
        }
        if !set || self.jar.cookies.is_empty() {
            self.tally.error("first /incr set no cookie".into());
            return Err(());
        }
        self.expected = 1;
        Ok(())
    }

    fn coin(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % 100
    }

    /// `GET /whoami` as a random seeded session: the server must find it.
    async fn seeded(&mut self, sessions: &[(String, String)]) -> Result<(), ()> {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let pick = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) as usize % sessions.len();
        let (cookie, user) = &sessions[pick];
        self.jar.header.clone_from(cookie);
        let (body, _) = self.call(Method::GET, "/whoami").await?;
        if body.as_ref() != user.as_bytes() {
            self.tally
                .error(format!("/whoami: body {body:?}, expected {user:?}"));
            return Err(());
        }
        Ok(())
    }

    /// One sign-in of a new visitor as `user`.
    async fn login_iteration(&mut self, user: String) -> Result<(), ()> {
        self.new_session().await?;
        let before = self.jar.cookies.clone();
        let (_, set) = self.call(Method::POST, &format!("/login/{user}")).await?;
        if !set || self.jar.cookies == before || self.jar.cookies.is_empty() {
            self.tally
                .error("login did not rotate the session cookie".into());
            return Err(());
        }
        let (body, _) = self.call(Method::GET, "/whoami").await?;
        if body.as_ref() != user.as_bytes() {
            self.tally
                .error(format!("/whoami: body {body:?}, expected {user:?}"));
            return Err(());
        }
        self.counter(false).await
    }

    async fn run(
        mut self,
        scenario: Scenario,
        vu: usize,
        sessions: std::sync::Arc<Vec<(String, String)>>,
    ) -> Tally {
        let needs_session = matches!(scenario, Scenario::Read | Scenario::Write | Scenario::Mixed);
        let mut ready = !needs_session;
        let mut iteration = 0u64;
        while Instant::now() < self.window.end {
            if !ready {
                ready = self.new_session().await.is_ok();
                continue;
            }
            let started = Instant::now();
            let ok = match scenario {
                Scenario::Anon => match self.call(Method::GET, "/anon").await {
                    Ok((body, _)) if body.as_ref() == b"ok" => Ok(()),
                    Ok((body, _)) => {
                        self.tally.error(format!("/anon: body {body:?}"));
                        Err(())
                    }
                    Err(()) => Err(()),
                },
                Scenario::Read => self.counter(false).await,
                Scenario::Write => self.counter(true).await,
                Scenario::Mixed => {
                    let write = self.coin() < 10;
                    self.counter(write).await
                }
                Scenario::Login => {
                    iteration += 1;
                    self.login_iteration(format!("u{vu}i{iteration}")).await
                }
                Scenario::Relogin => self.login_iteration(format!("u{vu}")).await,
                Scenario::Seeded => self.seeded(&sessions).await,
                Scenario::Race => unreachable!("race has its own driver"),
            };
            if ok.is_ok() && started >= self.window.start && Instant::now() <= self.window.end {
                self.tally.iterations += 1;
            }
        }
        self.tally
    }
}

/// This process's user + system CPU time in seconds, from /proc/self/stat
/// (Linux reports it in USER_HZ = 100 ticks a second); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[u32], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    u64::from(sorted[rank - 1])
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Summary {
    /// The load generator's own CPU use over the run, in % of one core.
    cpu_pct: Option<f64>,
    tally: Tally,
    seconds: f64,
    lost_updates: Option<i64>,
    duplicate_values: Option<u64>,
    final_counter: Option<u64>,
}

fn report(options: &Options, summary: Summary) -> String {
    let Summary {
        cpu_pct,
        mut tally,
        seconds,
        lost_updates,
        duplicate_values,
        final_counter,
    } = summary;
    tally.latencies_us.sort_unstable();
    let lat = &tally.latencies_us;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    let samples: Vec<_> = tally.error_samples.iter().map(|s| json_string(s)).collect();
    format!(
        concat!(
            "{{\"scenario\":{},\"url\":{},\"clients\":{},\"duration_s\":{:.3},\"warmup_s\":{:.3},",
            "\"requests\":{},\"iterations\":{},\"rps\":{:.1},\"iter_per_s\":{:.1},",
            "\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{},",
            "\"errors\":{},\"lost_updates\":{},\"duplicate_values\":{},\"final_counter\":{},",
            "\"loadgen_cpu_pct\":{},",
            "\"error_samples\":[{}]}}"
        ),
        json_string(options.scenario.name()),
        json_string(&options.url),
        if options.scenario == Scenario::Race {
            options.race_tasks
        } else {
            options.clients
        },
        seconds,
        if options.scenario == Scenario::Race {
            0.0
        } else {
            options.warmup.as_secs_f64()
        },
        tally.requests,
        tally.iterations,
        tally.requests as f64 / seconds,
        tally.iterations as f64 / seconds,
        percentile(lat, 0.50),
        percentile(lat, 0.90),
        percentile(lat, 0.99),
        lat.last().copied().unwrap_or(0),
        tally.errors,
        opt(lost_updates.map(|n| n.to_string())),
        opt(duplicate_values.map(|n| n.to_string())),
        opt(final_counter.map(|n| n.to_string())),
        opt(cpu_pct.map(|p| format!("{p:.1}"))),
        samples.join(","),
    )
}

fn new_vu(options: &Options, window: Window, seed: u64) -> Vu {
    Vu {
        conn: Conn::new(options),
        jar: Jar::default(),
        window,
        tally: Tally::default(),
        expected: 0,
        rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
    }
}

async fn timed(options: &Options) -> Summary {
    let now = Instant::now();
    let window = Window {
        start: now + options.warmup,
        end: now + options.warmup + options.duration,
    };
    let tasks: Vec<_> = (0..options.clients)
        .map(|vu| {
            let state = new_vu(options, window, vu as u64 + 1);
            let scenario = options.scenario;
            tokio::spawn(state.run(scenario, vu, options.sessions.clone()))
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.expect("virtual user panicked");
        total.latencies_us.extend(tally.latencies_us);
        total.requests += tally.requests;
        total.iterations += tally.iterations;
        total.errors += tally.errors;
        for sample in tally.error_samples {
            if total.error_samples.len() < 5 {
                total.error_samples.push(sample);
            }
        }
    }
    Summary {
        cpu_pct: None,
        tally: total,
        seconds: options.duration.as_secs_f64(),
        lost_updates: None,
        duplicate_values: None,
        final_counter: None,
    }
}

/// `--race-tasks` connections increment one session `--race-incr` times
/// each, all at once.
async fn race(options: &Options) -> Summary {
    let forever = Window {
        start: Instant::now(),
        end: Instant::now() + Duration::from_secs(3600),
    };
    let mut first = new_vu(options, forever, 1);
    if first.new_session().await.is_err() {
        return Summary {
            cpu_pct: None,
            tally: first.tally,
            seconds: 1.0,
            lost_updates: None,
            duplicate_values: None,
            final_counter: None,
        };
    }
    let jar = first.jar.clone();
    let started = Instant::now();
    let window = Window {
        start: started,
        end: started + Duration::from_secs(3600),
    };
    let tasks: Vec<_> = (0..options.race_tasks)
        .map(|i| {
            let mut vu = new_vu(options, window, i as u64 + 2);
            vu.jar = jar.clone();
            let incr = options.race_incr;
            tokio::spawn(async move {
                let mut values = Vec::with_capacity(incr);
                for _ in 0..incr {
                    if let Ok((body, _)) = vu.call(Method::POST, "/incr").await {
                        match std::str::from_utf8(&body)
                            .ok()
                            .and_then(|t| t.parse::<u64>().ok())
                        {
                            Some(v) => values.push(v),
                            None => vu.tally.error(format!("/incr: body {body:?}")),
                        }
                    }
                }
                (vu.tally, values)
            })
        })
        .collect();
    let mut total = Tally::default();
    let mut seen = HashSet::new();
    let mut duplicates = 0u64;
    for task in tasks {
        let (tally, values) = task.await.expect("racer panicked");
        total.latencies_us.extend(tally.latencies_us);
        total.requests += tally.requests;
        total.errors += tally.errors;
        total.error_samples.extend(tally.error_samples);
        for v in values {
            if !seen.insert(v) {
                duplicates += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    total.iterations = total.requests;
    total.error_samples.truncate(5);
    // Read back with the jar the first request got: one more request.
    first.jar = jar;
    let final_counter = match first.call(Method::GET, "/read").await {
        Ok((body, _)) => std::str::from_utf8(&body)
            .ok()
            .and_then(|t| t.parse::<u64>().ok()),
        Err(()) => None,
    };
    total.errors += first.tally.errors;
    total.error_samples.extend(first.tally.error_samples);
    let expected = 1 + (options.race_tasks * options.race_incr) as i64;
    Summary {
        cpu_pct: None,
        tally: total,
        seconds,
        lost_updates: final_counter.map(|f| expected - f as i64),
        duplicate_values: Some(duplicates),
        final_counter,
    }
}

fn main() -> std::process::ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if message.is_empty() {
                println!("{USAGE}");
                return std::process::ExitCode::SUCCESS;
            }
            eprintln!("loadgen: {message}\n\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    // One thread: bench/run.sh pins the load generator to its own core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // A hard bound on the whole run, whatever the server does.
    let limit = options.warmup + options.duration + options.timeout * 3 + Duration::from_secs(10);
    let outcome = runtime.block_on(async {
        if let Err(e) = TcpStream::connect(options.addr).await {
            return Err(format!("cannot connect to {}: {e}", options.addr));
        }
        let run = async {
            let (cpu0, wall0) = (cpu_seconds(), Instant::now());
            let mut summary = match options.scenario {
                Scenario::Race => race(&options).await,
                _ => timed(&options).await,
            };
            let wall = wall0.elapsed().as_secs_f64();
            summary.cpu_pct = cpu0
                .zip(cpu_seconds())
                .map(|(a, b)| 100.0 * (b - a) / wall.max(1e-9));
            summary
        };
        tokio::time::timeout(limit, run)
            .await
            .map_err(|_| format!("run overran its {limit:?} limit"))
    });
    match outcome {
        Ok(summary) => {
            println!("{}", report(&options, summary));
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("loadgen: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
