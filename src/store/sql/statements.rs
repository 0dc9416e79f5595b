//! Each backend's SQL text, formatted once with the table name, and the
//! column lists and positions every `SELECT` shares.

use sqlx::{AssertSqlSafe, SqlSafeStr as _, SqlStr};

use crate::store::{SessionData, StoreError, TableName};
use crate::token::SessionId;

/// The columns every `SELECT` reads, in the order [`col`] numbers them.
pub(crate) const COLUMNS: &str = "id, version, token_hash, user_id, ip_address, is_api, \
    auth_method, authenticated_at, persistent, created_at, last_activity, data, auth_version, \
    credential_id, device";

/// The position of each of [`COLUMNS`] in a row: rows are decoded by
/// position, which spares a name lookup per column per row (measured: a
/// read request's 14 lookups by name were ~1,300 instructions).
pub(crate) mod col {
    pub(crate) const ID: usize = 0;
    pub(crate) const VERSION: usize = 1;
    pub(crate) const TOKEN_HASH: usize = 2;
    pub(crate) const USER_ID: usize = 3;
    pub(crate) const IP_ADDRESS: usize = 4;
    pub(crate) const IS_API: usize = 5;
    pub(crate) const AUTH_METHOD: usize = 6;
    pub(crate) const AUTHENTICATED_AT: usize = 7;
    pub(crate) const PERSISTENT: usize = 8;
    pub(crate) const CREATED_AT: usize = 9;
    pub(crate) const LAST_ACTIVITY: usize = 10;
    pub(crate) const DATA: usize = 11;
    pub(crate) const AUTH_VERSION: usize = 12;
    pub(crate) const CREDENTIAL_ID: usize = 13;
    pub(crate) const DEVICE: usize = 14;
}

/// One backend's session SQL: as written, with `{table}` where the table
/// name goes, `{columns}` for [`COLUMNS`] and the backend's own
/// placeholders (`SessionSql<&'static str>`), or rendered for one table
/// (`SessionSql<SqlStr>`). sqlx caches each prepared statement per
/// connection by its text, so the rendered ones are prepared once per
/// connection.
#[derive(Debug)]
pub(crate) struct SessionSql<S> {
    pub(crate) load: S,
    /// `load` taking a row write lock inside a transaction.
    pub(crate) load_for_update: S,
    pub(crate) insert: S,
    pub(crate) update: S,
    /// `update` of the values and `last_activity` only.
    pub(crate) update_data: S,
    /// `update` of the values only.
    pub(crate) update_values: S,
    pub(crate) touch: S,
    pub(crate) delete: S,
    pub(crate) delete_expired: S,
    pub(crate) delete_excess_for_user: S,
    pub(crate) delete_user_only: S,
    pub(crate) delete_user_except: S,
    pub(crate) delete_user_all: S,
    pub(crate) delete_all: S,
    pub(crate) list_for_user: S,
    pub(crate) count_active_since: S,
}

impl SessionSql<&'static str> {
    /// The statements for `table`.
    pub(crate) fn render(&self, table: &TableName) -> SessionSql<SqlStr> {
        let r = |text: &str| render(text, table);
        SessionSql {
            load: r(self.load),
            load_for_update: r(self.load_for_update),
            insert: r(self.insert),
            update: r(self.update),
            update_data: r(self.update_data),
            update_values: r(self.update_values),
            touch: r(self.touch),
            delete: r(self.delete),
            delete_expired: r(self.delete_expired),
            delete_excess_for_user: r(self.delete_excess_for_user),
            delete_user_only: r(self.delete_user_only),
            delete_user_except: r(self.delete_user_except),
            delete_user_all: r(self.delete_user_all),
            delete_all: r(self.delete_all),
            list_for_user: r(self.list_for_user),
            count_active_since: r(self.count_active_since),
        }
    }
}

/// One backend's SQL for accounts and API tokens
/// ([`UserStore`](super::super::UserStore)), like [`SessionSql`];
/// `{user_columns}` and `{token_columns}` stand for [`USER_COLUMNS`] and
/// [`TOKEN_COLUMNS`].
#[derive(Debug)]
pub(crate) struct UserSql<S> {
    pub(crate) create_user: S,
    pub(crate) find_user: S,
    /// `find_user` taking the row's write lock inside a transaction.
    pub(crate) find_user_for_update: S,
    pub(crate) set_password_hash: S,
    pub(crate) set_disabled: S,
    pub(crate) write_failures: S,
    pub(crate) clear_failures: S,
    pub(crate) insert_api_token: S,
    pub(crate) find_api_token: S,
    pub(crate) touch_api_token: S,
    pub(crate) list_api_tokens: S,
    pub(crate) delete_api_token: S,
    pub(crate) insert_one_time_token: S,
    /// An unused, unexpired one-time token of a purpose.
    pub(crate) find_one_time_token: S,
    /// Marks an unused, unexpired one-time token of a purpose used.
    pub(crate) use_one_time_token: S,
    /// A one-time token by its hash, used or not.
    pub(crate) read_one_time_token: S,
    pub(crate) delete_expired_one_time_tokens: S,
    pub(crate) insert_remembered: S,
    pub(crate) find_remembered: S,
    /// Replaces a remembered device's token, only if it is still the one
    /// the caller saw.
    pub(crate) rotate_remembered: S,
    pub(crate) list_remembered: S,
    pub(crate) delete_remembered: S,
    /// Deletes a user's remembered devices but one (id 0 keeps none).
    pub(crate) delete_remembered_of: S,
    pub(crate) delete_expired_remembered: S,
}

impl UserSql<&'static str> {
    /// The statements for `table`.
    pub(crate) fn render(&self, table: &TableName) -> UserSql<SqlStr> {
        let r = |text: &str| render(text, table);
        UserSql {
            create_user: r(self.create_user),
            find_user: r(self.find_user),
            find_user_for_update: r(self.find_user_for_update),
            set_password_hash: r(self.set_password_hash),
            set_disabled: r(self.set_disabled),
            write_failures: r(self.write_failures),
            clear_failures: r(self.clear_failures),
            insert_api_token: r(self.insert_api_token),
            find_api_token: r(self.find_api_token),
            touch_api_token: r(self.touch_api_token),
            list_api_tokens: r(self.list_api_tokens),
            delete_api_token: r(self.delete_api_token),
            insert_one_time_token: r(self.insert_one_time_token),
            find_one_time_token: r(self.find_one_time_token),
            use_one_time_token: r(self.use_one_time_token),
            read_one_time_token: r(self.read_one_time_token),
            delete_expired_one_time_tokens: r(self.delete_expired_one_time_tokens),
            insert_remembered: r(self.insert_remembered),
            find_remembered: r(self.find_remembered),
            rotate_remembered: r(self.rotate_remembered),
            list_remembered: r(self.list_remembered),
            delete_remembered: r(self.delete_remembered),
            delete_remembered_of: r(self.delete_remembered_of),
            delete_expired_remembered: r(self.delete_expired_remembered),
        }
    }
}

/// One backend's SQL for the factors beyond a password (`<table>_totp`,
/// `<table>_recovery_codes` and `<table>_passkeys`), like [`UserSql`];
/// `{totp_columns}` stands for [`TOTP_COLUMNS`], `{passkey_columns}` for
/// [`PASSKEY_COLUMNS`]. A struct of its own, so that it changes apart from
/// the account statements.
#[derive(Debug)]
pub(crate) struct FactorSql<S> {
    pub(crate) find_totp: S,
    /// Deletes an account's unconfirmed enrolment, before a new one.
    pub(crate) delete_unconfirmed_totp: S,
    pub(crate) insert_totp: S,
    /// Confirms an unconfirmed enrolment of a given secret.
    pub(crate) confirm_totp: S,
    /// Moves `last_step` forward, only forward.
    pub(crate) use_totp_step: S,
    pub(crate) delete_totp: S,
    pub(crate) delete_recovery_codes: S,
    pub(crate) insert_recovery_code: S,
    pub(crate) unused_recovery_codes: S,
    /// Marks an unused recovery code used.
    pub(crate) use_recovery_code: S,
    /// Inserts a passkey, returning its id where the backend can.
    pub(crate) insert_passkey: S,
    pub(crate) find_passkey: S,
    pub(crate) list_passkeys: S,
    /// Records a sign-in, only if the counter is the one read before it.
    pub(crate) use_passkey: S,
    pub(crate) delete_passkey: S,
}

impl FactorSql<&'static str> {
    /// The statements for `table`.
    pub(crate) fn render(&self, table: &TableName) -> FactorSql<SqlStr> {
        let r = |text: &str| render(text, table);
        FactorSql {
            find_totp: r(self.find_totp),
            delete_unconfirmed_totp: r(self.delete_unconfirmed_totp),
            insert_totp: r(self.insert_totp),
            confirm_totp: r(self.confirm_totp),
            use_totp_step: r(self.use_totp_step),
            delete_totp: r(self.delete_totp),
            delete_recovery_codes: r(self.delete_recovery_codes),
            insert_recovery_code: r(self.insert_recovery_code),
            unused_recovery_codes: r(self.unused_recovery_codes),
            use_recovery_code: r(self.use_recovery_code),
            insert_passkey: r(self.insert_passkey),
            find_passkey: r(self.find_passkey),
            list_passkeys: r(self.list_passkeys),
            use_passkey: r(self.use_passkey),
            delete_passkey: r(self.delete_passkey),
        }
    }
}

/// The columns of `<table>_totp` every `SELECT` reads, in the order
/// [`rows::totp`](super::rows) reads them.
pub(crate) const TOTP_COLUMNS: &str = "user_id, secret, created_at, confirmed_at, last_step";

/// The columns of `<table>_passkeys` every `SELECT` reads, in the order
/// [`rows::passkey`](super::rows) reads them.
pub(crate) const PASSKEY_COLUMNS: &str = "id, user_id, credential_id, user_handle, credential, \
    sign_count, backup_eligible, backup_state, label, created_at, last_used_at";

/// The statements of the migration runner, with `{book}` for the table
/// that records applied versions (`<table>_migrations`).
#[derive(Debug)]
pub(crate) struct MigrationSql<S> {
    /// Creates the book if it is missing.
    pub(crate) create_book: S,
    /// Selects a version from the book.
    pub(crate) find_version: S,
    /// Records a version and when it was applied.
    pub(crate) record_version: S,
}

/// The columns of `<table>_users` every `SELECT` reads, in the order
/// [`user_col`] numbers them.
pub(crate) const USER_COLUMNS: &str = "username, display_name, password_hash, disabled, \
    failures, locked_until, created_at, credential_version";

/// The position of each of [`USER_COLUMNS`].
pub(crate) mod user_col {
    pub(crate) const USERNAME: usize = 0;
    pub(crate) const DISPLAY_NAME: usize = 1;
    pub(crate) const PASSWORD_HASH: usize = 2;
    pub(crate) const DISABLED: usize = 3;
    pub(crate) const FAILURES: usize = 4;
    pub(crate) const LOCKED_UNTIL: usize = 5;
    pub(crate) const CREATED_AT: usize = 6;
    pub(crate) const CREDENTIAL_VERSION: usize = 7;
}

/// The columns of `<table>_one_time_tokens` every `SELECT` reads, in the
/// order [`rows::one_time`](super::rows) reads them: user, purpose,
/// credential version, created, expires.
pub(crate) const ONE_TIME_COLUMNS: &str =
    "user_id, purpose, credential_version, created_at, expires_at";

/// The columns of `<table>_remember` every `SELECT` reads, in the order
/// [`rows::remembered`](super::rows) reads them.
pub(crate) const REMEMBER_COLUMNS: &str = "id, series_hash, token_hash, previous_hash, \
    rotated_at, user_id, credential_version, created_at, last_used_at, expires_at, device";

/// The columns of `<table>_api_tokens` every `SELECT` reads, in the order
/// [`token_col`] numbers them.
pub(crate) const TOKEN_COLUMNS: &str = "id, user_id, name, created_at, last_used_at";

/// The position of each of [`TOKEN_COLUMNS`].
pub(crate) mod token_col {
    pub(crate) const ID: usize = 0;
    pub(crate) const USER_ID: usize = 1;
    pub(crate) const NAME: usize = 2;
    pub(crate) const CREATED_AT: usize = 3;
    pub(crate) const LAST_USED_AT: usize = 4;
}

/// `text` with the table name and column lists in place. The table name is
/// the only text ever formatted into SQL, and it is a validated
/// identifier; every value is a bound parameter.
pub(crate) fn render(text: &str, table: &TableName) -> SqlStr {
    AssertSqlSafe(
        text.replace("{columns}", COLUMNS)
            .replace("{user_columns}", USER_COLUMNS)
            .replace("{token_columns}", TOKEN_COLUMNS)
            .replace("{one_time_columns}", ONE_TIME_COLUMNS)
            .replace("{remember_columns}", REMEMBER_COLUMNS)
            .replace("{totp_columns}", TOTP_COLUMNS)
            .replace("{passkey_columns}", PASSKEY_COLUMNS)
            .replace("{table}", table.as_str()),
    )
    .into_sql_str()
}

/// Whether the database refused a row because a unique key is taken.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Encodes the `data` column.
pub(crate) fn encode_data(data: &SessionData) -> String {
    // A map of `Value`s always serialises: keys are strings, and `Value`
    // holds no non-finite floats.
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned())
}

/// The id a database assigned, checked.
pub(crate) fn assigned_id(raw: i64) -> Result<SessionId, StoreError> {
    SessionId::new(raw).ok_or(StoreError::Corrupt {
        id: raw,
        what: "the database assigned a non-positive `id`",
    })
}

/// The id an `INSERT … RETURNING id` returned, from all the rows it
/// returned: the statement is fetched to its end (`fetch_all`), never
/// dropped after its first row. An autocommit insert commits when it
/// completes, and one dropped early can lose the commit's error (a full or
/// read-only disk, a refused commit): the caller would hand out a cookie
/// for a row that was never stored.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn returned_id<DB: super::Io>(rows: &[DB::Row]) -> Result<i64, StoreError> {
    let row = rows.first().ok_or(StoreError::Corrupt {
        id: 0,
        what: "an insert returned no id",
    })?;
    Ok(DB::int(row, 0)?)
}

/// A count from the database as `u64`.
pub(crate) fn count(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or(0)
}
