//! Reading the codes users type, and drawing new secrets.

use sha2::{Digest as _, Sha256};

use crate::auth::AccountError;
use crate::token::TokenHash;

/// The digits of a TOTP code (the authenticator apps' default).
const DIGITS: usize = 6;
/// The characters of a recovery code, dashes left out.
pub(super) const RECOVERY_CHARS: usize = 12;
/// The alphabet of recovery codes: Crockford's base32 in lower case (no
/// `i`, `l`, `o` or `u`, which are read as other characters). 32 symbols,
/// so that a random byte's low five bits pick one uniformly.
pub(super) const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Longer input is refused before it is looked at.
const MAX_CODE_INPUT: usize = 64;

/// The 6 digits of a TOTP code as typed (spaces ignored); `None` for
/// anything else.
pub(super) fn digits_of(code: &str) -> Option<String> {
    if code.len() > MAX_CODE_INPUT {
        return None;
    }
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The stored hash of a recovery code as typed (dashes, spaces and case
/// ignored); `None` if it cannot be one.
pub(super) fn recovery_hash(code: &str) -> Option<TokenHash> {
    if code.len() > MAX_CODE_INPUT {
        return None;
    }
    let plain: String = code
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid =
        plain.len() == RECOVERY_CHARS && plain.bytes().all(|b| RECOVERY_ALPHABET.contains(&b));
    if !valid {
        return None;
    }
    let digest = Sha256::new()
        .chain_update(b"keycard recovery code\0")
        .chain_update(plain.as_bytes())
        .finalize();
    TokenHash::from_slice(&digest)
}

/// Fills `bytes` from the operating system's CSPRNG.
pub(crate) fn random_bytes(bytes: &mut [u8]) -> Result<(), AccountError> {
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, bytes)
        .map_err(|_| AccountError::Randomness)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::super::{RecoveryCodes, SECRET_BYTES};
    use super::*;
    use crate::store::TotpRecord;

    #[test]
    fn codes_are_read_leniently_and_refused_strictly() {
        assert_eq!(digits_of(" 123 456 ").as_deref(), Some("123456"));
        for bad in [
            "12345",
            "1234567",
            "abcdef",
            "12345６",
            "",
            &"1".repeat(10_000),
        ] {
            assert_eq!(digits_of(bad), None, "{bad:.10}");
        }
        let hash = recovery_hash("abcd-efgh-jkmn");
        assert!(hash.is_some());
        assert_eq!(recovery_hash(" ABCD EFGH JKMN"), hash);
        for bad in ["abcd-efgh-jkm", "abcd-efgh-jkmi", "", &"a".repeat(10_000)] {
            assert_eq!(recovery_hash(bad), None, "{bad:.10}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let record = TotpRecord::new("ada", vec![0xab; SECRET_BYTES], Utc::now());
        let debug = format!("{record:?}");
        assert!(debug.contains("ada") && !debug.contains("171"), "{debug}");
        let codes = RecoveryCodes(vec!["abcd-efgh-jkmn".to_owned()]);
        assert_eq!(format!("{codes:?}"), "RecoveryCodes(<1 redacted>)");
        let error = format!("{:?} {}", AccountError::WrongCode, AccountError::WrongCode);
        assert!(!error.chars().any(|c| c.is_ascii_digit()), "{error}");
    }
}
