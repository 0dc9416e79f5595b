//! [`WaitLimits`]: how long a store waits for the database before the
//! request gets a clean `503`.

use std::time::Duration;

/// How long a SQL store waits for the database, so that a request always
/// gets an answer within a known time: a `503 Service Unavailable` with
/// `Retry-After`, no cookie and nothing half-written, when a lock is held
/// too long, the pool is exhausted or the database is gone.
///
/// The limits are enforced by the database where it can (SQLite's busy
/// timeout, PostgreSQL's `lock_timeout` and `statement_timeout`,
/// MySQL/MariaDB's `innodb_lock_wait_timeout` and `lock_wait_timeout`), so
/// that a statement given up on is rolled back by the database itself and
/// never commits after its request was answered. Retries of a statement that
/// lost a deadlock stop once [`lock`](Self::lock) has passed: it is one
/// budget, not a timeout per try.
///
/// `connect_with` applies them to the pool keycard builds. A store made
/// with `new(pool)` over the application's own pool takes the retry budget
/// from [`SqlStore::wait_limits`](crate::store::SqlStore::wait_limits);
/// set the server-side limits on that pool yourself (`busy_timeout` in
/// `SqliteConnectOptions`, `options([("lock_timeout", "5s")])` in
/// `PgConnectOptions`, `SET SESSION innodb_lock_wait_timeout` in an
/// `after_connect`), and an `acquire_timeout` on the pool.
///
/// ```
/// # async fn run() -> Result<(), keycard::store::StoreError> {
/// use std::time::Duration;
/// use keycard::SqliteStore;
/// use keycard::store::WaitLimits;
///
/// let limits = WaitLimits::default().lock(Duration::from_secs(2));
/// let store = SqliteStore::connect_with("sqlite::memory:", limits).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitLimits {
    /// The longest wait for a pooled connection. Default: 5 seconds.
    pub acquire: Duration,
    /// The longest wait for a lock held by another connection, retries
    /// included. Default: 5 seconds.
    pub lock: Duration,
    /// The longest a statement may run (PostgreSQL only). Default: 10
    /// seconds.
    pub statement: Duration,
}

impl Default for WaitLimits {
    fn default() -> Self {
        Self {
            acquire: Duration::from_secs(5),
            lock: Duration::from_secs(5),
            statement: Duration::from_secs(10),
        }
    }
}

impl WaitLimits {
    /// Sets [`acquire`](Self::acquire) (at least 1 ms).
    #[must_use]
    pub fn acquire(mut self, wait: Duration) -> Self {
        self.acquire = wait.max(Duration::from_millis(1));
        self
    }

    /// Sets [`lock`](Self::lock) (at least 1 ms).
    #[must_use]
    pub fn lock(mut self, wait: Duration) -> Self {
        self.lock = wait.max(Duration::from_millis(1));
        self
    }

    /// Sets [`statement`](Self::statement) (at least 1 ms).
    #[must_use]
    pub fn statement(mut self, wait: Duration) -> Self {
        self.statement = wait.max(Duration::from_millis(1));
        self
    }

    /// A duration in whole milliseconds, for PostgreSQL's settings.
    #[cfg(feature = "postgres")]
    pub(crate) fn millis(wait: Duration) -> u128 {
        wait.as_millis().max(1)
    }
}
