//! [`SqliteStore`]: sessions in an SQLite file, the embedded default.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr as _, SqlStr};

use super::migrate::{Migration, SQLITE};
use super::{
    ExpiryCutoffs, SessionFields, SessionRecord, SessionStore, StoreError, TableName, decode_data,
    encode_data,
};
use crate::token::{SessionId, TokenHash};

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

/// The statements, formatted once with the table name. sqlx caches each
/// prepared statement per connection by its text.
#[derive(Debug)]
struct Statements {
    load: SqlStr,
    insert: SqlStr,
    update: SqlStr,
    touch: SqlStr,
    delete: SqlStr,
    delete_expired: SqlStr,
    count_active_since: SqlStr,
}

impl Statements {
    fn new(table: &TableName) -> Self {
        let sql =
            |text: String| AssertSqlSafe(text.replace("{table}", table.as_str())).into_sql_str();
        Self {
            load: sql(format!("SELECT {COLUMNS} FROM {{table}} WHERE id = ?")),
            insert: sql(
                "INSERT INTO {table} (token_hash, user_id, ip_address, is_api, auth_method, \
                 authenticated_at, persistent, created_at, last_activity, data, version) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING id"
                    .to_owned(),
            ),
            update: sql(
                "UPDATE {table} SET token_hash = ?, user_id = ?, ip_address = ?, is_api = ?, \
                 auth_method = ?, authenticated_at = ?, persistent = ?, created_at = ?, \
                 last_activity = ?, data = ?, version = version + 1 \
                 WHERE id = ? AND version = ?"
                    .to_owned(),
            ),
            touch: sql(
                "UPDATE {table} SET last_activity = MAX(last_activity, ?) WHERE id = ?".to_owned(),
            ),
            delete: sql("DELETE FROM {table} WHERE id = ?".to_owned()),
            delete_expired: sql("DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
                 WHERE last_activity < ? OR created_at < ? LIMIT ?)"
                .to_owned()),
            count_active_since: sql(
                "SELECT COUNT(*) FROM {table} WHERE last_activity >= ?".to_owned()
            ),
        }
    }
}

const COLUMNS: &str = "id, version, token_hash, user_id, ip_address, is_api, auth_method, \
    authenticated_at, persistent, created_at, last_activity, data";

impl SqliteStore {
    /// Wraps an existing pool, using the table `keycard_sessions`.
    pub fn new(pool: SqlitePool) -> Self {
        Self::with_table_name(pool, TableName::default())
    }

    /// Wraps an existing pool, using the given table.
    pub fn with_table_name(pool: SqlitePool, table: TableName) -> Self {
        let sql = Arc::new(Statements::new(&table));
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
        let create_book = format!(
            "CREATE TABLE IF NOT EXISTS {book} (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        );
        sqlx::raw_sql(AssertSqlSafe(create_book))
            .execute(&mut *conn)
            .await?;
        for migration in SQLITE {
            self.apply(&mut conn, &book, migration).await?;
        }
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut sqlx::SqliteConnection,
        book: &str,
        migration: &Migration,
    ) -> Result<(), StoreError> {
        let failed = |source| StoreError::Migration {
            version: migration.version,
            source,
        };
        // IMMEDIATE takes the write lock at once, so two processes migrating
        // together apply each file once.
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(failed)?;
        let result = async {
            let applied: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT version FROM {book} WHERE version = ?"
            )))
            .bind(migration.version)
            .fetch_optional(&mut *conn)
            .await?;
            if applied.is_none() {
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
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = sqlx::raw_sql(end).execute(&mut *conn).await;
        result.and(ended.map(drop)).map_err(failed)
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(id: i64, micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or(StoreError::Corrupt {
        id,
        what: "timestamp out of range",
    })
}

fn decode_row(row: &SqliteRow) -> Result<SessionRecord, StoreError> {
    let raw_id: i64 = row.try_get("id")?;
    let id = SessionId::new(raw_id).ok_or(StoreError::Corrupt {
        id: raw_id,
        what: "`id` is not positive",
    })?;
    let hash: Vec<u8> = row.try_get("token_hash")?;
    let token_hash = TokenHash::from_slice(&hash).ok_or(StoreError::Corrupt {
        id: raw_id,
        what: "`token_hash` is not 32 bytes",
    })?;
    let authenticated_at: Option<i64> = row.try_get("authenticated_at")?;
    let data: String = row.try_get("data")?;
    Ok(SessionRecord {
        id,
        version: row.try_get("version")?,
        fields: SessionFields {
            token_hash,
            user_id: row.try_get("user_id")?,
            ip_address: row.try_get("ip_address")?,
            is_api: row.try_get("is_api")?,
            auth_method: row.try_get("auth_method")?,
            authenticated_at: authenticated_at
                .map(|t| from_micros(raw_id, t))
                .transpose()?,
            persistent: row.try_get("persistent")?,
            created_at: from_micros(raw_id, row.try_get("created_at")?)?,
            last_activity: from_micros(raw_id, row.try_get("last_activity")?)?,
            data: decode_data(raw_id, &data)?,
        },
    })
}

/// Binds the columns of [`SessionFields`] in the order both the insert and
/// the update statement list them.
fn bind_fields<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    f: &'q SessionFields,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
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

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(self.sql.load.clone())
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_row).transpose()
    }

    async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
        let raw: i64 = bind_fields(sqlx::query(self.sql.insert.clone()), fields)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        SessionId::new(raw).ok_or(StoreError::Corrupt {
            id: raw,
            what: "the database assigned a non-positive `id`",
        })
    }

    async fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        fields: &SessionFields,
    ) -> Result<bool, StoreError> {
        let done = bind_fields(sqlx::query(self.sql.update.clone()), fields)
            .bind(id.get())
            .bind(expected_version)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
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
        let count: i64 = sqlx::query_scalar(self.sql.count_active_since.clone())
            .bind(micros(since))
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
