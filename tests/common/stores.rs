//! One factory per store: each test gets its own database file, schema or
//! table, so tests run in parallel. PostgreSQL and MySQL factories return
//! `None` (the test is skipped) when their URL is not set, except under CI,
//! where a missing URL is a failure.

use std::sync::Arc;

use keycard::SqliteStore;

use super::TestStore;

/// A fresh SQLite file in a temporary directory.
pub async fn sqlite() -> Option<TestStore> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let store = SqliteStore::connect(&url).await.expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    Some(TestStore::new(Arc::new(store), Box::new(dir)))
}
