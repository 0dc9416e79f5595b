//! The write-ahead log of a store opened by `SqliteStore::connect` does not
//! keep the size it grew to while a reader held it back: the first
//! checkpoint after the reader is gone cuts the file back to
//! `WAL_SIZE_LIMIT` (SQLite's own default keeps it at its peak for good).

use chrono::Utc;
use keycard::SqliteStore;
use keycard::store::{SessionData, SessionFields, SessionStore, WAL_SIZE_LIMIT};
use keycard::token::SessionToken;
use serde_json::json;
use sqlx::Connection;

/// The size of the database's `-wal` file (0 while there is none).
fn wal_bytes(path: &std::path::Path) -> u64 {
    let wal = format!("{}-wal", path.display());
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

/// A 64 KiB value written over the row at `version`, which then moves on.
async fn write_big(store: &SqliteStore, id: keycard::token::SessionId, version: &mut i64) {
    let mut data = SessionData::new();
    data.insert(
        "blob".into(),
        json!(format!("{}{version}", "x".repeat(64 * 1024))),
    );
    let written = store.update_data(id, *version, &data, None).await;
    assert!(written.expect("write"), "the write at version {version}");
    *version += 1;
}

/// A fresh anonymous session row, for the tests of this file and its
/// neighbours that need one to write.
pub(super) async fn new_session(store: &SqliteStore) -> keycard::token::SessionId {
    let token = SessionToken::generate().expect("rng");
    store
        .insert(&SessionFields::new(token.hash(), Utc::now()))
        .await
        .expect("insert")
}

#[tokio::test]
async fn the_log_is_cut_back_once_no_reader_holds_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(&url).await.expect("open");
    store.migrate().await.expect("migrate");
    let id = new_session(&store).await;

    // A reader that keeps its snapshot (a long report, a backup, a shell
    // left in a transaction): no checkpoint may pass it, so the log grows.
    let mut reader = sqlx::SqliteConnection::connect(&url).await.expect("reader");
    sqlx::query("BEGIN")
        .execute(&mut reader)
        .await
        .expect("begin");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keycard_sessions")
        .fetch_one(&mut reader)
        .await
        .expect("read");
    assert_eq!(rows, 1);

    let mut version = 1;
    while wal_bytes(&path) <= WAL_SIZE_LIMIT + WAL_SIZE_LIMIT / 4 {
        write_big(&store, id, &mut version).await;
        assert!(version < 5_000, "the log never grew past the limit");
    }
    let grown = wal_bytes(&path);

    sqlx::query("ROLLBACK")
        .execute(&mut reader)
        .await
        .expect("end the reader");
    reader.close().await.expect("close the reader");

    // The next commits checkpoint the whole log; the one after starts it
    // over, and the limit cuts the file back.
    for _ in 0..20 {
        write_big(&store, id, &mut version).await;
        if wal_bytes(&path) <= WAL_SIZE_LIMIT {
            break;
        }
    }
    let after = wal_bytes(&path);
    assert!(
        after <= WAL_SIZE_LIMIT,
        "the log stayed at {after} bytes (grown to {grown}, limit {WAL_SIZE_LIMIT})"
    );
    // Read back on a connection of its own, not through the store (whose
    // read cache could answer): the file holds every write.
    let mut check = sqlx::SqliteConnection::connect(&url).await.expect("check");
    let stored: i64 = sqlx::query_scalar("SELECT version FROM keycard_sessions WHERE id = ?")
        .bind(id.get())
        .fetch_one(&mut check)
        .await
        .expect("read back");
    assert_eq!(stored, version, "every write is in the file");
}
