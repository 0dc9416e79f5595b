//! [`PostgresStore`]: sessions in PostgreSQL, shared by several app servers.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row};

use super::migrate::{POSTGRES, lock_key};
use super::sql::{RawRow, StatementTexts, Statements, assigned_id, sql_store};
use super::{SessionFields, SessionRecord, StoreError, TableName};
use crate::token::SessionId;

const SQL: StatementTexts = StatementTexts {
    load: "SELECT {columns} FROM {table} WHERE id = $1",
    load_for_update: "SELECT {columns} FROM {table} WHERE id = $1 FOR UPDATE",
    insert: "INSERT INTO {table} (token_hash, user_id, ip_address, is_api, auth_method, \
        authenticated_at, persistent, created_at, last_activity, data, auth_version, version) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1) RETURNING id",
    update: "UPDATE {table} SET token_hash = $1, user_id = $2, ip_address = $3, \
        is_api = $4, auth_method = $5, authenticated_at = $6, persistent = $7, \
        created_at = $8, last_activity = $9, data = $10, auth_version = $11, \
        version = version + 1 WHERE id = $12 AND version = $13",
    touch: "UPDATE {table} SET last_activity = GREATEST(last_activity, $1) WHERE id = $2",
    delete: "DELETE FROM {table} WHERE id = $1",
    delete_expired: "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
        WHERE (NOT persistent AND (last_activity < $1 OR created_at < $2)) \
        OR (persistent AND (last_activity < $3 OR created_at < $4)) LIMIT $5)",
    list_for_user: "SELECT {columns} FROM {table} WHERE user_id = $1 \
        ORDER BY last_activity DESC, id DESC",
    delete_user_all: "DELETE FROM {table} WHERE user_id = $1",
    delete_all: "DELETE FROM {table}",
    delete_user_except: "DELETE FROM {table} WHERE user_id = $1 AND id <> $2",
    delete_user_only: "DELETE FROM {table} WHERE user_id = $1 AND id = $2",
    // Ranked in a derived table, which MySQL requires to delete from the
    // table it reads; one statement, so concurrent logins agree.
    delete_excess_for_user: "DELETE FROM {table} WHERE id IN (SELECT id FROM (\
        SELECT id, ROW_NUMBER() OVER (ORDER BY last_activity DESC, id DESC) AS place \
        FROM {table} WHERE user_id = $1 AND NOT is_api) AS ranked WHERE place > $2)",
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

/// PostgreSQL's `TIMESTAMPTZ` takes a UTC time as it is.
fn utc(t: DateTime<Utc>) -> DateTime<Utc> {
    t
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
        auth_version: row.try_get("auth_version")?,
    }
    .into_record()
}

sql_store! {
    store: PostgresStore,
    database: Postgres,
    arguments: PgArguments,
    time: utc,
}

/// What [`sql_store!`] leaves to each backend.
impl PostgresStore {
    /// A transaction whose `SELECT … FOR UPDATE` holds the row until commit:
    /// concurrent writers of one session queue.
    async fn begin_locked(&self) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    async fn insert_row(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
        let row = bind_fields(sqlx::query(self.sql.insert.clone()), fields)
            .fetch_one(&self.pool)
            .await?;
        assigned_id(row.try_get(0)?)
    }
}
