//! [`LockoutPolicy`]: escalating account lockout, applied on every sign-in
//! pathway (form, HTTP Basic, anything that goes through
//! [`PasswordAuthenticator`](crate::auth::PasswordAuthenticator)). It lives
//! with the store because [`UserStore::record_failure`](super::UserStore::record_failure)
//! applies it under the account's row lock.

use chrono::{DateTime, TimeDelta, Utc};

/// After `threshold` failed sign-ins the account is locked for `duration`;
/// every further `threshold` failures lock it again for one `duration` more
/// than the last time (by default: 10 failures, then 10 minutes, 20 minutes
/// after 20 failures, …). A success clears the count. A locked account gets
/// exactly the answer a wrong password gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock the account. Default: 10.
    pub threshold: u32,
    /// How long the first lock lasts. Default: 10 minutes.
    pub duration: TimeDelta,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 10,
            duration: TimeDelta::minutes(10),
        }
    }
}

impl LockoutPolicy {
    /// The failure count and lock after one more failure at `now`.
    pub fn after_failure(
        self,
        failures: u32,
        locked_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> (u32, Option<DateTime<Utc>>) {
        let failures = failures.saturating_add(1);
        let threshold = self.threshold.max(1);
        if !failures.is_multiple_of(threshold) {
            return (failures, locked_until);
        }
        let periods = i32::try_from(failures / threshold).unwrap_or(i32::MAX);
        let lock = self
            .duration
            .checked_mul(periods)
            .unwrap_or(TimeDelta::days(36_525));
        let until = now.checked_add_signed(lock).unwrap_or(now);
        (
            failures,
            Some(locked_until.map_or(until, |old| old.max(until))),
        )
    }

    /// Whether an account locked until `locked_until` is locked at `now`.
    pub fn is_locked(locked_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        locked_until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_at_each_threshold_and_escalates() {
        let policy = LockoutPolicy::default();
        let now = Utc::now();
        let mut state = (0, None);
        for _ in 0..9 {
            state = policy.after_failure(state.0, state.1, now);
        }
        assert_eq!(state, (9, None));
        state = policy.after_failure(state.0, state.1, now);
        assert_eq!(state, (10, Some(now + TimeDelta::minutes(10))));
        for _ in 0..10 {
            state = policy.after_failure(state.0, state.1, now);
        }
        assert_eq!(state, (20, Some(now + TimeDelta::minutes(20))));
        assert!(LockoutPolicy::is_locked(state.1, now));
        assert!(!LockoutPolicy::is_locked(
            state.1,
            now + TimeDelta::minutes(21)
        ));
    }
}
