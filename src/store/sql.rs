//! What the SQL stores share: their statements, formatted once with the
//! table name, and the checks that turn a raw row into a [`SessionRecord`].

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, SqlSafeStr as _, SqlStr};

use super::{SessionData, SessionFields, SessionRecord, StoreError, TableName};
use crate::token::{SessionId, TokenHash};

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
/// The invoking module provides `SQL` (its [`StatementTexts`]), `decode_row`,
/// and, on the store type, `begin_locked` (a transaction whose first read
/// takes the row's write lock) and `insert_row` (backends return the new id
/// differently). `time` converts a timestamp to what the backend binds.
macro_rules! sql_store {
    (store: $store:ty, database: $db:ty, arguments: $args:ty, time: $time:path $(,)?) => {
        type Query<'q> = sqlx::query::Query<'q, $db, $args>;

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
                $crate::store::sql::retry_deadlocks(
                    move || async move { this.insert_row(fields).await },
                )
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
