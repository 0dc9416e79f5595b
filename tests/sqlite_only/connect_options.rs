//! `SqliteStore::connect_options`: a pool of the application's own size
//! gets the settings `connect` would have given it, and a URL of another
//! database is refused with an error that says so (sqlx would take it for
//! a file name).

use std::time::Duration;

use keycard::SqliteStore;
use keycard::store::{WAL_SIZE_LIMIT, WaitLimits};

#[tokio::test]
async fn a_pool_of_your_own_size_gets_the_settings_connect_chooses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    let limits = WaitLimits::default().lock(Duration::from_millis(1500));
    let url = format!("sqlite://{}", path.display());
    let options = SqliteStore::connect_options(&url, limits).expect("options");
    let pool = SqliteStore::pool_options(&url, limits)
        .max_connections(2)
        .connect_with(options)
        .await
        .expect("pool");
    assert_eq!(pool.options().get_max_connections(), 2);
    assert_eq!(pool.options().get_acquire_timeout(), limits.acquire);
    assert!(path.exists(), "the file is created when missing");

    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .expect("journal_mode");
    assert_eq!(journal_mode, "wal");
    let number = |name: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
                .fetch_one(&pool)
                .await
                .expect(name)
        }
    };
    assert_eq!(number("synchronous").await, 1, "NORMAL");
    assert_eq!(number("journal_size_limit").await, WAL_SIZE_LIMIT as i64);
    assert_eq!(number("busy_timeout").await, 1500);

    let store = SqliteStore::new(pool.clone()).wait_limits(limits);
    store.migrate().await.expect("migrate");
    let id = super::wal_size::new_session(&store).await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keycard_sessions WHERE id = ?")
        .bind(id.get())
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 1);
}

/// `connect`'s pool: its size, and an in-memory database kept for the life
/// of the pool (a file's pool may close idle connections).
#[test]
fn the_pool_options_are_connects() {
    let limits = WaitLimits::default().acquire(Duration::from_millis(700));
    let file = SqliteStore::pool_options("sqlite://sessions.db", limits);
    assert_eq!(file.get_max_connections(), SqliteStore::POOL_SIZE);
    assert_eq!(file.get_acquire_timeout(), Duration::from_millis(700));
    assert_eq!(file.get_min_connections(), 0);
    assert!(file.get_idle_timeout().is_some());
    let memory = SqliteStore::pool_options("sqlite::memory:", limits);
    assert_eq!(memory.get_max_connections(), SqliteStore::POOL_SIZE);
    assert_eq!(memory.get_min_connections(), 1);
    assert_eq!(memory.get_idle_timeout(), None);
    assert_eq!(memory.get_max_lifetime(), None);
}

#[tokio::test]
async fn a_url_of_another_database_is_refused_and_a_path_is_not() {
    for url in [
        "postgres://app:secret@db.example/sessions",
        "mysql://root@127.0.0.1:3306/test",
    ] {
        let refused = SqliteStore::connect_options(url, WaitLimits::default())
            .expect_err("another database's URL");
        assert!(
            matches!(
                refused,
                keycard::store::StoreError::Database(sqlx::Error::Configuration(_))
            ),
            "a configuration error: {refused:?}"
        );
        let message = refused.to_string();
        assert!(message.contains("sqlite:"), "says what it wants: {message}");
        assert!(
            !message.contains("secret"),
            "keeps the password out: {message}"
        );
        let refused = SqliteStore::connect(url).await.expect_err("connect too");
        assert!(refused.to_string().contains("sqlite:"), "{refused}");
    }
    // Paths and SQLite URLs are not mistaken for another database's, even
    // with a drive letter or `://` further on.
    for url in [
        "sqlite::memory:",
        "sqlite://sessions.db",
        "sqlite:sessions.db?mode=rwc",
        "sqlite://backups/a://b.db",
        "sessions.db",
        "C:/data/sessions.db",
        "/var/lib/app/sessions.db",
    ] {
        assert!(
            SqliteStore::connect_options(url, WaitLimits::default()).is_ok(),
            "{url}"
        );
    }
}
