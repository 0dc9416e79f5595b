//! What the SQL stores share: their statements, formatted once with the
//! table name, and the checks that turn a raw row into a [`SessionRecord`].

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, SqlSafeStr as _, SqlStr};

use super::{SessionData, SessionFields, SessionRecord, StoreError, TableName};
use crate::token::{SessionId, TokenHash};

/// The columns every `SELECT` reads, in the order [`RawRow`] names them.
pub(crate) const COLUMNS: &str = "id, version, token_hash, user_id, ip_address, is_api, \
    auth_method, authenticated_at, persistent, created_at, last_activity, data";

/// One backend's SQL, with `{table}` where the table name goes and the
/// backend's own placeholders.
pub(crate) struct StatementTexts {
    pub(crate) load: &'static str,
    /// `load` taking a row write lock inside a transaction.
    pub(crate) load_for_update: &'static str,
    pub(crate) insert: &'static str,
    pub(crate) update: &'static str,
    pub(crate) touch: &'static str,
    pub(crate) delete: &'static str,
    pub(crate) delete_expired: &'static str,
    pub(crate) count_active_since: &'static str,
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
    pub(crate) touch: SqlStr,
    pub(crate) delete: SqlStr,
    pub(crate) delete_expired: SqlStr,
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
            touch: render(texts.touch),
            delete: render(texts.delete),
            delete_expired: render(texts.delete_expired),
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

/// A count from the database as `u64`.
pub(crate) fn count(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or(0)
}
