//! Where keycard gets the time from.
//!
//! Every timestamp keycard writes or compares comes from one [`Clock`], the
//! application's, never from the database server: several app servers and
//! one database then agree on what "idle for 30 minutes" means as long as the
//! app servers' clocks do. Tests inject a [`ManualClock`] and move it forward
//! instead of sleeping.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current time, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to: for tests of timeouts.
///
/// ```
/// use keycard::clock::{Clock, ManualClock};
/// use chrono::TimeDelta;
///
/// let clock = ManualClock::default();
/// let before = clock.now();
/// clock.advance(TimeDelta::minutes(31));
/// assert_eq!(clock.now() - before, TimeDelta::minutes(31));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl Default for ManualClock {
    /// Starts at the system's current time.
    fn default() -> Self {
        Self::starting_at(Utc::now())
    }
}

impl ManualClock {
    /// A clock showing `at` until moved.
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// Moves the clock by `by` (which may be negative, to test a clock that
    /// steps backwards).
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Drops the nanoseconds below a microsecond, the precision every store
/// keeps, so a timestamp reads back exactly as it was written.
pub(crate) fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}
