//! Faults: a lock held longer than the store waits, commits the database
//! refuses, connections cut under load. Every response must be a clean
//! `503` with `Retry-After` and no cookie, or a success whose row is there
//! afterwards. The tests run one at a time (they hold locks and cut
//! connections), in this binary of their own.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::{StatusCode, header};
use common::{Client, Reply, app};
use keycard::SessionLayer;
use keycard::store::{SessionStore, WaitLimits};

/// One fault test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The lock wait every store here is given.
const LOCK_WAIT: Duration = Duration::from_secs(1);

fn limits() -> WaitLimits {
    WaitLimits::default()
        .lock(LOCK_WAIT)
        .acquire(Duration::from_secs(2))
        .statement(Duration::from_secs(3))
}

fn layer(store: impl SessionStore) -> SessionLayer {
    SessionLayer::new(store).no_background_purge()
}

/// A refusal: `503`, `Retry-After`, no cookie.
fn assert_unavailable(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        reply.body
    );
    assert!(
        reply.headers.contains_key(header::RETRY_AFTER),
        "{what}: Retry-After"
    );
    assert!(reply.set_cookies().is_empty(), "{what}: no cookie");
}

/// Sends, and says how long the answer took.
async fn timed(client: &mut Client, method: &str, path: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = client.call(method, path).await;
    (reply, started.elapsed())
}

/// Well within what a client would wait, and far beyond the lock wait:
/// the point is that the wait ends, not how fast.
const BOUND: Duration = Duration::from_secs(8);

/// What every store is put through while another connection holds the
/// lock a write needs: writes answer 503 within the bound, reads (where the
/// lock allows them) still work, and once the lock goes nothing was
/// half-written.
async fn writes_blocked_by_a_held_lock(app: axum::Router, hold: impl AsyncHold) {
    let mut client = Client::new(app.clone());
    assert_eq!(client.post("/incr").await.body, "1");
    let jar = client.jar.clone();
    hold.hold().await;
    for path in ["/incr", "/login/alice", "/set/colour/red"] {
        let (reply, took) = timed(&mut client, "POST", path).await;
        assert_unavailable(&reply, path);
        assert!(took < BOUND, "{path} waited {took:?}");
        assert_eq!(client.jar, jar);
    }
    let mut visitor = Client::new(app.clone());
    let (reply, took) = timed(&mut visitor, "POST", "/incr").await;
    assert_unavailable(&reply, "a new visitor's first write");
    assert!(took < BOUND, "a new visitor waited {took:?}");
    assert_eq!(client.get("/read").await.body, "1", "reads are not blocked");
    hold.release().await;
    assert_eq!(
        client.post("/incr").await.body,
        "2",
        "no refused write landed"
    );
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(client.get("/get/colour").await.body, "");
}

/// Something that holds a lock on another connection.
trait AsyncHold {
    fn hold(&self) -> impl std::future::Future<Output = ()> + Send;
    fn release(&self) -> impl std::future::Future<Output = ()> + Send;
}

/// A second connection of the test's own, in a transaction holding a lock.
struct Holder<C: sqlx::Connection> {
    conn: tokio::sync::Mutex<Option<C>>,
    url: String,
    sql: String,
}

impl<C: sqlx::Connection> AsyncHold for Holder<C>
where
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    async fn hold(&self) {
        let mut conn = C::connect(&self.url).await.expect("holder connects");
        sqlx::raw_sql(sqlx::AssertSqlSafe(self.sql.clone()))
            .execute(&mut conn)
            .await
            .expect("holder takes the lock");
        *self.conn.lock().await = Some(conn);
    }

    async fn release(&self) {
        if let Some(mut conn) = self.conn.lock().await.take() {
            sqlx::raw_sql("ROLLBACK")
                .execute(&mut conn)
                .await
                .expect("holder lets go");
            let _ = conn.close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_sqlite_write_lock_gives_503_within_the_bound() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = keycard::SqliteStore::connect_with(&url, limits())
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let holder = Holder::<sqlx::SqliteConnection> {
        conn: tokio::sync::Mutex::new(None),
        url,
        sql: "BEGIN IMMEDIATE".to_owned(),
    };
    writes_blocked_by_a_held_lock(app(layer(store)), holder).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn a_held_postgres_table_lock_gives_503_within_the_bound() {
    let _serial = SERIAL.lock().await;
    let Some(url) = common::stores::url_from_env("KEYCARD_TEST_POSTGRES_URL") else {
        return;
    };
    let table = common::stores::unique_table();
    let connected = keycard::store::PostgresStore::connect_with(&url, limits())
        .await
        .expect("connect");
    let store =
        keycard::store::PostgresStore::with_table_name(connected.pool().clone(), table.clone())
            .wait_limits(limits());
    store.migrate().await.expect("migrate");
    let holder = Holder::<sqlx::PgConnection> {
        conn: tokio::sync::Mutex::new(None),
        url: url.clone(),
        // EXCLUSIVE lets reads through and stops every write.
        sql: format!(
            "BEGIN; LOCK TABLE {t} IN EXCLUSIVE MODE",
            t = table.as_str()
        ),
    };
    writes_blocked_by_a_held_lock(app(layer(store.clone())), holder).await;
    drop_tables(&store, table.as_str()).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(keycard_no_mysql_url, ignore = "KEYCARD_TEST_MYSQL_URL is not set")]
async fn a_held_mysql_table_lock_gives_503_within_the_bound() {
    let _serial = SERIAL.lock().await;
    let Some(url) = common::stores::url_from_env("KEYCARD_TEST_MYSQL_URL") else {
        return;
    };
    let table = common::stores::unique_table();
    let connected = keycard::store::MySqlStore::connect_with(&url, limits())
        .await
        .expect("connect");
    let store =
        keycard::store::MySqlStore::with_table_name(connected.pool().clone(), table.clone())
            .wait_limits(limits());
    store.migrate().await.expect("migrate");
    // Every row locked: a write of any session, and an insert into the
    // gap after the last row, wait on InnoDB's row locks.
    let holder = Holder::<sqlx::MySqlConnection> {
        conn: tokio::sync::Mutex::new(None),
        url: url.clone(),
        sql: format!("BEGIN; SELECT * FROM {t} FOR UPDATE", t = table.as_str()),
    };
    writes_blocked_by_a_held_lock(app(layer(store.clone())), holder).await;
    drop_tables(&store, table.as_str()).await;
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn drop_tables<DB: sqlx::Database>(store: &keycard::store::SqlStore<DB>, t: &str)
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    let sql = common::stores::drop_tables_sql(t);
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(store.pool())
        .await;
}

/// SQLite refuses every commit while this is set (a commit hook on each
/// of the store's connections): a full disk or a read-only file, without
/// needing one.
static REFUSE_COMMITS: AtomicBool = AtomicBool::new(false);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_is_never_acknowledged() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("dir");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("s.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.lock_handle()
                    .await?
                    .set_commit_hook(|| !REFUSE_COMMITS.load(Ordering::SeqCst));
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .expect("pool");
    let store = keycard::SqliteStore::new(pool);
    store.migrate().await.expect("migrate");
    let shared: Arc<dyn SessionStore> = Arc::new(store.clone());
    let app = app(SessionLayer::with_shared_store(shared.clone()).no_background_purge());
    let mut existing = Client::new(app.clone());
    assert_eq!(existing.post("/incr").await.body, "1");

    REFUSE_COMMITS.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for n in 0..8 {
        let mut visitor = Client::new(app.clone());
        let reply = visitor.post("/incr").await;
        match reply.status {
            StatusCode::OK => acknowledged.push(visitor.session_id().expect("a cookie")),
            _ => assert_unavailable(&reply, &format!("visitor {n}")),
        }
    }
    for path in ["/incr", "/set/colour/red", "/login/alice"] {
        let reply = existing.post(path).await;
        assert_unavailable(&reply, path);
    }
    REFUSE_COMMITS.store(false, Ordering::SeqCst);
    for id in acknowledged {
        assert!(
            shared.load(id).await.expect("load").is_some(),
            "a session acknowledged with a cookie exists"
        );
    }
    assert_eq!(existing.get("/read").await.body, "1", "nothing committed");
    assert_eq!(existing.post("/incr").await.body, "2", "and it recovers");
}

/// A TCP proxy between the app and a database server, whose connections
/// the test can cut.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    cut: Arc<tokio::sync::watch::Sender<u64>>,
}

impl CuttingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (cut, _) = tokio::sync::watch::channel(0_u64);
        let cut = Arc::new(cut);
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    /// Closes every connection open now.
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// 32 clients increment their own sessions while the proxy cuts the
/// store's connections twice: every answer is a 200 with the next value or
/// a 503, and the app recovers by itself.
async fn connections_cut_under_load(url_through_proxy: String, proxy: CuttingProxy, backend: &str) {
    let table = common::stores::unique_table();
    let store: Arc<dyn SessionStore> = match backend {
        #[cfg(feature = "postgres")]
        "postgres" => {
            let s = keycard::store::PostgresStore::connect_with(&url_through_proxy, limits())
                .await
                .expect("connect");
            let s = keycard::store::PostgresStore::with_table_name(s.pool().clone(), table.clone())
                .wait_limits(limits());
            s.migrate().await.expect("migrate");
            Arc::new(s) as Arc<dyn SessionStore>
        }
        #[cfg(feature = "mysql")]
        "mysql" => {
            let s = keycard::store::MySqlStore::connect_with(&url_through_proxy, limits())
                .await
                .expect("connect");
            let s = keycard::store::MySqlStore::with_table_name(s.pool().clone(), table.clone())
                .wait_limits(limits());
            s.migrate().await.expect("migrate");
            Arc::new(s) as Arc<dyn SessionStore>
        }
        other => panic!("no store {other}"),
    };
    let app = app(SessionLayer::with_shared_store(store.clone()).no_background_purge());
    let stop = Arc::new(AtomicBool::new(false));
    let unavailable = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (app, stop, unavailable) = (app.clone(), stop.clone(), unavailable.clone());
            tokio::spawn(async move {
                let mut client = Client::new(app);
                let mut last = 0_u64;
                let mut refused = 0_u64;
                while !stop.load(Ordering::SeqCst) {
                    let reply = client.post("/incr").await;
                    match reply.status {
                        StatusCode::OK => {
                            let value: u64 = reply.body.parse().expect("a count");
                            // A refused write may still have committed (the
                            // cut came after the commit): the count may jump,
                            // never go back or stand still.
                            assert!(value > last, "{value} after {last}");
                            assert!(value <= last + 1 + refused, "{value} after {last}");
                            last = value;
                            refused = 0;
                        }
                        StatusCode::SERVICE_UNAVAILABLE => {
                            refused += 1;
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            assert!(reply.headers.contains_key(header::RETRY_AFTER));
                        }
                        other => panic!("{other}: {}", reply.body),
                    }
                }
                last
            })
        })
        .collect();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.cut();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        assert!(task.await.expect("client") > 0, "every client got through");
    }
    // Recovered without a restart.
    let mut after = Client::new(app.clone());
    assert_eq!(after.post("/incr").await.status, StatusCode::OK);
    eprintln!(
        "faults: {backend}: {} answers were 503 while the connections were cut",
        unavailable.load(Ordering::Relaxed)
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    keycard_no_postgres_url,
    ignore = "KEYCARD_TEST_POSTGRES_URL is not set"
)]
async fn postgres_connections_cut_under_load_recover_with_clean_answers() {
    let _serial = SERIAL.lock().await;
    let Some(url) = common::stores::url_from_env("KEYCARD_TEST_POSTGRES_URL") else {
        return;
    };
    let proxy = CuttingProxy::start("127.0.0.1:5432".parse().expect("addr")).await;
    let through = url.replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1);
    assert_ne!(through, url, "the URL names 127.0.0.1:5432");
    connections_cut_under_load(through, proxy, "postgres").await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(keycard_no_mysql_url, ignore = "KEYCARD_TEST_MYSQL_URL is not set")]
async fn mysql_connections_cut_under_load_recover_with_clean_answers() {
    let _serial = SERIAL.lock().await;
    let Some(url) = common::stores::url_from_env("KEYCARD_TEST_MYSQL_URL") else {
        return;
    };
    let proxy = CuttingProxy::start("127.0.0.1:3306".parse().expect("addr")).await;
    let through = url.replacen("127.0.0.1:3306", &proxy.addr.to_string(), 1);
    assert_ne!(through, url, "the URL names 127.0.0.1:3306");
    connections_cut_under_load(through, proxy, "mysql").await;
}

/// Many slow requests hold every pooled connection: the next request does
/// not queue without end but answers 503 once `WaitLimits::acquire` has
/// passed, and the app serves again as soon as connections come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_503_within_the_acquire_limit() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = keycard::SqliteStore::connect_with(&url, limits())
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let app = app(layer(store.clone()));
    let mut client = Client::new(app.clone());
    assert_eq!(client.post("/incr").await.body, "1");
    // Every connection the pool may open, taken by "slow requests".
    let mut held = Vec::new();
    while held.len() < 8 {
        held.push(store.pool().acquire().await.expect("a connection"));
    }
    for (method, path) in [("GET", "/read"), ("POST", "/incr")] {
        let (reply, took) = timed(&mut client, method, path).await;
        assert_unavailable(&reply, path);
        assert!(took < BOUND, "{path} waited {took:?}");
    }
    drop(held);
    assert_eq!(client.post("/incr").await.body, "2");
}
