//! Statements that lost a deadlock are tried again.

use crate::store::StoreError;

/// How often a statement that lost a deadlock is tried again.
pub(crate) const DEADLOCK_ATTEMPTS: u32 = 8;

impl StoreError {
    /// A deadlock or serialisation failure: the database rolled the
    /// statement back, and running it again is safe and usually succeeds.
    pub(crate) fn is_transient(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(error)) = self else {
            return false;
        };
        // 40001: serialization failure (PostgreSQL; MySQL's deadlock 1213),
        // 40P01: PostgreSQL deadlock, 5 / 517: SQLite busy.
        matches!(
            error.code().as_deref(),
            Some("40001" | "40P01" | "5" | "517")
        )
    }
}

impl StoreError {
    /// Whether running the statement again is right: a transient error,
    /// outside a request's transaction (inside one the database may have
    /// rolled the whole transaction back, so the request fails instead).
    pub(crate) fn is_retryable(&self) -> bool {
        self.is_transient() && !crate::store::request_tx::transaction_open()
    }
}

/// Runs `op`, again after a short random pause if it lost a deadlock (as
/// concurrent sign-ins of one user can on MySQL, whose range locks make a
/// ranked delete and an update of the same index wait for each other), as
/// long as `budget` has not passed since the first try: one budget for all
/// tries, so that a lock held for long gives one wait, not one per try.
pub(crate) async fn retry_deadlocks<T, F, Fut>(
    budget: std::time::Duration,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = std::time::Instant::now();
    let mut attempt = 1;
    loop {
        match op().await {
            Err(error) if may_retry(&error, attempt, started, budget) => {
                tracing::debug!(%error, attempt, "keycard: retrying after a deadlock");
                deadlock_pause(attempt).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Whether a failed try may be followed by another.
pub(crate) fn may_retry(
    error: &StoreError,
    attempt: u32,
    started: std::time::Instant,
    budget: std::time::Duration,
) -> bool {
    error.is_retryable() && attempt < DEADLOCK_ATTEMPTS && started.elapsed() < budget
}

/// Up to `attempt` milliseconds, at random, so that the transactions that
/// collided do not collide again in step.
pub(crate) async fn deadlock_pause(attempt: u32) {
    let mut byte = [0u8; 1];
    let random = rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut byte)
        .map(|()| u64::from(byte[0]))
        .unwrap_or(128);
    let micros = random * u64::from(attempt) * 1000 / 256;
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}
