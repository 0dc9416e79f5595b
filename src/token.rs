//! Session ids and tokens: generation, hashing, comparison and cookie parsing.
//!
//! A session is named by two values that travel in two cookies:
//!
//! * the [`SessionId`], a positive 64-bit integer the store assigns. It is
//!   **not secret**: it only says which row to load, so the lookup is one
//!   primary-key read.
//! * the [`SessionToken`], 256 bits from the operating system's CSPRNG,
//!   base64url without padding (43 characters). It is the secret. The store
//!   keeps only its SHA-256 ([`TokenHash`]), which is compared in constant
//!   time.
//!
//! Parsing is strict on purpose: anything that is not exactly what keycard
//! writes is treated as "no cookie" before any store query is made.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Number of random bytes in a token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Length of a token in its base64url form, without padding.
const TOKEN_CHARS: usize = 43;

/// The store-assigned key of a session row: a positive 64-bit integer.
///
/// Not a secret. Its text form is plain decimal with no sign, no leading
/// zeros and no spaces; anything else fails to parse.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct SessionId(i64);

impl TryFrom<i64> for SessionId {
    type Error = ParseError;

    /// A positive key; zero or negative is [`ParseError::InvalidId`].
    fn try_from(value: i64) -> Result<Self, ParseError> {
        Self::new(value).ok_or(ParseError::InvalidId)
    }
}

impl From<SessionId> for i64 {
    fn from(id: SessionId) -> Self {
        id.0
    }
}

impl SessionId {
    /// Wraps a store-assigned key. Returns `None` for zero or a negative value.
    pub fn new(value: i64) -> Option<Self> {
        (value > 0).then_some(Self(value))
    }

    /// The integer key, as stored.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a cookie value was not accepted as a [`SessionId`] or [`SessionToken`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The id is not a positive decimal integer in canonical form.
    #[error("session id is not a positive decimal integer without sign or leading zeros")]
    InvalidId,
    /// The token is not 43 characters of canonical base64url.
    #[error("session token is not 43 characters of canonical base64url")]
    InvalidToken,
}

impl FromStr for SessionId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        // `i64::from_str` accepts a leading `+`; a canonical id never has one,
        // nor a leading zero, so check the shape before converting.
        let canonical = matches!(bytes.first(), Some(b'1'..=b'9'))
            && bytes.len() <= 19
            && bytes.iter().all(u8::is_ascii_digit);
        if !canonical {
            return Err(ParseError::InvalidId);
        }
        s.parse::<i64>()
            .ok()
            .and_then(Self::new)
            .ok_or(ParseError::InvalidId)
    }
}

/// The secret half of a session cookie: 256 random bits.
///
/// Its `Debug` output is redacted and it has no `Display`: the only way to
/// get the text is [`SessionToken::expose`], so it cannot end up in a log by
/// accident. Use [`SessionToken::hash`] and [`TokenHash::fingerprint`] to
/// name it in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken([u8; TOKEN_BYTES]);

impl SessionToken {
    /// Draws a fresh token from the operating system's CSPRNG.
    ///
    /// Fails only if the operating system cannot supply randomness, which a
    /// session library must not paper over.
    pub fn generate() -> Result<Self, rand::rngs::SysError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::SysRng.try_fill_bytes(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The SHA-256 of the token, which is all the store ever sees.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0).into())
    }

    /// The cookie form of the token: 43 characters of base64url, no padding.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The synchronizer (anti-CSRF) token of the session this token opens:
    /// a one-way function of it, so it dies with every rotation and tells
    /// nothing of the session token if a page leaks it.
    pub fn csrf_token(&self) -> CsrfToken {
        let mut hasher = Sha256::new();
        hasher.update(b"keycard csrf token v1\0");
        hasher.update(self.0);
        CsrfToken(URL_SAFE_NO_PAD.encode(hasher.finalize()))
    }
}

/// A session's synchronizer token, for forms and scripts to send back with
/// unsafe requests (see [`Session::csrf_token`](crate::Session::csrf_token)
/// and the [`csrf`](crate::csrf) module). Its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct CsrfToken(String);

impl CsrfToken {
    /// The token's text (43 characters of base64url), to put in a hidden
    /// form field or a request header.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfToken(<redacted>)")
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionToken(<redacted; {}>)", self.hash().fingerprint())
    }
}

impl FromStr for SessionToken {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != TOKEN_CHARS {
            return Err(ParseError::InvalidToken);
        }
        // The engine rejects padding, other alphabets and non-zero trailing
        // bits, so exactly one text maps to each token.
        let mut bytes = [0u8; TOKEN_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) {
            Ok(TOKEN_BYTES) => Ok(Self(bytes)),
            _ => Err(ParseError::InvalidToken),
        }
    }
}

/// The secret of an API token (after its `kc_` prefix): 256 random bits,
/// like a [`SessionToken`] but never one, so that neither can be passed
/// where the other is meant. Only its [`hash`](Self::hash) is stored; its
/// `Debug` output is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiTokenSecret(SessionToken);

impl ApiTokenSecret {
    /// Draws a fresh secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, rand::rngs::SysError> {
        SessionToken::generate().map(Self)
    }

    /// The SHA-256 of the secret, which is all the store ever sees.
    pub fn hash(&self) -> TokenHash {
        self.0.hash()
    }

    /// The secret's text: 43 characters of base64url, no padding.
    pub fn expose(&self) -> String {
        self.0.expose()
    }
}

impl fmt::Debug for ApiTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ApiTokenSecret(<redacted; {}>)",
            self.hash().fingerprint()
        )
    }
}

impl FromStr for ApiTokenSecret {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// SHA-256 of a [`SessionToken`] (or an [`ApiTokenSecret`]), as kept in the
/// store's `token_hash` column.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Stands in for the hash of a session that has no token yet; no token
    /// hashes to it in practice, and it is never stored.
    pub(crate) const UNSET: TokenHash = TokenHash([0; 32]);

    /// Wraps 32 bytes read from the store; `None` if the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The raw 32 bytes, for binding into a query.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Compares two hashes in constant time.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The first 4 bytes in hex: enough to tell sessions apart in a log, far
    /// too little to help anyone guess a token.
    pub fn fingerprint(&self) -> String {
        self.0[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_serialize_as_numbers_and_refuse_non_positive_ones() {
        let id = SessionId::new(42).expect("id");
        assert_eq!(serde_json::to_string(&id).expect("json"), "42");
        assert_eq!(serde_json::from_str::<SessionId>("42").expect("id"), id);
        assert!(serde_json::from_str::<SessionId>("0").is_err());
        assert!(serde_json::from_str::<SessionId>("-7").is_err());
        assert!(serde_json::from_str::<SessionId>("\"42\"").is_err());
    }

    #[test]
    fn ids_parse_only_in_canonical_form() {
        assert_eq!("1".parse(), Ok(SessionId(1)));
        assert_eq!("9223372036854775807".parse(), Ok(SessionId(i64::MAX)));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "01",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "9223372036854775808",
            "99999999999999999999",
            "١",
        ] {
            assert_eq!(
                bad.parse::<SessionId>(),
                Err(ParseError::InvalidId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_everything_else() {
        let token = SessionToken::generate().expect("OS randomness");
        let text = token.expose();
        assert_eq!(text.len(), TOKEN_CHARS);
        assert_eq!(text.parse::<SessionToken>(), Ok(token.clone()));

        let mut non_canonical = text.clone();
        // The last character carries 4 unused bits; setting one of them must
        // be rejected, not silently decoded to the same token.
        let last = non_canonical.pop().expect("non-empty");
        let idx = base64_index(last);
        non_canonical.push(base64_char(idx ^ 1));
        let too_long = format!("{text}A");
        let padded = format!("{text}=");
        let standard_alphabet = text.replace('-', "+").replace('_', "/");
        let mut wrong_alphabet = text[..42].to_string();
        wrong_alphabet.push('+');
        for bad in [
            "",
            &text[..42],
            &too_long,
            &padded,
            &non_canonical,
            &wrong_alphabet,
            "ééééééééééééééééééééé.",
        ] {
            assert!(bad.parse::<SessionToken>().is_err(), "{bad:?}");
        }
        if standard_alphabet != text {
            assert!(standard_alphabet.parse::<SessionToken>().is_err());
        }
    }

    #[test]
    fn tokens_are_distinct_and_hashes_compare() {
        let a = SessionToken::generate().expect("OS randomness");
        let b = SessionToken::generate().expect("OS randomness");
        assert_ne!(a, b);
        assert!(a.hash().ct_eq(&a.hash()));
        assert!(!a.hash().ct_eq(&b.hash()));
        assert_eq!(a.hash().fingerprint().len(), 8);
        assert!(!format!("{a:?}").contains(&a.expose()));
    }

    fn base64_index(c: char) -> u8 {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        ALPHABET
            .iter()
            .position(|&a| a == c as u8)
            .expect("base64url char") as u8
    }

    fn base64_char(i: u8) -> char {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        ALPHABET[i as usize] as char
    }
}
