//! What the SQL stores share: their statements, formatted once with the
//! table name, and the checks that turn a raw row into a [`SessionRecord`].

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, SqlSafeStr as _, SqlStr};

use super::{SessionData, SessionFields, SessionRecord, StoreError, TableName};
use crate::token::{SessionId, TokenHash};

/// A session store over an sqlx pool. Use it through its aliases,
/// [`SqliteStore`](crate::SqliteStore), [`PostgresStore`](super::PostgresStore)
/// and [`MySqlStore`](super::MySqlStore), as sqlx's `PgPool` is a `Pool<Postgres>`.
pub struct SqlStore<DB: sqlx::Database> {
    pub(crate) pool: sqlx::Pool<DB>,
    pub(crate) table: TableName,
    pub(crate) sql: std::sync::Arc<Statements>,
    pub(crate) users_sql: std::sync::Arc<UserStatements>,
}

impl<DB: sqlx::Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            sql: self.sql.clone(),
            users_sql: self.users_sql.clone(),
        }
    }
}

impl<DB: sqlx::Database> std::fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("database", &DB::NAME)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl<DB: sqlx::Database> SqlStore<DB> {
    /// A store on `pool` and `table`, with one backend's SQL.
    pub(crate) fn build(
        pool: sqlx::Pool<DB>,
        table: TableName,
        sql: &StatementTexts,
        users_sql: &UserStatementTexts,
    ) -> Self {
        Self {
            sql: std::sync::Arc::new(Statements::new(sql, &table)),
            users_sql: std::sync::Arc::new(UserStatements::new(users_sql, &table)),
            pool,
            table,
        }
    }

    /// The pool this store uses (the application may share it).
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    /// The sessions table; the accounts and API tokens tables are named
    /// after it (`<table>_users`, `<table>_api_tokens`).
    pub fn table_name(&self) -> &TableName {
        &self.table
    }
}

/// The columns every `SELECT` reads, in the order [`RawRow`] names them.
pub(crate) const COLUMNS: &str = "id, version, token_hash, user_id, ip_address, is_api, \
    auth_method, authenticated_at, persistent, created_at, last_activity, data, auth_version";

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
pub(crate) const USER_COLUMNS: &str =
    "username, display_name, password_hash, disabled, failures, locked_until, created_at";
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

/// How often a statement that lost a deadlock is tried again.
const DEADLOCK_ATTEMPTS: u32 = 8;

impl StoreError {
    /// A deadlock or serialisation failure: the database rolled the
    /// statement back, and running it again is safe and usually succeeds.
    pub(crate) fn is_transient(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(error)) = self else {
            return false;
        };
        // 40001: serialization failure (PostgreSQL; MySQL's deadlock 1213),
        // 40P01: PostgreSQL deadlock, 5 / 517: SQLite busy.
        matches!(
            error.code().as_deref(),
            Some("40001" | "40P01" | "5" | "517")
        )
    }
}

/// Runs `op`, again after a short random pause if it lost a deadlock (as
/// concurrent sign-ins of one user can on MySQL, whose range locks make a
/// ranked delete and an update of the same index wait for each other).
pub(crate) async fn retry_deadlocks<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(error) if error.is_transient() && attempt < DEADLOCK_ATTEMPTS => {
                tracing::debug!(%error, attempt, "keycard: retrying after a deadlock");
                deadlock_pause(attempt).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Up to `attempt` milliseconds, at random, so that the transactions that
/// collided do not collide again in step.
pub(crate) async fn deadlock_pause(attempt: u32) {
    let mut byte = [0u8; 1];
    let random = rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut byte)
        .map(|()| u64::from(byte[0]))
        .unwrap_or(128);
    let micros = random * u64::from(attempt) * 1000 / 256;
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}

/// The parts of a SQL store that differ between backends only in types:
/// binding a row's columns, the optimistic write, the locked merge, and the
/// single-statement methods of [`SessionStore`](super::SessionStore).
///
/// The invoking module provides `read_time` (a timestamp column, decoded)
/// and, on the store type, `begin_locked` (a transaction whose first read
/// takes the row's write lock) and `insert_returning_id` (backends return a
/// new row's id differently). `time` converts a timestamp to what the
/// backend binds.
macro_rules! sql_store {
    (store: $store:ty, database: $db:ty, arguments: $args:ty, time: $time:path $(,)?) => {
        type Query<'q> = sqlx::query::Query<'q, $db, $args>;

        fn decode_row(row: &<$db as sqlx::Database>::Row) -> Result<SessionRecord, StoreError> {
            use sqlx::Row as _;
            let id: i64 = row.try_get("id")?;
            let required = |column| {
                read_time(row, column)?.ok_or(StoreError::Corrupt {
                    id,
                    what: "a required timestamp is missing",
                })
            };
            $crate::store::sql::RawRow {
                id,
                version: row.try_get("version")?,
                token_hash: row.try_get("token_hash")?,
                user_id: row.try_get("user_id")?,
                ip_address: row.try_get("ip_address")?,
                is_api: row.try_get("is_api")?,
                auth_method: row.try_get("auth_method")?,
                authenticated_at: read_time(row, "authenticated_at")?,
                persistent: row.try_get("persistent")?,
                created_at: required("created_at")?,
                last_activity: required("last_activity")?,
                data: row.try_get("data")?,
                auth_version: row.try_get("auth_version")?,
            }
            .into_record()
        }

        /// Binds the columns of `SessionFields` in the order both the insert
        /// and the update statement list them.
        fn bind_fields<'q>(query: Query<'q>, f: &'q SessionFields) -> Query<'q> {
            query
                .bind(f.token_hash.as_bytes().as_slice())
                .bind(f.user_id.as_deref())
                .bind(f.ip_address.as_deref())
                .bind(f.is_api)
                .bind(f.auth_method.as_deref())
                .bind(f.authenticated_at.map($time))
                .bind(f.persistent)
                .bind($time(f.created_at))
                .bind($time(f.last_activity))
                .bind($crate::store::sql::encode_data(&f.data))
                .bind(f.auth_version)
        }

        async fn fetch<'e>(
            executor: impl sqlx::Executor<'e, Database = $db>,
            sql: &sqlx::SqlStr,
            id: SessionId,
        ) -> Result<Option<SessionRecord>, StoreError> {
            let row = sqlx::query(sql.clone())
                .bind(id.get())
                .fetch_optional(executor)
                .await?;
            row.as_ref().map(decode_row).transpose()
        }

        /// The optimistic write: succeeds only if the row still has `version`.
        async fn write<'e>(
            executor: impl sqlx::Executor<'e, Database = $db>,
            sql: &$crate::store::sql::Statements,
            id: SessionId,
            version: i64,
            fields: &SessionFields,
        ) -> Result<bool, StoreError> {
            let done = bind_fields(sqlx::query(sql.update.clone()), fields)
                .bind(id.get())
                .bind(version)
                .execute(executor)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        impl $store {
            /// One try of `update_locked`, in one transaction.
            async fn update_locked_once(
                &self,
                id: SessionId,
                merge: &mut $crate::store::Merge<'_>,
            ) -> Result<Option<SessionRecord>, StoreError> {
                let mut tx = self.begin_locked().await?;
                let Some(current) = fetch(&mut *tx, &self.sql.load_for_update, id).await? else {
                    return Ok(None);
                };
                let Some(fields) = merge(&current) else {
                    return Ok(None);
                };
                if !write(&mut *tx, &self.sql, id, current.version, &fields).await? {
                    return Ok(None);
                }
                tx.commit().await?;
                Ok(Some(SessionRecord {
                    id,
                    version: current.version + 1,
                    fields,
                }))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::SessionStore for $store {
            async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
                fetch(&self.pool, &self.sql.load, id).await
            }

            async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
                let this = self;
                $crate::store::sql::retry_deadlocks(move || async move {
                    let query = bind_fields(sqlx::query(this.sql.insert.clone()), fields);
                    $crate::store::sql::assigned_id(this.insert_returning_id(query).await?)
                })
                .await
            }

            async fn update(
                &self,
                id: SessionId,
                expected_version: i64,
                fields: &SessionFields,
            ) -> Result<bool, StoreError> {
                let this = self;
                $crate::store::sql::retry_deadlocks(move || async move {
                    write(&this.pool, &this.sql, id, expected_version, fields).await
                })
                .await
            }

            async fn update_locked(
                &self,
                id: SessionId,
                merge: &mut $crate::store::Merge<'_>,
            ) -> Result<Option<SessionRecord>, StoreError> {
                let mut attempt = 1;
                loop {
                    match self.update_locked_once(id, merge).await {
                        Err(error) if error.is_transient() && attempt < 8 => {
                            $crate::store::sql::deadlock_pause(attempt).await;
                            attempt += 1;
                        }
                        result => return result,
                    }
                }
            }

            async fn touch(
                &self,
                id: SessionId,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, StoreError> {
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(move || async move {
                    Ok(sqlx::query(this.sql.touch.clone())
                        .bind($time(at))
                        .bind(id.get())
                        .execute(&this.pool)
                        .await?)
                })
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(move || async move {
                    Ok(sqlx::query(this.sql.delete.clone())
                        .bind(id.get())
                        .execute(&this.pool)
                        .await?)
                })
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_expired(
                &self,
                cutoffs: $crate::store::ExpiryCutoffs,
                limit: u32,
            ) -> Result<u64, StoreError> {
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(move || async move {
                    Ok(sqlx::query(this.sql.delete_expired.clone())
                        .bind($time(cutoffs.idle_before))
                        .bind($time(cutoffs.created_before))
                        .bind($time(cutoffs.persistent_idle_before))
                        .bind($time(cutoffs.persistent_created_before))
                        .bind(i64::from(limit))
                        .execute(&this.pool)
                        .await?)
                })
                .await?;
                Ok(done.rows_affected())
            }

            async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
                let rows = sqlx::query(self.sql.list_for_user.clone())
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(decode_row).collect()
            }

            async fn delete_for_user(
                &self,
                user_id: &str,
                which: $crate::store::UserSessions,
            ) -> Result<u64, StoreError> {
                use $crate::store::UserSessions;
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(move || async move {
                    let query = match which {
                        UserSessions::All => {
                            sqlx::query(this.sql.delete_user_all.clone()).bind(user_id)
                        }
                        UserSessions::AllExcept(id) => {
                            sqlx::query(this.sql.delete_user_except.clone())
                                .bind(user_id)
                                .bind(id.get())
                        }
                        UserSessions::Only(id) => sqlx::query(this.sql.delete_user_only.clone())
                            .bind(user_id)
                            .bind(id.get()),
                    };
                    Ok(query.execute(&this.pool).await?)
                })
                .await?;
                Ok(done.rows_affected())
            }

            async fn delete_all(&self) -> Result<u64, StoreError> {
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(move || async move {
                    Ok(sqlx::query(this.sql.delete_all.clone())
                        .execute(&this.pool)
                        .await?)
                })
                .await?;
                Ok(done.rows_affected())
            }

            async fn delete_excess_for_user(
                &self,
                user_id: &str,
                keep: u32,
            ) -> Result<u64, StoreError> {
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(move || async move {
                    Ok(sqlx::query(this.sql.delete_excess_for_user.clone())
                        .bind(user_id)
                        .bind(i64::from(keep))
                        .execute(&this.pool)
                        .await?)
                })
                .await?;
                Ok(done.rows_affected())
            }

            async fn count_active_since(
                &self,
                since: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar(self.sql.count_active_since.clone())
                    .bind($time(since))
                    .fetch_one(&self.pool)
                    .await?;
                Ok($crate::store::sql::count(n))
            }
        }
    };
}

pub(crate) use sql_store;

/// [`UserStore`](crate::store::UserStore) for a SQL store, like
/// [`sql_store!`]. The invoking module provides `USERS_SQL` (its
/// [`UserStatementTexts`]), `read_time` (a timestamp column, decoded) and,
/// on the store type, `users_sql`, `begin_locked` and `insert_returning_id`.
macro_rules! user_store {
    (store: $store:ty, database: $db:ty, time: $time:path $(,)?) => {
        fn decode_user(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::UserRecord, StoreError> {
            use sqlx::Row as _;
            let failures: i64 = row.try_get("failures")?;
            let disabled: bool = row.try_get("disabled")?;
            Ok($crate::store::UserRecord {
                username: row.try_get("username")?,
                display_name: row.try_get("display_name")?,
                password_hash: row.try_get("password_hash")?,
                disabled,
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
                locked_until: read_time(row, "locked_until")?,
                created_at: read_time(row, "created_at")?.ok_or(StoreError::Corrupt {
                    id: 0,
                    what: "an account has no `created_at`",
                })?,
            })
        }

        fn decode_token(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::ApiTokenRecord, StoreError> {
            use sqlx::Row as _;
            let id: i64 = row.try_get("id")?;
            Ok($crate::store::ApiTokenRecord {
                id,
                user_id: row.try_get("user_id")?,
                name: row.try_get("name")?,
                created_at: read_time(row, "created_at")?.ok_or(StoreError::Corrupt {
                    id,
                    what: "an API token has no `created_at`",
                })?,
                last_used_at: read_time(row, "last_used_at")?,
            })
        }

        impl $store {
            async fn record_failure_once(
                &self,
                username: &str,
                now: chrono::DateTime<chrono::Utc>,
                policy: $crate::auth::LockoutPolicy,
            ) -> Result<Option<$crate::store::UserRecord>, StoreError> {
                let sql = &self.users_sql;
                let mut tx = self.begin_locked().await?;
                let row = sqlx::query(sql.find_user_for_update.clone())
                    .bind(username)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(mut user) = row.as_ref().map(decode_user).transpose()? else {
                    return Ok(None);
                };
                let (failures, locked_until) =
                    policy.after_failure(user.failures, user.locked_until, now);
                sqlx::query(sql.write_failures.clone())
                    .bind(i64::from(failures))
                    .bind(locked_until.map($time))
                    .bind(username)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                user.failures = failures;
                user.locked_until = locked_until;
                Ok(Some(user))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::UserStore for $store {
            async fn create_user(
                &self,
                user: &$crate::store::UserRecord,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(self.users_sql.create_user.clone())
                    .bind(&user.username)
                    .bind(&user.display_name)
                    .bind(&user.password_hash)
                    .bind(user.disabled)
                    .bind($time(user.created_at))
                    .execute(&self.pool)
                    .await;
                match done {
                    Ok(_) => Ok(true),
                    Err(error) if $crate::store::sql::is_unique_violation(&error) => Ok(false),
                    Err(error) => Err(error.into()),
                }
            }

            async fn find_user(
                &self,
                username: &str,
            ) -> Result<Option<$crate::store::UserRecord>, StoreError> {
                let row = sqlx::query(self.users_sql.find_user.clone())
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(decode_user).transpose()
            }

            async fn set_password_hash(
                &self,
                username: &str,
                hash: &str,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(self.users_sql.set_password_hash.clone())
                    .bind(hash)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_disabled(
                &self,
                username: &str,
                disabled: bool,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(self.users_sql.set_disabled.clone())
                    .bind(disabled)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_failure(
                &self,
                username: &str,
                now: chrono::DateTime<chrono::Utc>,
                policy: $crate::auth::LockoutPolicy,
            ) -> Result<Option<$crate::store::UserRecord>, StoreError> {
                let this = self;
                $crate::store::sql::retry_deadlocks(move || async move {
                    this.record_failure_once(username, now, policy).await
                })
                .await
            }

            async fn clear_failures(&self, username: &str) -> Result<(), StoreError> {
                let this = self;
                $crate::store::sql::retry_deadlocks(move || async move {
                    sqlx::query(this.users_sql.clear_failures.clone())
                        .bind(username)
                        .execute(&this.pool)
                        .await?;
                    Ok(())
                })
                .await
            }

            async fn insert_api_token(
                &self,
                token: &$crate::store::NewApiToken,
            ) -> Result<i64, StoreError> {
                let query = sqlx::query(self.users_sql.insert_api_token.clone())
                    .bind(token.token_hash.as_bytes().as_slice())
                    .bind(&token.user_id)
                    .bind(&token.name)
                    .bind($time(token.created_at));
                self.insert_returning_id(query).await
            }

            async fn find_api_token(
                &self,
                hash: &$crate::token::TokenHash,
            ) -> Result<Option<$crate::store::ApiTokenRecord>, StoreError> {
                let row = sqlx::query(self.users_sql.find_api_token.clone())
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(decode_token).transpose()
            }

            async fn touch_api_token(
                &self,
                id: i64,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(self.users_sql.touch_api_token.clone())
                    .bind($time(at))
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_api_tokens(
                &self,
                user_id: &str,
            ) -> Result<Vec<$crate::store::ApiTokenRecord>, StoreError> {
                let rows = sqlx::query(self.users_sql.list_api_tokens.clone())
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(decode_token).collect()
            }

            async fn delete_api_token(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(self.users_sql.delete_api_token.clone())
                    .bind(user_id)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use user_store;
