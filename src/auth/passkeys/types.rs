//! What the passkey API hands out: a registered passkey as the user sees
//! it, and the outcome of a registration.

use chrono::{DateTime, Utc};

use crate::auth::RecoveryCodes;
use crate::store::PasskeyRecord;

/// A passkey of an account, as a "your passkeys" page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasskeyInfo {
    /// Its key, to [`remove`](super::Passkeys::remove) it by.
    pub id: i64,
    /// What the user called it.
    pub label: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last signed in.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Whether its authenticator may copy it to the user's other devices
    /// (a synced passkey, as platform password managers make).
    pub syncable: bool,
    /// Whether it is backed up (synced) now.
    pub backed_up: bool,
}

impl From<&PasskeyRecord> for PasskeyInfo {
    fn from(record: &PasskeyRecord) -> Self {
        Self {
            id: record.id,
            label: record.label.clone(),
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            syncable: record.backup_eligible,
            backed_up: record.backup_state,
        }
    }
}

/// A registration's outcome: the new passkey, and, when it is the
/// account's first second factor, recovery codes to show once (they sign
/// in in place of the passkey, should it be lost).
#[derive(Debug)]
#[non_exhaustive]
pub struct PasskeyRegistered {
    /// The passkey.
    pub passkey: PasskeyInfo,
    /// New recovery codes, if the account had no second factor before.
    pub recovery_codes: Option<RecoveryCodes>,
}
