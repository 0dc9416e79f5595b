//! [`MySqlStore`]: sessions in MySQL 8 or MariaDB 10.6+.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::mysql::{MySqlArguments, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, MySql, Row};

use super::migrate::MYSQL;
use super::sql::{
    Batcher, Load, SqlStore, StatementTexts, UserStatementTexts, ValueWrite, in_list_statements,
    load_in_list, sql_store, user_store,
};
use super::{SessionFields, SessionRecord, StoreError, TableName, WaitLimits};
use crate::token::SessionId;

const SQL: StatementTexts = StatementTexts {
    load: "SELECT {columns} FROM {table} WHERE id = ?",
    load_for_update: "SELECT {columns} FROM {table} WHERE id = ? FOR UPDATE",
    insert: "INSERT INTO {table} (token_hash, user_id, ip_address, is_api, auth_method, \
        authenticated_at, persistent, created_at, last_activity, data, auth_version, credential_id, \
        version) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
    update: "UPDATE {table} SET token_hash = ?, user_id = ?, ip_address = ?, \
        is_api = ?, auth_method = ?, authenticated_at = ?, persistent = ?, \
        created_at = ?, last_activity = ?, data = ?, auth_version = ?, credential_id = ?, \
        version = version + 1 WHERE id = ? AND version = ?",
    update_data: "UPDATE {table} SET data = ?, last_activity = ?, version = version + 1 \
        WHERE id = ? AND version = ?",
    update_values: "UPDATE {table} SET data = ?, version = version + 1 WHERE id = ? \
        AND version = ?",
    touch: "UPDATE {table} SET last_activity = GREATEST(last_activity, ?) WHERE id = ?",
    delete: "DELETE FROM {table} WHERE id = ?",
    delete_expired: "DELETE FROM {table} WHERE (NOT persistent AND (last_activity < ? OR created_at < ?)) \
        OR (persistent AND (last_activity < ? OR created_at < ?)) LIMIT ?",
    list_for_user: "SELECT {columns} FROM {table} WHERE user_id = ? \
        ORDER BY last_activity DESC, id DESC",
    delete_user_all: "DELETE FROM {table} WHERE user_id = ?",
    delete_all: "DELETE FROM {table}",
    delete_user_except: "DELETE FROM {table} WHERE user_id = ? AND id <> ?",
    delete_user_only: "DELETE FROM {table} WHERE user_id = ? AND id = ?",
    // Ranked in a derived table, which MySQL requires to delete from the
    // table it reads; one statement, so concurrent logins agree.
    delete_excess_for_user: "DELETE FROM {table} WHERE id IN (SELECT id FROM (\
        SELECT id, ROW_NUMBER() OVER (ORDER BY last_activity DESC, id DESC) AS place \
        FROM {table} WHERE user_id = ? AND is_api = ?) AS ranked WHERE place > ?)",
    count_active_since: "SELECT COUNT(*) FROM {table} WHERE last_activity >= ?",
};

const USERS_SQL: UserStatementTexts = UserStatementTexts {
    create_user: "INSERT INTO {table}_users (username, display_name, password_hash, disabled, \
        failures, locked_until, created_at) VALUES (?, ?, ?, ?, 0, NULL, ?)",
    find_user: "SELECT {user_columns} FROM {table}_users WHERE username = ?",
    find_user_for_update: "SELECT {user_columns} FROM {table}_users WHERE username = ? FOR UPDATE",
    set_password_hash: "UPDATE {table}_users SET credential_version = credential_version + 1, \
        password_hash = ?, failures = 0, \
        locked_until = NULL WHERE username = ?",
    set_disabled: "UPDATE {table}_users SET credential_version = credential_version + 1, \
        disabled = ? WHERE username = ?",
    write_failures: "UPDATE {table}_users SET failures = ?, locked_until = ? \
        WHERE username = ?",
    clear_failures: "UPDATE {table}_users SET failures = 0, locked_until = NULL \
        WHERE username = ? AND (failures <> 0 OR locked_until IS NOT NULL)",
    insert_api_token: "INSERT INTO {table}_api_tokens (token_hash, user_id, name, created_at) \
        VALUES (?, ?, ?, ?)",
    find_api_token: "SELECT {token_columns} FROM {table}_api_tokens WHERE token_hash = ?",
    touch_api_token: "UPDATE {table}_api_tokens SET last_used_at = ? WHERE id = ?",
    list_api_tokens: "SELECT {token_columns} FROM {table}_api_tokens WHERE user_id = ? \
        ORDER BY id",
    delete_api_token: "DELETE FROM {table}_api_tokens WHERE user_id = ? AND id = ?",
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
pub type MySqlStore = SqlStore<MySql>;

impl SqlStore<MySql> {
    /// Wraps an existing pool (the application's own, say), using the table
    /// `keycard_sessions`.
    pub fn new(pool: MySqlPool) -> Self {
        Self::with_table_name(pool, TableName::default())
    }

    /// Wraps an existing pool, using the given table.
    pub fn with_table_name(pool: MySqlPool, table: TableName) -> Self {
        let loads = in_list_statements(&table);
        Self::build(pool, table, &SQL, &USERS_SQL, loads, None)
    }

    /// Connects to `url` (`mysql://user@host/db`) with a pool of 10 and
    /// the default [`WaitLimits`]: `innodb_lock_wait_timeout` and
    /// `lock_wait_timeout` of 5 s on every connection (whole seconds, at
    /// least 1), 5 s at most for a pooled connection.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, WaitLimits::default()).await
    }

    /// [`connect`](Self::connect) with other [`WaitLimits`].
    pub async fn connect_with(url: &str, limits: WaitLimits) -> Result<Self, StoreError> {
        let seconds = limits.lock.as_secs().max(1);
        let pool = MySqlPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(limits.acquire)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    let set = format!(
                        "SET SESSION innodb_lock_wait_timeout = {seconds}, \
                         lock_wait_timeout = {seconds}"
                    );
                    sqlx::raw_sql(AssertSqlSafe(set)).execute(conn).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(Self::new(pool).wait_limits(limits))
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

/// `DATETIME` has no zone: keycard writes and reads UTC.
fn read_time<I: sqlx::ColumnIndex<MySqlRow>>(
    row: &MySqlRow,
    column: I,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let t: Option<NaiveDateTime> = row.try_get(column)?;
    Ok(t.map(|t| t.and_utc()))
}

sql_store! {
    store: SqlStore<MySql>,
    database: MySql,
    arguments: MySqlArguments,
    time: naive,
}

user_store! {
    store: SqlStore<MySql>,
    database: MySql,
    time: naive,
}

/// What [`sql_store!`] leaves to each backend.
impl SqlStore<MySql> {
    /// A transaction whose `SELECT … FOR UPDATE` holds the row until commit:
    /// concurrent writers of one session queue.
    async fn begin_locked(
        conn: &mut sqlx::MySqlConnection,
    ) -> Result<sqlx::Transaction<'_, MySql>, sqlx::Error> {
        sqlx::Connection::begin(conn).await
    }

    /// MySQL has no `RETURNING`: the id comes back in the OK packet.
    async fn insert_returning_id(&self, query: Query<'_>) -> Result<i64, StoreError> {
        let done = query.execute(&mut *self.write_conn().await?).await?;
        Ok(i64::try_from(done.last_insert_id()).unwrap_or(0))
    }

    /// MySQL's `UPDATE` cannot say which rows it wrote, so it has no
    /// value-write batches (`writes` is `None`) and this is never called;
    /// were it called, it would write each row alone.
    async fn write_rows(
        &self,
        _batcher: &Batcher<ValueWrite>,
        writes: &[&ValueWrite],
    ) -> Result<Vec<i64>, sqlx::Error> {
        let mut written = Vec::new();
        for write in writes {
            written.extend(self.write_one(write).await?);
        }
        Ok(written)
    }

    /// The rows of `ids`, in one statement.
    async fn load_batch(
        &self,
        batcher: &Batcher<Load<MySqlRow>>,
        ids: &[i64],
    ) -> Result<Vec<MySqlRow>, sqlx::Error> {
        load_in_list(&self.pool, batcher, ids).await
    }
}
