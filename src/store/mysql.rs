//! [`MySqlStore`]: sessions in MySQL 8 or MariaDB 10.6+.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::mysql::{MySqlArguments, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, Executor, MySql, Row, SqlStr};

use super::migrate::MYSQL;
use super::sql::{RawRow, StatementTexts, Statements, assigned_id, count, encode_data};
use super::{
    ExpiryCutoffs, Merge, SessionFields, SessionRecord, SessionStore, StoreError, TableName,
};
use crate::token::SessionId;

const SQL: StatementTexts = StatementTexts {
    load: "SELECT {columns} FROM {table} WHERE id = ?",
    load_for_update: "SELECT {columns} FROM {table} WHERE id = ? FOR UPDATE",
    insert: "INSERT INTO {table} (token_hash, user_id, ip_address, is_api, auth_method, \
        authenticated_at, persistent, created_at, last_activity, data, version) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
    update: "UPDATE {table} SET token_hash = ?, user_id = ?, ip_address = ?, is_api = ?, \
        auth_method = ?, authenticated_at = ?, persistent = ?, created_at = ?, \
        last_activity = ?, data = ?, version = version + 1 WHERE id = ? AND version = ?",
    touch: "UPDATE {table} SET last_activity = GREATEST(last_activity, ?) WHERE id = ?",
    delete: "DELETE FROM {table} WHERE id = ?",
    delete_expired: "DELETE FROM {table} WHERE last_activity < ? OR created_at < ? LIMIT ?",
    count_active_since: "SELECT COUNT(*) FROM {table} WHERE last_activity >= ?",
};

/// How long `migrate` waits for another process's migration to finish.
const MIGRATION_LOCK_SECONDS: i64 = 60;

/// Sessions in MySQL 8 or MariaDB 10.6+, through an [`sqlx::MySqlPool`].
///
/// ```no_run
/// # async fn run() -> Result<(), keycard::store::StoreError> {
/// use keycard::store::MySqlStore;
///
/// let store = MySqlStore::connect("mysql://app@db.internal/app").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
///
/// Timestamps are `DATETIME(6)` holding UTC, written from the app's clock;
/// user ids compare byte for byte (`utf8mb4_bin`) and are at most 255
/// characters.
#[derive(Clone, Debug)]
pub struct MySqlStore {
    pool: MySqlPool,
    table: TableName,
    sql: Arc<Statements>,
}

impl MySqlStore {
    /// Wraps an existing pool (the application's own, say), using the table
    /// `keycard_sessions`.
    pub fn new(pool: MySqlPool) -> Self {
        Self::with_table_name(pool, TableName::default())
    }

    /// Wraps an existing pool, using the given table.
    pub fn with_table_name(pool: MySqlPool, table: TableName) -> Self {
        let sql = Arc::new(Statements::new(&SQL, &table));
        Self { pool, table, sql }
    }

    /// Connects to `url` (`mysql://user@host/db`) with a pool of 10.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = MySqlPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await?;
        Ok(Self::new(pool))
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The table this store uses.
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    /// Creates the table and indexes if they are missing, by applying the
    /// files of `migrations/mysql/` not applied yet. MySQL commits DDL at
    /// once, so a named lock (`GET_LOCK`) keeps app servers migrating
    /// together from applying a file twice.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let lock = format!("keycard_migrate_{}", self.table);
        let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
            .bind(&lock)
            .bind(MIGRATION_LOCK_SECONDS)
            .fetch_one(&mut *conn)
            .await?;
        if locked != Some(1) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        let result = self.apply_migrations(&mut conn).await;
        let released = sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(&lock)
            .execute(&mut *conn)
            .await;
        result?;
        released?;
        Ok(())
    }

    async fn apply_migrations(&self, conn: &mut sqlx::MySqlConnection) -> Result<(), StoreError> {
        let book = format!("{}_migrations", self.table);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {book} \
             (version BIGINT PRIMARY KEY, applied_at DATETIME(6) NOT NULL)"
        )))
        .execute(&mut *conn)
        .await?;
        for migration in MYSQL {
            let failed = |source| StoreError::Migration {
                version: migration.version,
                source,
            };
            let done: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT version FROM {book} WHERE version = ?"
            )))
            .bind(migration.version)
            .fetch_optional(&mut *conn)
            .await
            .map_err(failed)?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(AssertSqlSafe(migration.render(&self.table)))
                .execute(&mut *conn)
                .await
                .map_err(failed)?;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {book} (version, applied_at) VALUES (?, ?)"
            )))
            .bind(migration.version)
            .bind(Utc::now().naive_utc())
            .execute(&mut *conn)
            .await
            .map_err(failed)?;
        }
        Ok(())
    }
}

/// MySQL's `DATETIME` has no zone: keycard writes and reads UTC.
fn naive(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

fn decode_row(row: &MySqlRow) -> Result<SessionRecord, StoreError> {
    let utc = |column: &str| -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        let t: Option<NaiveDateTime> = row.try_get(column)?;
        Ok(t.map(|t| t.and_utc()))
    };
    let id: i64 = row.try_get("id")?;
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
        authenticated_at: utc("authenticated_at")?,
        persistent: row.try_get("persistent")?,
        created_at: required(utc("created_at")?)?,
        last_activity: required(utc("last_activity")?)?,
        data: row.try_get("data")?,
    }
    .into_record()
}

type Query<'q> = sqlx::query::Query<'q, MySql, MySqlArguments>;

/// Binds the columns of [`SessionFields`] in the order both the insert and
/// the update statement list them.
fn bind_fields<'q>(query: Query<'q>, f: &'q SessionFields) -> Query<'q> {
    query
        .bind(f.token_hash.as_bytes().as_slice())
        .bind(f.user_id.as_deref())
        .bind(f.ip_address.as_deref())
        .bind(f.is_api)
        .bind(f.auth_method.as_deref())
        .bind(f.authenticated_at.map(naive))
        .bind(f.persistent)
        .bind(naive(f.created_at))
        .bind(naive(f.last_activity))
        .bind(encode_data(&f.data))
}

async fn fetch<'e>(
    executor: impl Executor<'e, Database = MySql>,
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
    executor: impl Executor<'e, Database = MySql>,
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
impl SessionStore for MySqlStore {
    async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        fetch(&self.pool, &self.sql.load, id).await
    }

    async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
        let done = bind_fields(sqlx::query(self.sql.insert.clone()), fields)
            .execute(&self.pool)
            .await?;
        assigned_id(i64::try_from(done.last_insert_id()).unwrap_or(0))
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
        // FOR UPDATE holds the row until commit: concurrent writers queue.
        let mut tx = self.pool.begin().await?;
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
            .bind(naive(at))
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
            .bind(naive(cutoffs.idle_before))
            .bind(naive(cutoffs.created_before))
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn count_active_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(self.sql.count_active_since.clone())
            .bind(naive(since))
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }
}
