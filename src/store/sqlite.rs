//! [`SqliteStore`]: sessions in an SQLite file, the embedded default.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Executor, Row, SqlStr, Sqlite};

use super::migrate::SQLITE;
use super::sql::{RawRow, StatementTexts, Statements, assigned_id, count, encode_data};
use super::{
    ExpiryCutoffs, Merge, SessionFields, SessionRecord, SessionStore, StoreError, TableName,
};
use crate::token::SessionId;

const SQL: StatementTexts = StatementTexts {
    load: "SELECT {columns} FROM {table} WHERE id = ?",
    load_for_update: "SELECT {columns} FROM {table} WHERE id = ?",
    insert: "INSERT INTO {table} (token_hash, user_id, ip_address, is_api, auth_method, \
        authenticated_at, persistent, created_at, last_activity, data, version) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING id",
    update: "UPDATE {table} SET token_hash = ?, user_id = ?, ip_address = ?, is_api = ?, \
        auth_method = ?, authenticated_at = ?, persistent = ?, created_at = ?, \
        last_activity = ?, data = ?, version = version + 1 WHERE id = ? AND version = ?",
    touch: "UPDATE {table} SET last_activity = MAX(last_activity, ?) WHERE id = ?",
    delete: "DELETE FROM {table} WHERE id = ?",
    delete_expired: "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
        WHERE last_activity < ? OR created_at < ? LIMIT ?)",
    count_active_since: "SELECT COUNT(*) FROM {table} WHERE last_activity >= ?",
};

/// Sessions in SQLite, through an [`sqlx::SqlitePool`].
///
/// ```
/// # async fn run() -> Result<(), keycard::store::StoreError> {
/// use keycard::SqliteStore;
///
/// let store = SqliteStore::connect("sqlite://sessions.db").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
///
/// Timestamps are kept as integer microseconds since the Unix epoch (UTC),
/// which SQLite compares and indexes as plain numbers.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    table: TableName,
    sql: Arc<Statements>,
}

impl SqliteStore {
    /// Wraps an existing pool, using the table `keycard_sessions`.
    pub fn new(pool: SqlitePool) -> Self {
        Self::with_table_name(pool, TableName::default())
    }

    /// Wraps an existing pool, using the given table.
    pub fn with_table_name(pool: SqlitePool, table: TableName) -> Self {
        let sql = Arc::new(Statements::new(&SQL, &table));
        Self { pool, table, sql }
    }

    /// Opens (creating if missing) the database at `url`, e.g.
    /// `sqlite://sessions.db` or `sqlite::memory:`, with the settings a
    /// session store wants: WAL journal, `synchronous = NORMAL`, a 5 second
    /// busy timeout.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Self::new(pool))
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The table this store uses.
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    /// Creates the table and indexes if they are missing, by applying the
    /// files of `migrations/sqlite/` not applied yet. Safe to call at every
    /// start and from several processes at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let book = format!("{}_migrations", self.table);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {book} \
             (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )))
        .execute(&mut *conn)
        .await?;
        for migration in SQLITE {
            let failed = |source| StoreError::Migration {
                version: migration.version,
                source,
            };
            // IMMEDIATE takes the write lock at once, so two processes
            // migrating together apply each file once.
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .map_err(failed)?;
            let applied = async {
                let done: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT version FROM {book} WHERE version = ?"
                )))
                .bind(migration.version)
                .fetch_optional(&mut *conn)
                .await?;
                if done.is_none() {
                    sqlx::raw_sql(AssertSqlSafe(migration.render(&self.table)))
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO {book} (version, applied_at) VALUES (?, ?)"
                    )))
                    .bind(migration.version)
                    .bind(Utc::now().timestamp_micros())
                    .execute(&mut *conn)
                    .await?;
                }
                Ok::<_, sqlx::Error>(())
            }
            .await;
            let end = if applied.is_ok() {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            let ended = sqlx::raw_sql(end).execute(&mut *conn).await;
            applied.and(ended.map(drop)).map_err(failed)?;
        }
        Ok(())
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn decode_row(row: &SqliteRow) -> Result<SessionRecord, StoreError> {
    let id: i64 = row.try_get("id")?;
    let time = |column: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        let raw: Option<i64> = row.try_get(column)?;
        raw.map(|t| {
            DateTime::from_timestamp_micros(t).ok_or(StoreError::Corrupt {
                id,
                what: "timestamp out of range",
            })
        })
        .transpose()
    };
    let required = |t: Option<DateTime<Utc>>| {
        t.ok_or(StoreError::Corrupt {
            id,
            what: "timestamp missing",
        })
    };
    RawRow {
        id,
        version: row.try_get("version")?,
        token_hash: row.try_get("token_hash")?,
        user_id: row.try_get("user_id")?,
        ip_address: row.try_get("ip_address")?,
        is_api: row.try_get("is_api")?,
        auth_method: row.try_get("auth_method")?,
        authenticated_at: time("authenticated_at")?,
        persistent: row.try_get("persistent")?,
        created_at: required(time("created_at")?)?,
        last_activity: required(time("last_activity")?)?,
        data: row.try_get("data")?,
    }
    .into_record()
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

/// Binds the columns of [`SessionFields`] in the order both the insert and
/// the update statement list them.
fn bind_fields<'q>(query: Query<'q>, f: &'q SessionFields) -> Query<'q> {
    query
        .bind(f.token_hash.as_bytes().as_slice())
        .bind(f.user_id.as_deref())
        .bind(f.ip_address.as_deref())
        .bind(f.is_api)
        .bind(f.auth_method.as_deref())
        .bind(f.authenticated_at.map(micros))
        .bind(f.persistent)
        .bind(micros(f.created_at))
        .bind(micros(f.last_activity))
        .bind(encode_data(&f.data))
}

async fn fetch<'e>(
    executor: impl Executor<'e, Database = Sqlite>,
    sql: &SqlStr,
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
    executor: impl Executor<'e, Database = Sqlite>,
    sql: &Statements,
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

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        fetch(&self.pool, &self.sql.load, id).await
    }

    async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
        let row = bind_fields(sqlx::query(self.sql.insert.clone()), fields)
            .fetch_one(&self.pool)
            .await?;
        assigned_id(row.try_get(0)?)
    }

    async fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        fields: &SessionFields,
    ) -> Result<bool, StoreError> {
        write(&self.pool, &self.sql, id, expected_version, fields).await
    }

    async fn update_locked(
        &self,
        id: SessionId,
        merge: &mut Merge<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        // IMMEDIATE takes SQLite's write lock before the read, so no other
        // writer can come between the read and the write.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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

    async fn touch(&self, id: SessionId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql.touch.clone())
            .bind(micros(at))
            .bind(id.get())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql.delete.clone())
            .bind(id.get())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_expired(&self, cutoffs: ExpiryCutoffs, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(self.sql.delete_expired.clone())
            .bind(micros(cutoffs.idle_before))
            .bind(micros(cutoffs.created_before))
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn count_active_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(self.sql.count_active_since.clone())
            .bind(micros(since))
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }
}
