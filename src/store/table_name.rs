//! A validated SQL table name: the only text ever formatted into keycard's SQL.

use std::fmt;

use super::StoreError;

/// The name of the sessions table, checked to be a plain identifier
/// (ASCII letters, digits and `_`, not starting with a digit, at most 48
/// bytes, which leaves room for the `_api_tokens` and `_migrations` tables
/// named after it within PostgreSQL's 63), so it can be formatted into SQL
/// safely.
///
/// ```
/// use keycard::store::TableName;
///
/// assert!(TableName::new("app_sessions").is_ok());
/// assert!(TableName::new("sessions; DROP TABLE users").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName(String);

impl TableName {
    /// Checks `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, StoreError> {
        let valid = !name.is_empty()
            && name.len() <= 48
            && !name.as_bytes()[0].is_ascii_digit()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(StoreError::InvalidTableName(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TableName {
    /// `keycard_sessions`.
    fn default() -> Self {
        Self("keycard_sessions".to_owned())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_pass() {
        for good in ["s", "_s", "keycard_sessions", "S2", &"a".repeat(48)] {
            assert!(TableName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1s",
            "a-b",
            "a b",
            "a;b",
            "\"a\"",
            "a.b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(TableName::new(bad).is_err(), "{bad}");
        }
    }
}
