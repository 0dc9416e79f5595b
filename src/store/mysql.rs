//! [`MySqlStore`]: sessions in MySQL 8 or MariaDB 10.6+.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlQueryResult, MySqlRow};
use sqlx::{AssertSqlSafe, MySql, MySqlConnection};

use super::migrate::MYSQL;
use super::sql::{
    Arg, Batcher, Dialect, FactorSql, Io, Job, Load, MigrationSql, Query, SessionSql, SqlBackend,
    SqlStore, Touch, UserSql, ValueWrite, padded, padded_sizes, retry_deadlocks,
};
use super::{StoreError, TableName, WaitLimits};

const SQL: SessionSql<&str> = SessionSql {
    load: "SELECT {columns} FROM {table} WHERE id = ?",
    load_for_update: "SELECT {columns} FROM {table} WHERE id = ? FOR UPDATE",
    insert: "INSERT INTO {table} (token_hash, user_id, ip_address, is_api, auth_method, \
        authenticated_at, persistent, created_at, last_activity, data, auth_version, credential_id, \
        device, version) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
    update: "UPDATE {table} SET token_hash = ?, user_id = ?, ip_address = ?, \
        is_api = ?, auth_method = ?, authenticated_at = ?, persistent = ?, \
        created_at = ?, last_activity = ?, data = ?, auth_version = ?, credential_id = ?, \
        device = ?, version = version + 1 WHERE id = ? AND version = ?",
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
    // The user's rows of one kind past the first `keep` by recency, in a
    // derived table (which MySQL requires to delete from the table it
    // reads) joined by primary key; one statement, so concurrent logins
    // agree. `WHERE id IN (derived)` made MariaDB scan, and lock, every row
    // of the table at every sign-in (`EXPLAIN`: type ALL); the join reads
    // the user's rows by index and deletes the excess by primary key.
    // The `LIMIT` is MySQL's way of saying "no limit" with an `OFFSET`.
    delete_excess_for_user: "DELETE {table} FROM {table} JOIN (SELECT id FROM {table} \
        WHERE user_id = ? AND is_api = ? ORDER BY last_activity DESC, id DESC \
        LIMIT 18446744073709551615 OFFSET ?) AS excess ON {table}.id = excess.id",
    count_active_since: "SELECT COUNT(*) FROM {table} WHERE last_activity >= ?",
};

const USERS_SQL: UserSql<&str> = UserSql {
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
    insert_one_time_token: "INSERT INTO {table}_one_time_tokens (token_hash, user_id, purpose, \
        credential_version, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
    find_one_time_token: "SELECT {one_time_columns} FROM {table}_one_time_tokens \
        WHERE token_hash = ? AND purpose = ? AND used_at IS NULL AND expires_at > ?",
    use_one_time_token: "UPDATE {table}_one_time_tokens SET used_at = ? \
        WHERE token_hash = ? AND purpose = ? AND used_at IS NULL AND expires_at > ?",
    read_one_time_token: "SELECT {one_time_columns} FROM {table}_one_time_tokens \
        WHERE token_hash = ?",
    delete_expired_one_time_tokens: "DELETE FROM {table}_one_time_tokens WHERE expires_at <= ?",
    insert_remembered: "INSERT INTO {table}_remember (series_hash, token_hash, user_id, \
        credential_version, created_at, last_used_at, expires_at, device) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    find_remembered: "SELECT {remember_columns} FROM {table}_remember WHERE series_hash = ?",
    rotate_remembered: "UPDATE {table}_remember SET previous_hash = ?, token_hash = ?, \
        rotated_at = ?, last_used_at = ? WHERE id = ? AND token_hash = ?",
    list_remembered: "SELECT {remember_columns} FROM {table}_remember WHERE user_id = ? \
        ORDER BY id",
    delete_remembered: "DELETE FROM {table}_remember WHERE user_id = ? AND id = ?",
    delete_remembered_of: "DELETE FROM {table}_remember WHERE user_id = ? AND id <> ?",
    delete_expired_remembered: "DELETE FROM {table}_remember WHERE expires_at <= ?",
};

/// The second-factor statements.
const FACTOR_SQL: FactorSql<&str> = FactorSql {
    find_totp: "SELECT {totp_columns} FROM {table}_totp WHERE user_id = ?",
    delete_unconfirmed_totp: "DELETE FROM {table}_totp WHERE user_id = ? \
        AND confirmed_at IS NULL",
    insert_totp: "INSERT INTO {table}_totp (user_id, secret, created_at, confirmed_at, \
        last_step) VALUES (?, ?, ?, NULL, NULL)",
    confirm_totp: "UPDATE {table}_totp SET confirmed_at = ?, last_step = ? \
        WHERE user_id = ? AND secret = ? AND confirmed_at IS NULL",
    // The condition decides: of two requests with one code, one moves it.
    use_totp_step: "UPDATE {table}_totp SET last_step = ? WHERE user_id = ? \
        AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < ?)",
    delete_totp: "DELETE FROM {table}_totp WHERE user_id = ?",
    delete_recovery_codes: "DELETE FROM {table}_recovery_codes WHERE user_id = ?",
    insert_recovery_code: "INSERT INTO {table}_recovery_codes (user_id, code_hash) \
        VALUES (?, ?)",
    unused_recovery_codes: "SELECT code_hash FROM {table}_recovery_codes \
        WHERE user_id = ? AND used_at IS NULL",
    use_recovery_code: "UPDATE {table}_recovery_codes SET used_at = ? \
        WHERE user_id = ? AND code_hash = ? AND used_at IS NULL",
    insert_passkey: "INSERT INTO {table}_passkeys (user_id, credential_id, user_handle, \
        credential, sign_count, backup_eligible, backup_state, label, created_at) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    find_passkey: "SELECT {passkey_columns} FROM {table}_passkeys WHERE credential_id = ?",
    list_passkeys: "SELECT {passkey_columns} FROM {table}_passkeys WHERE user_id = ? \
        ORDER BY id",
    // The condition decides: of two sign-ins with one counter value, one
    // records its use; an authenticator without a counter always sends 0.
    use_passkey: "UPDATE {table}_passkeys SET credential = ?, sign_count = ?, \
        backup_eligible = ?, backup_state = ?, last_used_at = ? \
        WHERE id = ? AND (sign_count < ? OR (sign_count = 0 AND ? = 0))",
    delete_passkey: "DELETE FROM {table}_passkeys WHERE user_id = ? AND id = ?",
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
        Self::build(pool, table)
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
        super::sql::migrate(self).await
    }
}

/// `DATETIME` has no zone: keycard writes and reads UTC.
impl Dialect for MySql {
    type Time = NaiveDateTime;

    fn encode_time(t: DateTime<Utc>) -> NaiveDateTime {
        t.naive_utc()
    }

    fn decode_time(raw: NaiveDateTime) -> Option<DateTime<Utc>> {
        Some(raw.and_utc())
    }

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl SqlBackend for MySql {
    const SESSIONS: SessionSql<&'static str> = SQL;
    const USERS: UserSql<&'static str> = USERS_SQL;
    const FACTORS: FactorSql<&'static str> = FACTOR_SQL;
    const MIGRATIONS: &'static [super::migrate::Migration] = MYSQL;
    // A write waits for the server: updates gather while one is in flight.
    const COMBINES_UPDATES: bool = true;
    const MIGRATION_BOOK: MigrationSql<&'static str> = MigrationSql {
        create_book: "CREATE TABLE IF NOT EXISTS {book} \
            (version BIGINT PRIMARY KEY, applied_at DATETIME(6) NOT NULL)",
        find_version: "SELECT version FROM {book} WHERE version = ?",
        record_version: "INSERT INTO {book} (version, applied_at) VALUES (?, ?)",
    };

    /// Loads by an `IN` list of each padded size; value writes by a lock
    /// and an `UPDATE … JOIN` of each padded size (see [`write_rows`]).
    ///
    /// [`write_rows`]: SqlBackend::write_rows
    fn batch_statements(table: &TableName) -> (Vec<sqlx::SqlStr>, Option<Vec<sqlx::SqlStr>>) {
        let writes = lock_and_update_statements(table, WRITE_BATCH_SQL, WRITE_BATCH_ROW);
        (in_list_statements(table), Some(writes))
    }

    /// A transaction whose `SELECT … FOR UPDATE` holds the row until commit:
    /// concurrent writers of one session queue.
    async fn begin_locked(
        conn: &mut MySqlConnection,
    ) -> Result<sqlx::Transaction<'_, MySql>, sqlx::Error> {
        sqlx::Connection::begin(conn).await
    }

    /// MySQL has no `RETURNING`: the id comes back in the OK packet.
    async fn insert_returning_id(
        conn: &mut MySqlConnection,
        query: Query<MySql>,
    ) -> Result<i64, StoreError> {
        let done = query.execute(conn).await?;
        Ok(i64::try_from(done.last_insert_id()).unwrap_or(0))
    }

    async fn load_batch<'a>(
        store: &'a SqlStore<MySql>,
        batcher: &'a Batcher<Load<MySqlRow>>,
        ids: &'a [i64],
    ) -> Result<Vec<MySqlRow>, sqlx::Error> {
        let (statement, args) = padded_ids(ids);
        let query = Self::query(batcher.statement(statement)?, &args);
        Self::fetch_all(&mut *store.pool().acquire().await?, query).await
    }

    /// MySQL's `UPDATE` cannot say which rows it wrote (no `RETURNING`), so
    /// a batch is one transaction that first locks its rows and reads their
    /// versions (`SELECT … FOR UPDATE`, in id order): from then on no other
    /// writer can move them, so the rows whose version matched are exactly
    /// those the `UPDATE … JOIN` that follows writes, and each writer is
    /// told about its own. A batch that lost a deadlock is tried again.
    async fn write_rows<'a>(
        store: &'a SqlStore<MySql>,
        batcher: &'a Batcher<ValueWrite>,
        writes: &'a [&'a ValueWrite],
    ) -> Result<Vec<i64>, sqlx::Error> {
        retrying(store, || write_rows_once(store, batcher, writes)).await
    }

    /// A lock and an `UPDATE … JOIN` of each padded size, as for value
    /// writes.
    fn touch_statements(table: &TableName) -> Vec<sqlx::SqlStr> {
        lock_and_update_statements(table, TOUCH_BATCH_SQL, TOUCH_BATCH_ROW)
    }

    /// As [`write_rows`](SqlBackend::write_rows): the rows are locked in id
    /// order first, which says which exist, and only those are renewed.
    async fn touch_rows<'a>(
        store: &'a SqlStore<MySql>,
        batcher: &'a Batcher<Touch>,
        touches: &'a [&'a Touch],
    ) -> Result<Vec<i64>, sqlx::Error> {
        retrying(store, || touch_rows_once(store, batcher, touches)).await
    }

    /// MySQL commits DDL at once, so a named lock (`GET_LOCK`) keeps app
    /// servers migrating together from applying a file twice.
    async fn lock_migrations<'a>(
        conn: &'a mut MySqlConnection,
        table: &'a TableName,
    ) -> Result<(), sqlx::Error> {
        let lock = format!("keycard_migrate_{table}");
        let args = [Arg::Text(Some(&lock)), Arg::Int(MIGRATION_LOCK_SECONDS)];
        let query = Self::query(
            &sqlx::SqlSafeStr::into_sql_str("SELECT GET_LOCK(?, ?)"),
            &args,
        );
        let row = Self::fetch_optional(conn, query).await?;
        match row.map(|row| Self::opt_int(&row, 0)).transpose()?.flatten() {
            Some(1) => Ok(()),
            // Another process held the lock all along.
            _ => Err(sqlx::Error::PoolTimedOut),
        }
    }

    async fn unlock_migrations<'a>(
        conn: &'a mut MySqlConnection,
        table: &'a TableName,
        _applied: bool,
    ) -> Result<(), sqlx::Error> {
        let lock = format!("keycard_migrate_{table}");
        let query = Self::query(
            &sqlx::SqlSafeStr::into_sql_str("SELECT RELEASE_LOCK(?)"),
            &[Arg::Text(Some(&lock))],
        );
        Self::execute(conn, query).await.map(drop)
    }
}

/// Load batch statements with `?` placeholders, one per padded size:
/// `SELECT … WHERE id IN (?, ?, …)`.
fn in_list_statements(table: &TableName) -> Vec<sqlx::SqlStr> {
    use sqlx::SqlSafeStr as _;
    padded_sizes()
        .map(|rows| {
            let ids = vec!["?"; rows].join(", ");
            let columns = super::sql::COLUMNS;
            AssertSqlSafe(format!("SELECT {columns} FROM {table} WHERE id IN ({ids})"))
                .into_sql_str()
        })
        .collect()
}

/// The ids of a batch padded to the next statement size with id 0, which
/// no session has; the statement's index among the padded sizes.
fn padded_ids(ids: &[i64]) -> (usize, Vec<Arg<'static>>) {
    let (statement, rows) = padded(ids.len());
    let args = ids
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0, rows - ids.len()))
        .map(Arg::Int)
        .collect();
    (statement, args)
}

/// Locks the rows of a batch's `ids` in id order, so that batches of
/// several servers never deadlock each other; the id and version of each
/// row that exists. The lock lasts until the transaction on `conn` ends.
async fn lock_rows<J: Job>(
    conn: &mut MySqlConnection,
    batcher: &Batcher<J>,
    ids: &[i64],
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let (statement, args) = padded_ids(ids);
    let query = MySql::query(batcher.statement(2 * statement)?, &args);
    let rows = MySql::fetch_all(conn, query).await?;
    rows.iter()
        .map(|row| Ok((MySql::int(row, 0)?, MySql::int(row, 1)?)))
        .collect()
}

/// One try of [`SqlBackend::write_rows`].
async fn write_rows_once(
    store: &SqlStore<MySql>,
    batcher: &Batcher<ValueWrite>,
    writes: &[&ValueWrite],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut conn = store.pool().acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let ids: Vec<i64> = writes.iter().map(|w| w.id).collect();
    let locked = lock_rows(&mut tx, batcher, &ids).await?;
    let matched: Vec<&ValueWrite> = writes
        .iter()
        .copied()
        .filter(|w| locked.contains(&(w.id, w.version)))
        .collect();
    if !matched.is_empty() {
        let (statement, rows) = padded(matched.len());
        let mut args = Vec::with_capacity(3 * rows);
        for w in &matched {
            args.extend([Arg::Int(w.id), Arg::Text(Some(&w.data)), Arg::Time(w.at)]);
        }
        for _ in matched.len()..rows {
            args.extend([Arg::Int(0), Arg::Text(Some("")), Arg::Time(None)]);
        }
        let query = MySql::query(batcher.statement(2 * statement + 1)?, &args);
        let written = MySql::execute(&mut tx, query).await?;
        // The rows are locked, so this cannot differ; if it ever did, which
        // writer's row was written would be unknown: roll back (on drop).
        if written != matched.len() as u64 {
            return Err(sqlx::Error::Protocol(format!(
                "a batched session write changed {written} rows of {}",
                matched.len()
            )));
        }
    }
    tx.commit().await?;
    Ok(matched.iter().map(|w| w.id).collect())
}

/// One try of [`SqlBackend::touch_rows`].
async fn touch_rows_once(
    store: &SqlStore<MySql>,
    batcher: &Batcher<Touch>,
    touches: &[&Touch],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut conn = store.pool().acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let ids: Vec<i64> = touches.iter().map(|t| t.id).collect();
    let locked = lock_rows(&mut tx, batcher, &ids).await?;
    let found: Vec<i64> = ids
        .into_iter()
        .filter(|id| locked.iter().any(|(row, _)| row == id))
        .collect();
    if !found.is_empty() {
        let (statement, rows) = padded(found.len());
        let mut args = Vec::with_capacity(2 * rows);
        for t in touches.iter().filter(|t| found.contains(&t.id)) {
            args.extend([Arg::Int(t.id), Arg::Time(Some(t.at))]);
        }
        for _ in found.len()..rows {
            args.extend([Arg::Int(0), Arg::Time(None)]);
        }
        let query = MySql::query(batcher.statement(2 * statement + 1)?, &args);
        MySql::execute(&mut tx, query).await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// `op` (one transaction), again if it lost a deadlock, within the store's
/// lock budget.
async fn retrying<F, Fut>(store: &SqlStore<MySql>, mut op: F) -> Result<Vec<i64>, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<i64>, sqlx::Error>>,
{
    retry_deadlocks(store.limits.lock, || {
        let attempt = op();
        async move { Ok(attempt.await?) }
    })
    .await
    .map_err(|error| match error {
        StoreError::Database(error) => error,
        // Only database errors come out of `op`.
        other => sqlx::Error::Protocol(other.to_string()),
    })
}

/// Locks the rows of a batch, in id order, and reads their versions
/// (`{ids}`: one `?` per row).
const LOCK_BATCH_SQL: &str =
    "SELECT id, version FROM {table} WHERE id IN ({ids}) ORDER BY id FOR UPDATE";

/// Value writes of the locked rows whose version matched: `{rows}` is one
/// [`WRITE_BATCH_ROW`] per row, joined by `UNION ALL` (MariaDB 10.6 has no
/// `VALUES ROW()`). The casts give the derived columns their types
/// whatever a prepared parameter would be taken for.
const WRITE_BATCH_SQL: &str = "UPDATE {table} JOIN ({rows}) AS v ON {table}.id = v.id \
    SET {table}.data = v.data, \
    {table}.last_activity = COALESCE(v.at, {table}.last_activity), \
    {table}.version = {table}.version + 1";

/// One row of [`WRITE_BATCH_SQL`]: id, values, `last_activity` or `NULL`.
const WRITE_BATCH_ROW: &str = "SELECT CAST(? AS SIGNED) AS id, ? AS data, \
    CAST(? AS DATETIME(6)) AS at";

/// Renewals of the locked rows, each moving `last_activity` forward only:
/// `{rows}` is one [`TOUCH_BATCH_ROW`] per row, joined by `UNION ALL`.
const TOUCH_BATCH_SQL: &str = "UPDATE {table} JOIN ({rows}) AS v ON {table}.id = v.id \
    SET {table}.last_activity = GREATEST({table}.last_activity, v.at)";

/// One row of [`TOUCH_BATCH_SQL`]: id, `last_activity`.
const TOUCH_BATCH_ROW: &str = "SELECT CAST(? AS SIGNED) AS id, CAST(? AS DATETIME(6)) AS at";

/// For each padded size, the lock of [`LOCK_BATCH_SQL`] and the update
/// `update` with `{rows}` made of `row`: the lock of size `i` is statement
/// `2 i`, its update `2 i + 1`.
fn lock_and_update_statements(table: &TableName, update: &str, row: &str) -> Vec<sqlx::SqlStr> {
    use sqlx::SqlSafeStr as _;
    let render =
        |text: String| AssertSqlSafe(text.replace("{table}", table.as_str())).into_sql_str();
    padded_sizes()
        .flat_map(|rows| {
            let ids = vec!["?"; rows].join(", ");
            let values = vec![row; rows].join(" UNION ALL ");
            [
                render(LOCK_BATCH_SQL.replace("{ids}", &ids)),
                render(update.replace("{rows}", &values)),
            ]
        })
        .collect()
}
