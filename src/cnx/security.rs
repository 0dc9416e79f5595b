//! Read and write security, and PostgreSQL row-level security.

/// Whether a connection's reads and writes are subject to security. Both
/// are on for a user
/// connection and off for an internal one.
///
/// On PostgreSQL with [`RowSecurity`] configured, the two flags reach the
/// database as the settings `<prefix>.read_security` and
/// `<prefix>.write_security` (`'on'` or `'off'`), for the application's
/// policies to consult; on every database the application's own checks can
/// read them with [`Cnx::security`](super::Cnx::security).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Security {
    /// Reads are checked.
    pub read: bool,
    /// Writes are checked.
    pub write: bool,
}

impl Security {
    /// Both on: a user connection.
    pub const ON: Self = Self {
        read: true,
        write: true,
    };
    /// Both off: an internal connection.
    pub const OFF: Self = Self {
        read: false,
        write: false,
    };
}

/// PostgreSQL row-level security for user connections: each transaction
/// tells the database who the signed-in user is, so that the application's
/// `CREATE POLICY` rules apply to everything the handler runs.
///
/// Every transaction of a user connection runs, inside the transaction
/// (so nothing outlives it on a pooled connection):
///
/// ```sql
/// SELECT set_config('keycard.user_id', '<user id, or empty>', true),
///        set_config('keycard.read_security', 'on', true),
///        set_config('keycard.write_security', 'on', true);
/// SET LOCAL ROLE "<role>";   -- only with `.role(...)`
/// ```
///
/// An internal connection ([`CnxLayer::internal`](super::CnxLayer::internal))
/// sets no user, both flags `'off'`, and keeps the pool's own role. A policy
/// then reads:
///
/// ```sql
/// CREATE POLICY own_notes ON notes
///     USING (owner = current_setting('keycard.user_id', true)
///            OR current_setting('keycard.read_security', true) = 'off')
///     WITH CHECK (owner = current_setting('keycard.user_id', true)
///            OR current_setting('keycard.write_security', true) = 'off');
/// ```
///
/// With row security on, reads too run in the request's transaction (the
/// settings are transaction-local), so the first query of a request begins it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSecurity {
    prefix: String,
    role: Option<String>,
}

impl Default for RowSecurity {
    fn default() -> Self {
        Self {
            prefix: "keycard".to_owned(),
            role: None,
        }
    }
}

impl RowSecurity {
    /// The settings `keycard.user_id`, `keycard.read_security` and
    /// `keycard.write_security`; no role switch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the settings `<prefix>.user_id`, … instead.
    ///
    /// # Panics
    ///
    /// If `prefix` is not 1 to 48 ASCII lower-case letters, digits or `_`,
    /// starting with a letter: a configuration mistake, reported at start-up.
    pub fn prefix(mut self, prefix: &str) -> Self {
        assert!(
            is_identifier(prefix, char::is_ascii_lowercase, char::is_ascii_lowercase),
            "RowSecurity::prefix: {prefix:?} is not 1 to 48 lower-case ASCII letters, \
             digits or `_`, starting with a letter"
        );
        self.prefix = prefix.to_owned();
        self
    }

    /// User connections also `SET LOCAL ROLE` to this role (one without
    /// `BYPASSRLS`, so that the policies apply even when the pool logs in as
    /// the tables' owner). That role needs no rights on keycard's tables:
    /// with a role switch, the session's own writes run on the pool's role,
    /// outside the request's transaction.
    ///
    /// # Panics
    ///
    /// If `role` is not 1 to 48 ASCII letters, digits or `_`, starting with
    /// a letter: a configuration mistake, reported at start-up.
    pub fn role(mut self, role: &str) -> Self {
        assert!(
            is_identifier(role, char::is_ascii_alphabetic, char::is_ascii_alphanumeric),
            "RowSecurity::role: {role:?} is not 1 to 48 ASCII letters, digits or `_`, \
             starting with a letter"
        );
        self.role = Some(role.to_owned());
        self
    }

    pub(crate) fn has_role(&self) -> bool {
        self.role.is_some()
    }

    /// What a transaction sets for `user_id` with `security`.
    pub(crate) fn applied(
        &self,
        user_id: Option<String>,
        security: Security,
        internal: bool,
    ) -> Applied {
        Applied {
            user_setting: format!("{}.user_id", self.prefix),
            read_setting: format!("{}.read_security", self.prefix),
            write_setting: format!("{}.write_security", self.prefix),
            user_id,
            read: security.read,
            write: security.write,
            role: if internal { None } else { self.role.clone() },
        }
    }
}

/// 1 to 48 characters, the first `first`, the rest `rest` or ASCII digits
/// or `_`.
fn is_identifier(text: &str, first: fn(&char) -> bool, rest: fn(&char) -> bool) -> bool {
    let mut chars = text.chars();
    text.len() <= 48
        && chars.next().is_some_and(|c| first(&c))
        && chars.all(|c| rest(&c) || c.is_ascii_digit() || c == '_')
}

/// The settings one transaction applies.
#[derive(Clone, Debug)]
// Read by PostgreSQL's `apply_security` only.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub struct Applied {
    pub(crate) user_setting: String,
    pub(crate) read_setting: String,
    pub(crate) write_setting: String,
    pub(crate) user_id: Option<String>,
    pub(crate) read: bool,
    pub(crate) write: bool,
    pub(crate) role: Option<String>,
}
