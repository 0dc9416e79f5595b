//! What a second factor's API hands out: the factor due, a half-open
//! sign-in, a new enrolment, recovery codes.

use chrono::{DateTime, Utc};

/// Which second factor a half-open sign-in waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Factor {
    /// A TOTP code from an authenticator app (or, instead, one of the
    /// account's recovery codes).
    Totp,
}

impl Factor {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Factor::Totp => "totp",
        }
    }
}

/// A half-open sign-in: the first factor (a password) was right, the
/// second is due. The session is anonymous meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pending {
    /// Whose sign-in it is.
    pub user_id: String,
    /// What it waits for.
    pub factor: Factor,
    /// When the first factor was proven.
    pub started_at: DateTime<Utc>,
    /// When it stops waiting ([`SecondFactor::pending_for`](super::SecondFactor::pending_for) later).
    pub expires_at: DateTime<Utc>,
}

/// What [`SecondFactor::sign_in`](super::SecondFactor::sign_in) did after a first factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInStep {
    /// The account has no second factor: the session is signed in.
    Done,
    /// The account has one: the session is half-open, waiting for it (ask
    /// for a code, then call [`SecondFactor::complete_with_totp`](super::SecondFactor::complete_with_totp) or
    /// [`SecondFactor::complete_with_recovery_code`](super::SecondFactor::complete_with_recovery_code)).
    SecondFactorDue(Factor),
}

/// The session value of a half-open sign-in.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct PendingValue {
    pub(super) user: String,
    pub(super) factor: String,
    /// Microseconds since the epoch.
    pub(super) since: i64,
    /// The account's credential version at the first factor: a password
    /// change or a disabled account in between voids it.
    pub(super) version: i64,
}

/// A new TOTP enrolment, to show once: the secret as base32 text (to type
/// into an authenticator app) and as an `otpauth://` URI (a link, or a QR
/// code: [`qr_png`](Self::qr_png) with the `qr` feature). It takes effect
/// once [`SecondFactor::confirm_totp`](super::SecondFactor::confirm_totp) has seen a first valid code.
/// `Debug` shows neither.
pub struct TotpEnrolment {
    // Read only to draw the QR code.
    #[cfg_attr(not(feature = "qr"), allow(dead_code))]
    pub(super) totp: totp_rs::Totp,
    pub(super) base32: String,
    pub(super) uri: String,
}

impl TotpEnrolment {
    /// The secret, in base32 (RFC 4648, no padding).
    pub fn secret_base32(&self) -> &str {
        &self.base32
    }

    /// The `otpauth://totp/…` URI that authenticator apps read (SHA-1, 6
    /// digits, 30 seconds).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// A QR code of [`uri`](Self::uri), as a PNG image; `None` if it could
    /// not be drawn (a URI too long for a QR code: an issuer or user name
    /// of hundreds of characters).
    #[cfg(feature = "qr")]
    pub fn qr_png(&self) -> Option<Vec<u8>> {
        self.totp.to_qr_png().ok()
    }
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Holds the secret: never in a log.
        f.write_str("TotpEnrolment(<redacted>)")
    }
}

/// Recovery codes, to show once: each signs in once in place of a TOTP
/// code. Only their SHA-256 is stored. `Debug` shows how many, not which.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCodes(pub(super) Vec<String>);

impl RecoveryCodes {
    /// The codes (`xxxx-xxxx-xxxx`, 60 random bits each).
    pub fn codes(&self) -> &[String] {
        &self.0
    }
}

impl IntoIterator for RecoveryCodes {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCodes(<{} redacted>)", self.0.len())
    }
}
