//! Each backend's SQL text, formatted once with the table name, and the
//! checks that turn a raw row into a [`SessionRecord`].

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, SqlSafeStr as _, SqlStr};

use crate::store::{SessionData, SessionFields, SessionRecord, StoreError, TableName};
use crate::token::{SessionId, TokenHash};

/// The columns every `SELECT` reads, in the order [`RawRow`] names them
/// and [`col`] numbers them.
pub(crate) const COLUMNS: &str = "id, version, token_hash, user_id, ip_address, is_api, \
    auth_method, authenticated_at, persistent, created_at, last_activity, data, auth_version, \
    credential_id";

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
}

/// One backend's SQL, with `{table}` where the table name goes and the
/// backend's own placeholders.
pub(crate) struct StatementTexts {
    pub(crate) load: &'static str,
    /// `load` taking a row write lock inside a transaction.
    pub(crate) load_for_update: &'static str,
    pub(crate) insert: &'static str,
    pub(crate) update: &'static str,
    /// `update` of the values and `last_activity` only.
    pub(crate) update_data: &'static str,
    /// `update` of the values only.
    pub(crate) update_values: &'static str,
    pub(crate) touch: &'static str,
    pub(crate) delete: &'static str,
    pub(crate) delete_expired: &'static str,
    pub(crate) delete_excess_for_user: &'static str,
    pub(crate) delete_user_only: &'static str,
    pub(crate) delete_user_except: &'static str,
    pub(crate) delete_user_all: &'static str,
    pub(crate) delete_all: &'static str,
    pub(crate) list_for_user: &'static str,
    pub(crate) count_active_since: &'static str,
}

/// One backend's SQL for accounts and API tokens ([`UserStore`](super::UserStore)).
pub(crate) struct UserStatementTexts {
    pub(crate) create_user: &'static str,
    pub(crate) find_user: &'static str,
    /// `find_user` taking the row's write lock inside a transaction.
    pub(crate) find_user_for_update: &'static str,
    pub(crate) set_password_hash: &'static str,
    pub(crate) set_disabled: &'static str,
    pub(crate) write_failures: &'static str,
    pub(crate) clear_failures: &'static str,
    pub(crate) insert_api_token: &'static str,
    pub(crate) find_api_token: &'static str,
    pub(crate) touch_api_token: &'static str,
    pub(crate) list_api_tokens: &'static str,
    pub(crate) delete_api_token: &'static str,
}

/// The columns of `<table>_users` every `SELECT` reads.
pub(crate) const USER_COLUMNS: &str = "username, display_name, password_hash, disabled, failures, locked_until, created_at, \
    credential_version";
/// The columns of `<table>_api_tokens` every `SELECT` reads.
pub(crate) const TOKEN_COLUMNS: &str = "id, user_id, name, created_at, last_used_at";

/// [`UserStatementTexts`] with the table name in place.
#[derive(Debug)]
pub(crate) struct UserStatements {
    pub(crate) create_user: SqlStr,
    pub(crate) find_user: SqlStr,
    pub(crate) find_user_for_update: SqlStr,
    pub(crate) set_password_hash: SqlStr,
    pub(crate) set_disabled: SqlStr,
    pub(crate) write_failures: SqlStr,
    pub(crate) clear_failures: SqlStr,
    pub(crate) insert_api_token: SqlStr,
    pub(crate) find_api_token: SqlStr,
    pub(crate) touch_api_token: SqlStr,
    pub(crate) list_api_tokens: SqlStr,
    pub(crate) delete_api_token: SqlStr,
}

impl UserStatements {
    pub(crate) fn new(texts: &UserStatementTexts, table: &TableName) -> Self {
        let render = |text: &str| {
            AssertSqlSafe(
                text.replace("{user_columns}", USER_COLUMNS)
                    .replace("{token_columns}", TOKEN_COLUMNS)
                    .replace("{table}", table.as_str()),
            )
            .into_sql_str()
        };
        Self {
            create_user: render(texts.create_user),
            find_user: render(texts.find_user),
            find_user_for_update: render(texts.find_user_for_update),
            set_password_hash: render(texts.set_password_hash),
            set_disabled: render(texts.set_disabled),
            write_failures: render(texts.write_failures),
            clear_failures: render(texts.clear_failures),
            insert_api_token: render(texts.insert_api_token),
            find_api_token: render(texts.find_api_token),
            touch_api_token: render(texts.touch_api_token),
            list_api_tokens: render(texts.list_api_tokens),
            delete_api_token: render(texts.delete_api_token),
        }
    }
}

/// Whether the database refused a row because a unique key is taken.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// [`StatementTexts`] with the table name in place. sqlx caches each
/// prepared statement per connection by its text, so these are prepared once
/// per connection.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) load: SqlStr,
    pub(crate) load_for_update: SqlStr,
    pub(crate) insert: SqlStr,
    pub(crate) update: SqlStr,
    pub(crate) update_data: SqlStr,
    pub(crate) update_values: SqlStr,
    pub(crate) touch: SqlStr,
    pub(crate) delete: SqlStr,
    pub(crate) delete_expired: SqlStr,
    pub(crate) delete_excess_for_user: SqlStr,
    pub(crate) delete_user_only: SqlStr,
    pub(crate) delete_user_except: SqlStr,
    pub(crate) delete_user_all: SqlStr,
    pub(crate) delete_all: SqlStr,
    pub(crate) list_for_user: SqlStr,
    pub(crate) count_active_since: SqlStr,
}

impl Statements {
    pub(crate) fn new(texts: &StatementTexts, table: &TableName) -> Self {
        // The table name is the only text ever formatted into SQL, and it is
        // a validated identifier; every value is a bound parameter.
        let render = |text: &str| {
            AssertSqlSafe(
                text.replace("{columns}", COLUMNS)
                    .replace("{table}", table.as_str()),
            )
            .into_sql_str()
        };
        Self {
            load: render(texts.load),
            load_for_update: render(texts.load_for_update),
            insert: render(texts.insert),
            update: render(texts.update),
            update_data: render(texts.update_data),
            update_values: render(texts.update_values),
            touch: render(texts.touch),
            delete: render(texts.delete),
            delete_expired: render(texts.delete_expired),
            delete_excess_for_user: render(texts.delete_excess_for_user),
            delete_user_only: render(texts.delete_user_only),
            delete_user_except: render(texts.delete_user_except),
            delete_user_all: render(texts.delete_user_all),
            delete_all: render(texts.delete_all),
            list_for_user: render(texts.list_for_user),
            count_active_since: render(texts.count_active_since),
        }
    }
}

/// A row as the database types it, before keycard's checks.
pub(crate) struct RawRow {
    pub(crate) id: i64,
    pub(crate) version: i64,
    pub(crate) token_hash: Vec<u8>,
    pub(crate) user_id: Option<String>,
    pub(crate) ip_address: Option<String>,
    pub(crate) is_api: bool,
    pub(crate) auth_method: Option<String>,
    pub(crate) authenticated_at: Option<DateTime<Utc>>,
    pub(crate) persistent: bool,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) last_activity: DateTime<Utc>,
    pub(crate) data: String,
    pub(crate) auth_version: Option<i64>,
    pub(crate) credential: Option<String>,
}

impl RawRow {
    /// Checks what the database cannot (key range, hash length, JSON).
    pub(crate) fn into_record(self) -> Result<SessionRecord, StoreError> {
        let raw_id = self.id;
        let corrupt = |what| StoreError::Corrupt { id: raw_id, what };
        Ok(SessionRecord {
            id: SessionId::new(raw_id).ok_or_else(|| corrupt("`id` is not positive"))?,
            version: self.version,
            fields: SessionFields {
                token_hash: TokenHash::from_slice(&self.token_hash)
                    .ok_or_else(|| corrupt("`token_hash` is not 32 bytes"))?,
                user_id: self.user_id,
                ip_address: self.ip_address,
                is_api: self.is_api,
                auth_method: self.auth_method,
                authenticated_at: self.authenticated_at,
                persistent: self.persistent,
                created_at: self.created_at,
                last_activity: self.last_activity,
                data: serde_json::from_str(&self.data)
                    .map_err(|_| corrupt("`data` is not a JSON object"))?,
                auth_version: self.auth_version,
                credential: self.credential,
            },
        })
    }
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
pub(crate) fn returned_id<R: sqlx::Row>(rows: &[R]) -> Result<i64, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let row = rows.first().ok_or(StoreError::Corrupt {
        id: 0,
        what: "an insert returned no id",
    })?;
    Ok(row.try_get(0)?)
}

/// A count from the database as `u64`.
pub(crate) fn count(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or(0)
}
