//! [`PostgresStore`]: sessions in PostgreSQL, shared by several app servers.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Executor, Postgres, Row, SqlStr};

use super::migrate::{POSTGRES, lock_key};
use super::sql::{RawRow, StatementTexts, Statements, assigned_id, count, encode_data};
use super::{
    ExpiryCutoffs, Merge, SessionFields, SessionRecord, SessionStore, StoreError, TableName,
};
use crate::token::SessionId;

const SQL: StatementTexts = StatementTexts {
    load: "SELECT {columns} FROM {table} WHERE id = $1",
    load_for_update: "SELECT {columns} FROM {table} WHERE id = $1 FOR UPDATE",
    insert: "INSERT INTO {table} (token_hash, user_id, ip_address, is_api, auth_method, \
        authenticated_at, persistent, created_at, last_activity, data, version) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1) RETURNING id",
    update: "UPDATE {table} SET token_hash = $1, user_id = $2, ip_address = $3, is_api = $4, \
        auth_method = $5, authenticated_at = $6, persistent = $7, created_at = $8, \
        last_activity = $9, data = $10, version = version + 1 WHERE id = $11 AND version = $12",
    touch: "UPDATE {table} SET last_activity = GREATEST(last_activity, $1) WHERE id = $2",
    delete: "DELETE FROM {table} WHERE id = $1",
    delete_expired: "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
        WHERE last_activity < $1 OR created_at < $2 LIMIT $3)",
    count_active_since: "SELECT COUNT(*) FROM {table} WHERE last_activity >= $1",
};

/// Sessions in PostgreSQL, through an [`sqlx::PgPool`]: the store for
/// several app servers sharing one database.
///
/// ```no_run
/// # async fn run() -> Result<(), keycard::store::StoreError> {
/// use keycard::store::PostgresStore;
///
/// let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
///
/// Timestamps are `TIMESTAMPTZ` (microseconds, UTC), written from the app's
/// clock, never the database's `now()`.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    table: TableName,
    sql: Arc<Statements>,
}

impl PostgresStore {
    /// Wraps an existing pool (the application's own, say), using the table
    /// `keycard_sessions`.
    pub fn new(pool: PgPool) -> Self {
        Self::with_table_name(pool, TableName::default())
    }

    /// Wraps an existing pool, using the given table.
    pub fn with_table_name(pool: PgPool, table: TableName) -> Self {
        let sql = Arc::new(Statements::new(&SQL, &table));
        Self { pool, table, sql }
    }

    /// Connects to `url` (`postgres://user@host/db`) with a pool of 10.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await?;
        Ok(Self::new(pool))
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The table this store uses.
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    /// Creates the table and indexes if they are missing, by applying the
    /// files of `migrations/postgres/` not applied yet, in one transaction
    /// under an advisory lock: safe from several app servers at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let book = format!("{}_migrations", self.table);
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(&self.table))
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {book} \
             (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
        )))
        .execute(&mut *tx)
        .await?;
        for migration in POSTGRES {
            let failed = |source| StoreError::Migration {
                version: migration.version,
                source,
            };
            let done: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT version FROM {book} WHERE version = $1"
            )))
            .bind(migration.version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(failed)?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(AssertSqlSafe(migration.render(&self.table)))
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {book} (version, applied_at) VALUES ($1, $2)"
            )))
            .bind(migration.version)
            .bind(Utc::now())
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn decode_row(row: &PgRow) -> Result<SessionRecord, StoreError> {
    RawRow {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        token_hash: row.try_get("token_hash")?,
        user_id: row.try_get("user_id")?,
        ip_address: row.try_get("ip_address")?,
        is_api: row.try_get("is_api")?,
        auth_method: row.try_get("auth_method")?,
        authenticated_at: row.try_get("authenticated_at")?,
        persistent: row.try_get("persistent")?,
        created_at: row.try_get("created_at")?,
        last_activity: row.try_get("last_activity")?,
        data: row.try_get("data")?,
    }
    .into_record()
}

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Binds the columns of [`SessionFields`] as `$1` to `$10`.
fn bind_fields<'q>(query: Query<'q>, f: &'q SessionFields) -> Query<'q> {
    query
        .bind(f.token_hash.as_bytes().as_slice())
        .bind(f.user_id.as_deref())
        .bind(f.ip_address.as_deref())
        .bind(f.is_api)
        .bind(f.auth_method.as_deref())
        .bind(f.authenticated_at)
        .bind(f.persistent)
        .bind(f.created_at)
        .bind(f.last_activity)
        .bind(encode_data(&f.data))
}

async fn fetch<'e>(
    executor: impl Executor<'e, Database = Postgres>,
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
    executor: impl Executor<'e, Database = Postgres>,
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
impl SessionStore for PostgresStore {
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
            .bind(at)
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
            .bind(cutoffs.idle_before)
            .bind(cutoffs.created_before)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn count_active_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(self.sql.count_active_since.clone())
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }
}
