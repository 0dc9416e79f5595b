//! Rows of every backend as keycard's records, and records as statement
//! parameters.

use super::backend::{Arg, Io};
use chrono::{DateTime, Utc};

use super::statements::{col, token_col, user_col};
use crate::store::{
    ApiTokenRecord, OneTimeToken, PasskeyRecord, RememberedDevice, SessionFields, SessionRecord,
    StoreError, TotpRecord, UserRecord,
};
use crate::token::{SessionId, TokenHash};

/// A session row as a record; a column of the wrong type or shape is
/// [`StoreError::Corrupt`], like a value keycard never writes.
pub(crate) fn session<DB: Io>(row: &DB::Row) -> Result<SessionRecord, StoreError> {
    session_columns::<DB>(row).map_err(|error| match error {
        StoreError::Database(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => {
            StoreError::Corrupt {
                id: DB::int(row, col::ID).unwrap_or(0),
                what: "a column does not decode as its type",
            }
        }
        other => other,
    })
}

fn session_columns<DB: Io>(row: &DB::Row) -> Result<SessionRecord, StoreError> {
    let id = DB::int(row, col::ID)?;
    let required = |column: usize| {
        DB::time(row, column)?.ok_or(StoreError::Corrupt {
            id,
            what: "a required timestamp is missing",
        })
    };
    RawRow {
        id,
        version: DB::int(row, col::VERSION)?,
        token_hash: DB::bytes(row, col::TOKEN_HASH)?,
        user_id: DB::opt_text(row, col::USER_ID)?,
        ip_address: DB::opt_text(row, col::IP_ADDRESS)?,
        is_api: DB::boolean(row, col::IS_API)?,
        auth_method: DB::opt_text(row, col::AUTH_METHOD)?,
        authenticated_at: DB::time(row, col::AUTHENTICATED_AT)?,
        persistent: DB::boolean(row, col::PERSISTENT)?,
        created_at: required(col::CREATED_AT)?,
        last_activity: required(col::LAST_ACTIVITY)?,
        data: DB::text(row, col::DATA)?,
        auth_version: DB::opt_int(row, col::AUTH_VERSION)?,
        credential: DB::opt_text(row, col::CREDENTIAL_ID)?,
        device: DB::opt_text(row, col::DEVICE)?,
    }
    .into_record()
}

/// The parameters of `SessionFields`, in the order both the insert and the
/// update statement list the columns.
pub(crate) fn field_args<'a>(f: &'a SessionFields, data: &'a str) -> [Arg<'a>; 13] {
    [
        Arg::Bytes(f.token_hash.as_bytes().as_slice()),
        Arg::Text(f.user_id.as_deref()),
        Arg::Text(f.ip_address.as_deref()),
        Arg::Bool(f.is_api),
        Arg::Text(f.auth_method.as_deref()),
        Arg::Time(f.authenticated_at),
        Arg::Bool(f.persistent),
        Arg::Time(Some(f.created_at)),
        Arg::Time(Some(f.last_activity)),
        Arg::Text(Some(data)),
        Arg::OptInt(f.auth_version),
        Arg::Text(f.credential.as_deref()),
        Arg::Text(f.device.as_deref()),
    ]
}

/// An account row.
pub(crate) fn user<DB: Io>(row: &DB::Row) -> Result<UserRecord, StoreError> {
    let failures = DB::int(row, user_col::FAILURES)?;
    Ok(UserRecord {
        username: DB::text(row, user_col::USERNAME)?,
        display_name: DB::text(row, user_col::DISPLAY_NAME)?,
        password_hash: DB::text(row, user_col::PASSWORD_HASH)?,
        disabled: DB::boolean(row, user_col::DISABLED)?,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        locked_until: DB::time(row, user_col::LOCKED_UNTIL)?,
        created_at: DB::time(row, user_col::CREATED_AT)?.ok_or(StoreError::Corrupt {
            id: 0,
            what: "an account has no `created_at`",
        })?,
        credential_version: DB::int(row, user_col::CREDENTIAL_VERSION)?,
    })
}

/// An API token row.
pub(crate) fn token<DB: Io>(row: &DB::Row) -> Result<ApiTokenRecord, StoreError> {
    let id = DB::int(row, token_col::ID)?;
    Ok(ApiTokenRecord {
        id,
        user_id: DB::text(row, token_col::USER_ID)?,
        name: DB::text(row, token_col::NAME)?,
        created_at: DB::time(row, token_col::CREATED_AT)?.ok_or(StoreError::Corrupt {
            id,
            what: "an API token has no `created_at`",
        })?,
        last_used_at: DB::time(row, token_col::LAST_USED_AT)?,
    })
}

/// A row as the database types it, before keycard's checks.
struct RawRow {
    id: i64,
    version: i64,
    token_hash: Vec<u8>,
    user_id: Option<String>,
    ip_address: Option<String>,
    is_api: bool,
    auth_method: Option<String>,
    authenticated_at: Option<DateTime<Utc>>,
    persistent: bool,
    created_at: DateTime<Utc>,
    last_activity: DateTime<Utc>,
    data: String,
    auth_version: Option<i64>,
    credential: Option<String>,
    device: Option<String>,
}

impl RawRow {
    /// Checks what the database cannot (key range, hash length, JSON).
    fn into_record(self) -> Result<SessionRecord, StoreError> {
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
                device: self.device,
            },
        })
    }
}

/// A one-time token row (its [`ONE_TIME_COLUMNS`](super::statements::ONE_TIME_COLUMNS)),
/// for the token of `hash`.
pub(crate) fn one_time<DB: Io>(
    row: &DB::Row,
    hash: &TokenHash,
) -> Result<OneTimeToken, StoreError> {
    let required = |column: usize| {
        DB::time(row, column)?.ok_or(StoreError::Corrupt {
            id: 0,
            what: "a one-time token has no timestamp",
        })
    };
    Ok(OneTimeToken::new(
        *hash,
        DB::text(row, 0)?,
        DB::text(row, 1)?,
        DB::int(row, 2)?,
        required(3)?,
        required(4)?,
    ))
}

/// A remembered device's row (its [`REMEMBER_COLUMNS`](super::statements::REMEMBER_COLUMNS)).
pub(crate) fn remembered<DB: Io>(row: &DB::Row) -> Result<RememberedDevice, StoreError> {
    let id = DB::int(row, 0)?;
    let corrupt = |what| StoreError::Corrupt { id, what };
    let hash = |bytes: Vec<u8>| {
        TokenHash::from_slice(&bytes).ok_or_else(|| corrupt("a remember-me hash is not 32 bytes"))
    };
    let required = |column: usize| {
        DB::time(row, column)?.ok_or_else(|| corrupt("a remembered device has no timestamp"))
    };
    Ok(RememberedDevice {
        id,
        series_hash: hash(DB::bytes(row, 1)?)?,
        token_hash: hash(DB::bytes(row, 2)?)?,
        previous_hash: DB::opt_bytes(row, 3)?.map(hash).transpose()?,
        rotated_at: DB::time(row, 4)?,
        user_id: DB::text(row, 5)?,
        credential_version: DB::int(row, 6)?,
        created_at: required(7)?,
        last_used_at: required(8)?,
        expires_at: required(9)?,
        device: DB::opt_text(row, 10)?,
    })
}

/// A TOTP enrolment row (its [`TOTP_COLUMNS`](super::statements::TOTP_COLUMNS)).
pub(crate) fn totp<DB: Io>(row: &DB::Row) -> Result<TotpRecord, StoreError> {
    let mut record = TotpRecord::new(
        DB::text(row, 0)?,
        DB::bytes(row, 1)?,
        DB::time(row, 2)?.ok_or(StoreError::Corrupt {
            id: 0,
            what: "a TOTP enrolment has no `created_at`",
        })?,
    );
    record.confirmed_at = DB::time(row, 3)?;
    record.last_step = DB::opt_int(row, 4)?;
    Ok(record)
}

/// A passkey row (its [`PASSKEY_COLUMNS`](super::statements::PASSKEY_COLUMNS)).
pub(crate) fn passkey<DB: Io>(row: &DB::Row) -> Result<PasskeyRecord, StoreError> {
    let id = DB::int(row, 0)?;
    let mut record = PasskeyRecord::new(
        DB::text(row, 1)?,
        DB::bytes(row, 2)?,
        DB::bytes(row, 3)?,
        DB::text(row, 4)?,
        DB::text(row, 8)?,
        DB::time(row, 9)?.ok_or(StoreError::Corrupt {
            id,
            what: "a passkey has no `created_at`",
        })?,
    );
    record.id = id;
    record.sign_count = DB::int(row, 5)?;
    record.backup_eligible = DB::boolean(row, 6)?;
    record.backup_state = DB::boolean(row, 7)?;
    record.last_used_at = DB::time(row, 10)?;
    Ok(record)
}

/// A recovery code's hash (the one column of `unused_recovery_codes`).
pub(crate) fn code_hash<DB: Io>(row: &DB::Row) -> Result<TokenHash, StoreError> {
    TokenHash::from_slice(&DB::bytes(row, 0)?).ok_or(StoreError::Corrupt {
        id: 0,
        what: "a recovery code's `code_hash` is not 32 bytes",
    })
}
