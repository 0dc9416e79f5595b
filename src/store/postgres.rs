//! [`PostgresStore`]: sessions in PostgreSQL, shared by several app servers.

use chrono::{DateTime, Utc};
use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult, PgRow};
use sqlx::{PgConnection, Postgres};

use super::migrate::{POSTGRES, lock_key};
use super::sql::{
    Batcher, Dialect, FactorSql, Io, Load, MigrationSql, Query, SessionSql, SqlBackend, SqlStore,
    Touch, UserSql, ValueWrite, one_statement, returned_id,
};
use super::{StoreError, TableName, WaitLimits};

const SQL: SessionSql<&str> = SessionSql {
    load: "SELECT {columns} FROM {table} WHERE id = $1",
    load_for_update: "SELECT {columns} FROM {table} WHERE id = $1 FOR UPDATE",
    insert: "INSERT INTO {table} (token_hash, user_id, ip_address, is_api, auth_method, \
        authenticated_at, persistent, created_at, last_activity, data, auth_version, credential_id, \
        device, version) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1) RETURNING id",
    update: "UPDATE {table} SET token_hash = $1, user_id = $2, ip_address = $3, \
        is_api = $4, auth_method = $5, authenticated_at = $6, persistent = $7, \
        created_at = $8, last_activity = $9, data = $10, auth_version = $11, \
        credential_id = $12, device = $13, version = version + 1 WHERE id = $14 AND version = $15",
    update_data: "UPDATE {table} SET data = $1, last_activity = $2, version = version + 1 \
        WHERE id = $3 AND version = $4",
    update_values: "UPDATE {table} SET data = $1, version = version + 1 WHERE id = $2 \
        AND version = $3",
    touch: "UPDATE {table} SET last_activity = GREATEST(last_activity, $1) WHERE id = $2",
    delete: "DELETE FROM {table} WHERE id = $1",
    // Rows that another statement is deleting are skipped, not waited for:
    // the purge takes them next time if they are still there.
    delete_expired: "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
        WHERE (NOT persistent AND (last_activity < $1 OR created_at < $2)) \
        OR (persistent AND (last_activity < $3 OR created_at < $4)) \
        ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED)",
    list_for_user: "SELECT {columns} FROM {table} WHERE user_id = $1 \
        ORDER BY last_activity DESC, id DESC",
    // Statements that delete several rows of one user lock them in id order
    // first (`ORDER BY id FOR UPDATE`), whatever plan each connection chose:
    // two of them at once then wait for each other instead of deadlocking,
    // which PostgreSQL would notice only after its `deadlock_timeout` (1 s).
    delete_user_all: "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
        WHERE user_id = $1 ORDER BY id FOR UPDATE)",
    delete_all: "DELETE FROM {table}",
    delete_user_except: "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
        WHERE user_id = $1 AND id <> $2 ORDER BY id FOR UPDATE)",
    delete_user_only: "DELETE FROM {table} WHERE user_id = $1 AND id = $2",
    // The user's rows of one kind past the first `keep` by recency
    // (`OFFSET`, not a `ROW_NUMBER()` window: the same rows, one sort and
    // no window), locked in id order; one statement, so concurrent logins
    // agree. Each level hands its ids on as an array (`= ANY (ARRAY(…))`)
    // so that the rows are found by primary key: with `IN (SELECT …)` the
    // planner chose a hash join over a sequential scan of the whole table,
    // twice (measured: 0.32 against 0.07 ms with 1,056 rows, and growing
    // with the table).
    delete_excess_for_user: "DELETE FROM {table} WHERE id = ANY (ARRAY(\
        SELECT id FROM {table} WHERE id = ANY (ARRAY(\
        SELECT id FROM {table} WHERE user_id = $1 AND is_api = $2 \
        ORDER BY last_activity DESC, id DESC OFFSET $3)) \
        ORDER BY id FOR UPDATE))",
    count_active_since: "SELECT COUNT(*) FROM {table} WHERE last_activity >= $1",
};

const USERS_SQL: UserSql<&str> = UserSql {
    create_user: "INSERT INTO {table}_users (username, display_name, password_hash, disabled, \
        failures, locked_until, created_at) VALUES ($1, $2, $3, $4, 0, NULL, $5)",
    find_user: "SELECT {user_columns} FROM {table}_users WHERE username = $1",
    find_user_for_update: "SELECT {user_columns} FROM {table}_users WHERE username = $1 FOR UPDATE",
    set_password_hash: "UPDATE {table}_users SET credential_version = credential_version + 1, \
        password_hash = $1, failures = 0, \
        locked_until = NULL WHERE username = $2",
    set_disabled: "UPDATE {table}_users SET credential_version = credential_version + 1, \
        disabled = $1 WHERE username = $2",
    write_failures: "UPDATE {table}_users SET failures = $1, locked_until = $2 \
        WHERE username = $3",
    clear_failures: "UPDATE {table}_users SET failures = 0, locked_until = NULL \
        WHERE username = $1 AND (failures <> 0 OR locked_until IS NOT NULL)",
    insert_api_token: "INSERT INTO {table}_api_tokens (token_hash, user_id, name, created_at) \
        VALUES ($1, $2, $3, $4) RETURNING id",
    find_api_token: "SELECT {token_columns} FROM {table}_api_tokens WHERE token_hash = $1",
    touch_api_token: "UPDATE {table}_api_tokens SET last_used_at = $1 WHERE id = $2",
    list_api_tokens: "SELECT {token_columns} FROM {table}_api_tokens WHERE user_id = $1 \
        ORDER BY id",
    delete_api_token: "DELETE FROM {table}_api_tokens WHERE user_id = $1 AND id = $2",
    insert_one_time_token: "INSERT INTO {table}_one_time_tokens (token_hash, user_id, purpose, \
        credential_version, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    find_one_time_token: "SELECT {one_time_columns} FROM {table}_one_time_tokens \
        WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
    use_one_time_token: "UPDATE {table}_one_time_tokens SET used_at = $1 \
        WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $4",
    read_one_time_token: "SELECT {one_time_columns} FROM {table}_one_time_tokens \
        WHERE token_hash = $1",
    delete_expired_one_time_tokens: "DELETE FROM {table}_one_time_tokens WHERE expires_at <= $1",
    insert_remembered: "INSERT INTO {table}_remember (series_hash, token_hash, user_id, \
        credential_version, created_at, last_used_at, expires_at, device) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    find_remembered: "SELECT {remember_columns} FROM {table}_remember WHERE series_hash = $1",
    rotate_remembered: "UPDATE {table}_remember SET previous_hash = $1, token_hash = $2, \
        rotated_at = $3, last_used_at = $4 WHERE id = $5 AND token_hash = $6",
    list_remembered: "SELECT {remember_columns} FROM {table}_remember WHERE user_id = $1 \
        ORDER BY id",
    delete_remembered: "DELETE FROM {table}_remember WHERE user_id = $1 AND id = $2",
    delete_remembered_of: "DELETE FROM {table}_remember WHERE user_id = $1 AND id <> $2",
    delete_expired_remembered: "DELETE FROM {table}_remember WHERE expires_at <= $1",
};

/// The second-factor statements.
const FACTOR_SQL: FactorSql<&str> = FactorSql {
    find_totp: "SELECT {totp_columns} FROM {table}_totp WHERE user_id = $1",
    delete_unconfirmed_totp: "DELETE FROM {table}_totp WHERE user_id = $1 \
        AND confirmed_at IS NULL",
    insert_totp: "INSERT INTO {table}_totp (user_id, secret, created_at, confirmed_at, \
        last_step) VALUES ($1, $2, $3, NULL, NULL)",
    confirm_totp: "UPDATE {table}_totp SET confirmed_at = $1, last_step = $2 \
        WHERE user_id = $3 AND secret = $4 AND confirmed_at IS NULL",
    // The condition decides: of two requests with one code, one moves it.
    use_totp_step: "UPDATE {table}_totp SET last_step = $1 WHERE user_id = $2 \
        AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < $3)",
    delete_totp: "DELETE FROM {table}_totp WHERE user_id = $1",
    delete_recovery_codes: "DELETE FROM {table}_recovery_codes WHERE user_id = $1",
    insert_recovery_code: "INSERT INTO {table}_recovery_codes (user_id, code_hash) \
        VALUES ($1, $2)",
    unused_recovery_codes: "SELECT code_hash FROM {table}_recovery_codes \
        WHERE user_id = $1 AND used_at IS NULL",
    use_recovery_code: "UPDATE {table}_recovery_codes SET used_at = $1 \
        WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
    insert_passkey: "INSERT INTO {table}_passkeys (user_id, credential_id, user_handle, \
        credential, sign_count, backup_eligible, backup_state, label, created_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    find_passkey: "SELECT {passkey_columns} FROM {table}_passkeys WHERE credential_id = $1",
    list_passkeys: "SELECT {passkey_columns} FROM {table}_passkeys WHERE user_id = $1 \
        ORDER BY id",
    // The condition decides: of two sign-ins with one counter value, one
    // records its use; an authenticator without a counter always sends 0.
    use_passkey: "UPDATE {table}_passkeys SET credential = $1, sign_count = $2, \
        backup_eligible = $3, backup_state = $4, last_used_at = $5 \
        WHERE id = $6 AND (sign_count < $7 OR (sign_count = 0 AND $8 = 0))",
    delete_passkey: "DELETE FROM {table}_passkeys WHERE user_id = $1 AND id = $2",
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
pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Wraps an existing pool (the application's own, say), using the table
    /// `keycard_sessions`.
    pub fn new(pool: PgPool) -> Self {
        Self::with_table_name(pool, TableName::default())
    }

    /// Wraps an existing pool, using the given table.
    pub fn with_table_name(pool: PgPool, table: TableName) -> Self {
        Self::build(pool, table)
    }

    /// Connects to `url` (`postgres://user@host/db`) with a pool of 10 and
    /// the default [`WaitLimits`]: `lock_timeout` 5 s, `statement_timeout`
    /// 10 s (set on every connection, so the server gives up and rolls
    /// back), 5 s at most for a pooled connection.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, WaitLimits::default()).await
    }

    /// [`connect`](Self::connect) with other [`WaitLimits`].
    pub async fn connect_with(url: &str, limits: WaitLimits) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.options([
            (
                "lock_timeout",
                format!("{}ms", WaitLimits::millis(limits.lock)),
            ),
            (
                "statement_timeout",
                format!("{}ms", WaitLimits::millis(limits.statement)),
            ),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(limits.acquire)
            .connect_with(options)
            .await?;
        Ok(Self::new(pool).wait_limits(limits))
    }

    /// Creates the table and indexes if they are missing, by applying the
    /// files of `migrations/postgres/` not applied yet, in one transaction
    /// under an advisory lock: safe from several app servers at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        super::sql::migrate(self).await
    }
}

/// `TIMESTAMPTZ` takes a UTC time as it is.
impl Dialect for Postgres {
    type Time = DateTime<Utc>;

    fn encode_time(t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }

    fn decode_time(raw: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(raw)
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl SqlBackend for Postgres {
    const SESSIONS: SessionSql<&'static str> = SQL;
    const USERS: UserSql<&'static str> = USERS_SQL;
    const FACTORS: FactorSql<&'static str> = FACTOR_SQL;
    const MIGRATIONS: &'static [super::migrate::Migration] = POSTGRES;
    // A write waits for the server: updates gather while one is in flight.
    const COMBINES_UPDATES: bool = true;
    const MIGRATION_BOOK: MigrationSql<&'static str> = MigrationSql {
        create_book: "CREATE TABLE IF NOT EXISTS {book} \
            (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)",
        find_version: "SELECT version FROM {book} WHERE version = $1",
        record_version: "INSERT INTO {book} (version, applied_at) VALUES ($1, $2)",
    };

    fn batch_statements(table: &TableName) -> (Vec<sqlx::SqlStr>, Option<Vec<sqlx::SqlStr>>) {
        let loads = one_statement(LOAD_BATCH_SQL, table);
        let writes = one_statement(WRITE_BATCH_SQL, table);
        (loads, Some(writes))
    }

    /// A transaction whose `SELECT … FOR UPDATE` holds the row until commit:
    /// concurrent writers of one session queue.
    async fn begin_locked(
        conn: &mut PgConnection,
    ) -> Result<sqlx::Transaction<'_, Postgres>, sqlx::Error> {
        sqlx::Connection::begin(conn).await
    }

    async fn insert_returning_id(
        conn: &mut PgConnection,
        query: Query<Postgres>,
    ) -> Result<i64, StoreError> {
        // Run to its end: see `returned_id`.
        returned_id::<Postgres>(&Self::fetch_all(conn, query).await?)
    }

    /// The ids come as one array.
    async fn load_batch<'a>(
        store: &'a SqlStore<Postgres>,
        batcher: &'a Batcher<Load<PgRow>>,
        ids: &'a [i64],
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        sqlx::query(batcher.statement(0)?.clone())
            .bind(ids)
            .fetch_all(store.pool())
            .await
    }

    /// The columns come as arrays.
    async fn write_rows<'a>(
        store: &'a SqlStore<Postgres>,
        batcher: &'a Batcher<ValueWrite>,
        writes: &'a [&'a ValueWrite],
    ) -> Result<Vec<i64>, sqlx::Error> {
        let ids: Vec<i64> = writes.iter().map(|w| w.id).collect();
        let versions: Vec<i64> = writes.iter().map(|w| w.version).collect();
        let data: Vec<&str> = writes.iter().map(|w| w.data.as_str()).collect();
        let at: Vec<Option<DateTime<Utc>>> = writes.iter().map(|w| w.at).collect();
        sqlx::query_scalar(batcher.statement(0)?.clone())
            .bind(ids)
            .bind(versions)
            .bind(data)
            .bind(at)
            .fetch_all(store.pool())
            .await
    }

    fn touch_statements(table: &TableName) -> Vec<sqlx::SqlStr> {
        one_statement(TOUCH_BATCH_SQL, table)
    }

    /// The columns come as arrays.
    async fn touch_rows<'a>(
        store: &'a SqlStore<Postgres>,
        batcher: &'a Batcher<Touch>,
        touches: &'a [&'a Touch],
    ) -> Result<Vec<i64>, sqlx::Error> {
        let ids: Vec<i64> = touches.iter().map(|t| t.id).collect();
        let at: Vec<DateTime<Utc>> = touches.iter().map(|t| t.at).collect();
        sqlx::query_scalar(batcher.statement(0)?.clone())
            .bind(ids)
            .bind(at)
            .fetch_all(store.pool())
            .await
    }

    /// One transaction under an advisory lock on the table's name: safe
    /// from several app servers at once.
    async fn lock_migrations<'a>(
        conn: &'a mut PgConnection,
        table: &'a TableName,
    ) -> Result<(), sqlx::Error> {
        // Another app server may be migrating: wait for it as long as
        // MySQL's `GET_LOCK` would, not the requests' `lock_timeout` (5 s),
        // and let a migration statement run past the requests'
        // `statement_timeout` (10 s) on a large table. Both for this
        // transaction only.
        let begin = "BEGIN; SET LOCAL lock_timeout = '60s'; SET LOCAL statement_timeout = '10min'";
        Self::execute_script(conn, sqlx::SqlSafeStr::into_sql_str(begin)).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(table))
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn unlock_migrations<'a>(
        conn: &'a mut PgConnection,
        _table: &'a TableName,
        applied: bool,
    ) -> Result<(), sqlx::Error> {
        let end = if applied { "COMMIT" } else { "ROLLBACK" };
        Self::execute_script(conn, sqlx::SqlSafeStr::into_sql_str(end)).await
    }
}

/// Loads of several sessions in one statement; the ids come as an array,
/// so one prepared statement serves batches of any size.
const LOAD_BATCH_SQL: &str = "SELECT {columns} FROM {table} WHERE id = ANY($1)";

/// Value writes of several sessions in one statement, each only if its
/// version matches; the columns come as arrays.
const WRITE_BATCH_SQL: &str = "UPDATE {table} AS t SET data = v.data, \
    last_activity = COALESCE(v.at, t.last_activity), version = t.version + 1 \
    FROM unnest($1::int8[], $2::int8[], $3::text[], $4::timestamptz[]) AS v (id, version, data, at) \
    WHERE t.id = v.id AND t.version = v.version RETURNING t.id";

/// Renewals of several sessions in one statement, each moving
/// `last_activity` forward only; `RETURNING` names every row that exists,
/// moved or not.
const TOUCH_BATCH_SQL: &str = "UPDATE {table} AS t \
    SET last_activity = GREATEST(t.last_activity, v.at) \
    FROM unnest($1::int8[], $2::timestamptz[]) AS v (id, at) \
    WHERE t.id = v.id RETURNING t.id";
