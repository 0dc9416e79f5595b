//! What a second factor's API hands out: the factor due, a half-open
//! sign-in, a new enrolment, recovery codes.

use chrono::{DateTime, Utc};

/// A second factor a half-open sign-in can be completed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Factor {
    /// A TOTP code from an authenticator app (or, instead, one of the
    /// account's recovery codes).
    Totp,
    /// One of the account's passkeys
    /// ([`Passkeys::complete_second_factor`](crate::auth::Passkeys::complete_second_factor),
    /// feature `passkeys`), or one of its recovery codes.
    Passkey,
}

impl Factor {
    fn as_str(self) -> &'static str {
        match self {
            Factor::Totp => "totp",
            Factor::Passkey => "passkey",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "totp" => Some(Factor::Totp),
            "passkey" => Some(Factor::Passkey),
            _ => None,
        }
    }
}

/// The second factors an account has, any of which completes its
/// half-open sign-ins (and its recovery codes, if it has any left).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Factors {
    totp: bool,
    passkey: bool,
}

impl Factors {
    /// The set of `totp` and `passkey`, as they are true.
    pub(crate) fn new(totp: bool, passkey: bool) -> Self {
        Self { totp, passkey }
    }

    /// Whether `factor` is one of them.
    pub fn contains(self, factor: Factor) -> bool {
        match factor {
            Factor::Totp => self.totp,
            Factor::Passkey => self.passkey,
        }
    }

    /// Whether there is none (the account signs in with a password alone).
    pub fn is_empty(self) -> bool {
        !self.totp && !self.passkey
    }

    /// Each of them, TOTP first.
    pub fn iter(self) -> impl Iterator<Item = Factor> {
        [Factor::Totp, Factor::Passkey]
            .into_iter()
            .filter(move |f| self.contains(*f))
    }

    /// As a session value holds them: names joined by commas.
    pub(super) fn encode(self) -> String {
        let names: Vec<&str> = self.iter().map(Factor::as_str).collect();
        names.join(",")
    }

    /// From [`encode`](Self::encode)'s form (a value written before
    /// passkeys holds just `totp`); `None` for a name keycard never wrote.
    pub(super) fn decode(text: &str) -> Option<Self> {
        let mut factors = Self::default();
        for name in text.split(',').filter(|n| !n.is_empty()) {
            match Factor::parse(name)? {
                Factor::Totp => factors.totp = true,
                Factor::Passkey => factors.passkey = true,
            }
        }
        Some(factors)
    }
}

/// A half-open sign-in: the first factor (a password) was right, the
/// second is due. The session is anonymous meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pending {
    /// Whose sign-in it is.
    pub user_id: String,
    /// The factors that complete it (those the account had when the
    /// password was checked).
    pub factors: Factors,
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
    /// The account has one or more: the session is half-open, waiting for
    /// one of them (ask for a code, then call
    /// [`SecondFactor::complete_with_totp`](super::SecondFactor::complete_with_totp) or
    /// [`SecondFactor::complete_with_recovery_code`](super::SecondFactor::complete_with_recovery_code);
    /// or offer the passkey ceremony of
    /// [`Passkeys::start_second_factor`](crate::auth::Passkeys::start_second_factor)).
    SecondFactorDue(Factors),
}

/// The session value of a half-open sign-in.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct PendingValue {
    pub(super) user: String,
    /// The factors that complete it ([`Factors::encode`]).
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
pub struct RecoveryCodes(pub(crate) Vec<String>);

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
