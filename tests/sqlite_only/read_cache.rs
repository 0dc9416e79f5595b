//! SQLite's read cache (`SqliteStore::cache`): a hit is confirmed by
//! `PRAGMA data_version` before it is served, so a commit by anyone (this
//! store, a second store on the file, a plain connection) is seen by the
//! next load; bounded; off for in-memory databases and on request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::Utc;
use keycard::SqliteStore;
use keycard::store::{SessionData, SessionFields, SessionStore};
use keycard::token::{SessionId, SessionToken};
use serde_json::json;
use sqlx::Connection;

struct File {
    _dir: tempfile::TempDir,
    url: String,
}

async fn file() -> (File, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let store = SqliteStore::connect(&url).await.expect("open");
    store.migrate().await.expect("migrate");
    (File { _dir: dir, url }, store)
}

async fn insert(store: &SqliteStore) -> SessionId {
    let token = SessionToken::generate().expect("rng");
    store
        .insert(&SessionFields::new(token.hash(), Utc::now()))
        .await
        .expect("insert")
}

fn data(n: i64) -> SessionData {
    let mut data = SessionData::new();
    data.insert("n".into(), json!(n));
    data
}

/// Loads until a load finds the row cached and leaves it cached (a hit: the
/// look it waited for saw no commit); after a commit the cache stays empty
/// until a look finds the file quiet.
async fn load_cached(store: &SqliteStore, id: SessionId) -> keycard::store::SessionRecord {
    for _ in 0..200 {
        let before = store.is_cached(id);
        let record = store.load(id).await.expect("load").expect("row");
        if before && store.is_cached(id) {
            return record;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("session {id} never cached");
}

#[tokio::test]
async fn a_cached_session_is_served_until_anyone_commits() {
    let (file, a) = file().await;
    let id = insert(&a).await;
    let first = load_cached(&a, id).await;
    assert!(a.is_cached(id), "a hit leaves the row cached");
    assert_eq!(first.version, 1);

    // A second store on the file (another app server, another process).
    let b = SqliteStore::connect(&file.url).await.expect("open b");
    assert!(b.update_data(id, 1, &data(7), None).await.expect("write"));
    let seen = a.load(id).await.expect("load").expect("row");
    assert_eq!(
        (seen.version, seen.fields.data.get("n")),
        (2, Some(&json!(7)))
    );

    // A plain connection, not keycard's: the shell, a migration, a script.
    load_cached(&a, id).await;
    let mut plain = sqlx::SqliteConnection::connect(&file.url)
        .await
        .expect("plain connection");
    sqlx::query("UPDATE keycard_sessions SET data = '{\"n\":8}', version = version + 1")
        .execute(&mut plain)
        .await
        .expect("update by hand");
    let seen = a.load(id).await.expect("load").expect("row");
    assert_eq!(
        (seen.version, seen.fields.data.get("n")),
        (3, Some(&json!(8)))
    );

    // This store's own write, and a delete elsewhere.
    load_cached(&a, id).await;
    assert!(a.update_data(id, 3, &data(9), None).await.expect("write"));
    let seen = a.load(id).await.expect("load").expect("row");
    assert_eq!(seen.fields.data.get("n"), Some(&json!(9)));
    load_cached(&a, id).await;
    assert!(b.delete(id).await.expect("delete"));
    assert!(
        a.load(id).await.expect("load").is_none(),
        "deleted elsewhere"
    );
    assert!(!a.is_cached(id));
    plain.close().await.expect("close");
}

/// Readers racing a writer on another store: no load may return a row
/// older than what was committed before the load began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_load_reads_older_than_what_was_committed_before_it() {
    let (file, a) = file().await;
    let id = insert(&a).await;
    let b = SqliteStore::connect(&file.url).await.expect("open b");
    let committed = Arc::new(AtomicI64::new(1));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (a, committed, done) = (a.clone(), committed.clone(), done.clone());
            tokio::spawn(async move {
                let (mut loads, mut hits) = (0u32, 0u32);
                while !done.load(Ordering::Acquire) {
                    let before = committed.load(Ordering::Acquire);
                    let cached = a.is_cached(id);
                    let row = a.load(id).await.expect("load").expect("row");
                    assert!(
                        row.version >= before,
                        "read version {} after {before} was committed",
                        row.version
                    );
                    loads += 1;
                    hits += u32::from(cached);
                }
                (loads, hits)
            })
        })
        .collect();
    for version in 1..200 {
        // Readers get some time on a quiet file, so hits happen too.
        if version % 10 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            b.update_data(id, version, &data(version), None)
                .await
                .expect("write")
        );
        committed.store(version + 1, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    let (mut loads, mut hits) = (0, 0);
    for reader in readers {
        let (l, h) = reader.await.expect("reader");
        loads += l;
        hits += h;
    }
    assert!(loads > 100, "{loads} loads");
    assert!(
        hits > 0,
        "the cache was used ({hits} of {loads} loads found it)"
    );
}

#[tokio::test]
async fn the_cache_is_bounded_off_on_request_and_off_in_memory() {
    let (_file, store) = file().await;
    let store = store.cache(2);
    let ids = [
        insert(&store).await,
        insert(&store).await,
        insert(&store).await,
    ];
    for id in ids {
        store.load(id).await.expect("load");
    }
    let cached = ids.iter().filter(|id| store.is_cached(**id)).count();
    assert!((1..=2).contains(&cached), "{cached} of 3 cached, at most 2");

    let (_file, store) = file().await;
    let store = store.cache(0);
    let id = insert(&store).await;
    for _ in 0..3 {
        assert!(store.load(id).await.expect("load").is_some());
    }
    assert!(!store.is_cached(id), "cache(0) caches nothing");

    let memory = SqliteStore::connect("sqlite::memory:").await.expect("open");
    memory.migrate().await.expect("migrate");
    let id = insert(&memory).await;
    for n in 1..4 {
        let row = memory.load(id).await.expect("load").expect("row");
        assert!(
            memory
                .update_data(id, row.version, &data(n), None)
                .await
                .expect("write")
        );
    }
    let row = memory.load(id).await.expect("load").expect("row");
    assert_eq!(row.fields.data.get("n"), Some(&json!(3)));
    assert!(
        !memory.is_cached(id),
        "an in-memory database is never cached"
    );
}

/// A store that outlives the runtime a look was started on (a static store
/// shared by tests, each with its own runtime): the look that runtime
/// dropped unrun must not leave the next runtime's loads waiting for it.
#[test]
fn a_look_dropped_with_its_runtime_holds_nobody_up() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let first = runtime();
    let (file, store, id) = first.block_on(async {
        let (file, store) = file().await;
        let id = insert(&store).await;
        load_cached(&store, id).await;
        (file, store, id)
    });
    // The load is polled once: it starts a look (a task on this runtime)
    // and is given up before that task runs; then the runtime, and the
    // task with it, goes.
    first.block_on(async {
        tokio::select! {
            biased;
            _ = store.load(id) => panic!("a hit waits for its look"),
            () = std::future::ready(()) => {}
        }
    });
    drop(first);
    let row = runtime().block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), store.load(id))
            .await
            .expect("a load on a new runtime does not hang")
            .expect("load")
    });
    assert_eq!(row.map(|r| r.id), Some(id));
    drop(file);
}
