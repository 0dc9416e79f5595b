//! [`SqliteStore`]: sessions in an SQLite file, the embedded default.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};

use super::migrate::SQLITE;
use super::sql::read_cache::{ChangeCounter, ReadCache};
use super::sql::{
    Arg, Batcher, Dialect, FactorSql, Io, Load, MigrationSql, Query, SessionSql, SqlBackend,
    SqlStore, Touch, UserSql, ValueWrite, one_statement, returned_id,
};
use super::sqlite_data_version::DataVersion;
use super::{StoreError, TableName, WaitLimits};

const SQL: SessionSql<&str> = SessionSql {
    load: "SELECT {columns} FROM {table} WHERE id = ?",
    load_for_update: "SELECT {columns} FROM {table} WHERE id = ?",
    insert: "INSERT INTO {table} (token_hash, user_id, ip_address, is_api, auth_method, \
        authenticated_at, persistent, created_at, last_activity, data, auth_version, credential_id, \
        device, version) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING id",
    update: "UPDATE {table} SET token_hash = ?, user_id = ?, ip_address = ?, \
        is_api = ?, auth_method = ?, authenticated_at = ?, persistent = ?, \
        created_at = ?, last_activity = ?, data = ?, auth_version = ?, credential_id = ?, \
        device = ?, version = version + 1 WHERE id = ? AND version = ?",
    update_data: "UPDATE {table} SET data = ?, last_activity = ?, version = version + 1 \
        WHERE id = ? AND version = ?",
    update_values: "UPDATE {table} SET data = ?, version = version + 1 WHERE id = ? \
        AND version = ?",
    touch: "UPDATE {table} SET last_activity = MAX(last_activity, ?) WHERE id = ?",
    delete: "DELETE FROM {table} WHERE id = ?",
    delete_expired: "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
        WHERE (NOT persistent AND (last_activity < ? OR created_at < ?)) \
        OR (persistent AND (last_activity < ? OR created_at < ?)) LIMIT ?)",
    list_for_user: "SELECT {columns} FROM {table} WHERE user_id = ? \
        ORDER BY last_activity DESC, id DESC",
    delete_user_all: "DELETE FROM {table} WHERE user_id = ?",
    delete_all: "DELETE FROM {table}",
    delete_user_except: "DELETE FROM {table} WHERE user_id = ? AND id <> ?",
    delete_user_only: "DELETE FROM {table} WHERE user_id = ? AND id = ?",
    // The user's rows of one kind past the first `keep` by recency, in one
    // statement, so concurrent logins agree. `OFFSET` rather than a
    // `ROW_NUMBER()` window: the same rows, without the window's temporary
    // table (measured: 44 against 29 µs a sign-in with 33 sessions).
    delete_excess_for_user: "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
        WHERE user_id = ? AND is_api = ? ORDER BY last_activity DESC, id DESC \
        LIMIT -1 OFFSET ?)",
    count_active_since: "SELECT COUNT(*) FROM {table} WHERE last_activity >= ?",
};

const USERS_SQL: UserSql<&str> = UserSql {
    create_user: "INSERT INTO {table}_users (username, display_name, password_hash, disabled, \
        failures, locked_until, created_at) VALUES (?, ?, ?, ?, 0, NULL, ?)",
    find_user: "SELECT {user_columns} FROM {table}_users WHERE username = ?",
    find_user_for_update: "SELECT {user_columns} FROM {table}_users WHERE username = ?",
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
        VALUES (?, ?, ?, ?) RETURNING id",
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
        VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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

/// How large [`SqliteStore::connect`] lets the write-ahead log file stay
/// once the log starts over (`PRAGMA journal_size_limit`), in bytes: 16 MiB,
/// four times what SQLite's automatic checkpoint lets it reach when every
/// checkpoint completes.
///
/// Under a steady stream of writes with readers always active, no
/// checkpoint finds a moment with no reader on an older snapshot, so the
/// log cannot start over and grows for as long as the stream lasts
/// (measured: 300 MB in 8 seconds of sign-ins, with this store and with
/// tower-sessions' alike; see `BENCHMARKS.md`). SQLite's default keeps the
/// file at its peak size afterwards, for good; with the limit the first
/// quiet moment's checkpoint cuts it back.
pub const WAL_SIZE_LIMIT: u64 = 16 * 1024 * 1024;

/// The scheme of `url` when it names another database (`postgres://…`):
/// only the scheme, since the rest may hold a password. A path, even one
/// with a drive letter or `://` further on, has none.
fn other_scheme(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once(':')?;
    let is_scheme = scheme.len() > 1
        && scheme.len() <= 32
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (is_scheme && rest.starts_with("//") && scheme != "sqlite").then_some(scheme)
}

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
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Wraps an existing pool, using the table `keycard_sessions`.
    ///
    /// The pool keeps the settings it was built with. To have the ones
    /// [`connect`](Self::connect) chooses (the write-ahead log, its size
    /// bounded after a load by [`WAL_SIZE_LIMIT`], the busy timeout) with a
    /// pool sized your way, build it from
    /// [`connect_options`](Self::connect_options).
    pub fn new(pool: SqlitePool) -> Self {
        Self::with_table_name(pool, TableName::default())
    }

    /// Wraps an existing pool, using the given table.
    pub fn with_table_name(pool: SqlitePool, table: TableName) -> Self {
        Self::build(pool, table)
    }

    /// Opens (creating if missing) the database at `url`, e.g.
    /// `sqlite://sessions.db` or `sqlite::memory:`, with the settings of
    /// [`connect_options`](Self::connect_options), a pool of
    /// [`POOL_SIZE`](Self::POOL_SIZE) connections, and the default
    /// [`WaitLimits`] (a 5 second busy timeout, which is also the whole
    /// retry budget, and 5 seconds at most for a pooled connection). An
    /// in-memory database is shared by the pool's connections and kept for
    /// the life of the pool.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, WaitLimits::default()).await
    }

    /// How many connections [`connect`](Self::connect) opens at most: 8.
    ///
    /// SQLite lets one connection write at a time and any number read, so
    /// connections beyond the cores there are to run them add readers that
    /// can go on while a write holds one, not throughput. Each costs
    /// memory: its own page cache and prepared statements, and often a
    /// malloc arena of its own (glibc gives each thread one, and each
    /// connection runs on a thread). Measured on one core under 32
    /// clients, a pool of 2 peaked 2–3.5 MiB lower than a pool of 8 on
    /// sign-ins; it served writes and new sign-ins about 10–30 % faster,
    /// returning users' sign-ins 5–20 % slower and contended increments of
    /// one session up to 12 % slower (`BENCHMARKS.md`, "SQLite's pool size
    /// and memory"). Where memory is tight, or where the application
    /// shares the pool for its own tables and holds connections longer
    /// (then a larger pool), size it yourself:
    ///
    /// ```
    /// # async fn run() -> Result<(), keycard::store::StoreError> {
    /// use keycard::SqliteStore;
    /// use keycard::store::WaitLimits;
    ///
    /// let (url, limits) = ("sqlite://sessions.db", WaitLimits::default());
    /// let pool = SqliteStore::pool_options(url, limits)
    ///     .max_connections(2)
    ///     .connect_with(SqliteStore::connect_options(url, limits)?)
    ///     .await?;
    /// let store = SqliteStore::new(pool).wait_limits(limits);
    /// # Ok(()) }
    /// ```
    pub const POOL_SIZE: u32 = 8;

    /// [`connect`](Self::connect) with other [`WaitLimits`]: SQLite's busy
    /// timeout is `limits.lock`.
    pub async fn connect_with(url: &str, limits: WaitLimits) -> Result<Self, StoreError> {
        let options = Self::connect_options(url, limits)?;
        let pool = Self::pool_options(url, limits)
            .connect_with(options)
            .await?;
        Ok(Self::new(pool).wait_limits(limits))
    }

    /// The pool [`connect_with`](Self::connect_with) builds for `url`, to
    /// change before connecting (its size, say: see
    /// [`POOL_SIZE`](Self::POOL_SIZE)): [`POOL_SIZE`](Self::POOL_SIZE)
    /// connections, `limits.acquire` at most to wait for one, and, for an
    /// in-memory database, one connection kept open for good.
    pub fn pool_options(url: &str, limits: WaitLimits) -> SqlitePoolOptions {
        let pool = SqlitePoolOptions::new()
            .max_connections(Self::POOL_SIZE)
            .acquire_timeout(limits.acquire);
        if url.contains(":memory:") || url.contains("mode=memory") {
            // An in-memory database lives as long as one connection to it:
            // keep one open for good, or every session would vanish the
            // first time the pool closed its idle connections.
            return pool
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        pool
    }

    /// The options [`connect_with`](Self::connect_with) opens each
    /// connection to `url` with, for a pool of your own: the database created if missing,
    /// the write-ahead log (`journal_mode = WAL`), `synchronous = NORMAL`
    /// (a commit is durable once the log is, with no flush to disk per
    /// commit), the log file cut back to [`WAL_SIZE_LIMIT`] whenever it
    /// starts over, and `limits.lock` as the busy timeout.
    ///
    /// A URL of another database (`postgres://…`, `mysql://…`) is refused
    /// with [`sqlx::Error::Configuration`] (sqlx alone would take it for a
    /// file name and fail later, or create a file of that name); a plain
    /// path without `sqlite:` is still taken as a file. The pool to open
    /// them with: [`pool_options`](Self::pool_options).
    pub fn connect_options(
        url: &str,
        limits: WaitLimits,
    ) -> Result<SqliteConnectOptions, StoreError> {
        if let Some(scheme) = other_scheme(url) {
            return Err(sqlx::Error::Configuration(
                format!("SqliteStore opens sqlite: URLs, not {scheme}: ones").into(),
            )
            .into());
        }
        Ok(SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(limits.lock)
            .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string()))
    }

    /// Keeps up to `capacity` loaded sessions in memory (10,000 unless told
    /// otherwise; `0` turns the cache off).
    ///
    /// A request whose session is cached costs no load: before it is
    /// served, SQLite is asked whether anything was committed to the file
    /// since the last time (`PRAGMA data_version`, one small statement
    /// shared by every request that waits for it), and if anything was,
    /// by this process or any other (`keycard-admin`, a second server on
    /// the file, the `sqlite3` shell), the whole cache is dropped. A cached
    /// session is therefore never older than the moment its request
    /// arrived, and the cache is correct however the file is written.
    ///
    /// It pays where reads outnumber commits: since any commit to the file
    /// empties it, a store on the same file as busy application tables, or
    /// a load of mostly writes, hits it seldom (and then costs one shared
    /// statement per wave of concurrent requests). An in-memory database
    /// (`sqlite::memory:`) is never cached. Reads inside a request's
    /// transaction (`CnxLayer`) never use the cache. When full, the cache
    /// starts again empty rather than track recency on every read.
    ///
    /// ```
    /// # async fn run() -> Result<(), keycard::store::StoreError> {
    /// let store = keycard::SqliteStore::connect("sqlite://sessions.db")
    ///     .await?
    ///     .cache(50_000);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn cache(mut self, capacity: usize) -> Self {
        self.read_cache = (capacity > 0)
            .then(|| <Sqlite as SqlBackend>::change_counter(&self.pool))
            .flatten()
            .map(|counter| std::sync::Arc::new(ReadCache::new(counter, capacity)));
        self
    }

    /// Whether the session is in the read cache now (for tests and
    /// metrics): its next load may be served from memory.
    pub fn is_cached(&self, id: crate::token::SessionId) -> bool {
        self.read_cache
            .as_ref()
            .is_some_and(|cache| cache.contains(id))
    }

    /// Creates the table and indexes if they are missing, by applying the
    /// files of `migrations/sqlite/` not applied yet. Safe to call at every
    /// start and from several processes at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        super::sql::migrate(self).await
    }
}

/// Timestamps are integer microseconds since the epoch.
impl Dialect for Sqlite {
    type Time = i64;

    fn encode_time(t: DateTime<Utc>) -> i64 {
        t.timestamp_micros()
    }

    fn decode_time(raw: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(raw)
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl SqlBackend for Sqlite {
    const SESSIONS: SessionSql<&'static str> = SQL;
    const USERS: UserSql<&'static str> = USERS_SQL;
    const FACTORS: FactorSql<&'static str> = FACTOR_SQL;
    const MIGRATIONS: &'static [super::migrate::Migration] = SQLITE;
    // In-process writes are short: updates rarely meet one in flight.
    const COMBINES_UPDATES: bool = false;
    const MIGRATION_BOOK: MigrationSql<&'static str> = MigrationSql {
        create_book: "CREATE TABLE IF NOT EXISTS {book} \
            (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        find_version: "SELECT version FROM {book} WHERE version = ?",
        record_version: "INSERT INTO {book} (version, applied_at) VALUES (?, ?)",
    };

    fn change_counter(pool: &SqlitePool) -> Option<std::sync::Arc<dyn ChangeCounter>> {
        Some(std::sync::Arc::new(DataVersion::new(pool)))
    }

    fn batch_statements(table: &TableName) -> (Vec<sqlx::SqlStr>, Option<Vec<sqlx::SqlStr>>) {
        let loads = one_statement(LOAD_BATCH_SQL, table);
        let writes = one_statement(WRITE_BATCH_SQL, table);
        (loads, Some(writes))
    }

    /// A transaction holding SQLite's write lock from its start, so no other
    /// writer comes between its read and its write.
    async fn begin_locked(
        conn: &mut SqliteConnection,
    ) -> Result<sqlx::Transaction<'_, Sqlite>, sqlx::Error> {
        sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await
    }

    async fn insert_returning_id(
        conn: &mut SqliteConnection,
        query: Query<Sqlite>,
    ) -> Result<i64, StoreError> {
        // Run to its end: see `returned_id`.
        returned_id::<Sqlite>(&Self::fetch_all(conn, query).await?)
    }

    async fn load_batch<'a>(
        store: &'a SqlStore<Sqlite>,
        batcher: &'a Batcher<Load<SqliteRow>>,
        ids: &'a [i64],
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        let ids = json_array(&ids)?;
        let query = Self::query(batcher.statement(0)?, &[Arg::Text(Some(&ids))]);
        Self::fetch_all(&mut *store.pool().acquire().await?, query).await
    }

    async fn write_rows<'a>(
        store: &'a SqlStore<Sqlite>,
        batcher: &'a Batcher<ValueWrite>,
        writes: &'a [&'a ValueWrite],
    ) -> Result<Vec<i64>, sqlx::Error> {
        let rows: Vec<(i64, i64, &str, Option<i64>)> = writes
            .iter()
            .map(|w| {
                (
                    w.id,
                    w.version,
                    w.data.as_str(),
                    w.at.map(Self::encode_time),
                )
            })
            .collect();
        let rows = json_array(&rows)?;
        let query = Self::query(batcher.statement(0)?, &[Arg::Text(Some(&rows))]);
        let written = Self::fetch_all(&mut *store.pool().acquire().await?, query).await?;
        written.iter().map(|row| Self::int(row, 0)).collect()
    }

    fn touch_statements(table: &TableName) -> Vec<sqlx::SqlStr> {
        one_statement(TOUCH_BATCH_SQL, table)
    }

    async fn touch_rows<'a>(
        store: &'a SqlStore<Sqlite>,
        batcher: &'a Batcher<Touch>,
        touches: &'a [&'a Touch],
    ) -> Result<Vec<i64>, sqlx::Error> {
        let rows: Vec<(i64, i64)> = touches
            .iter()
            .map(|t| (t.id, Self::encode_time(t.at)))
            .collect();
        let rows = json_array(&rows)?;
        let query = Self::query(batcher.statement(0)?, &[Arg::Text(Some(&rows))]);
        let touched = Self::fetch_all(&mut *store.pool().acquire().await?, query).await?;
        touched.iter().map(|row| Self::int(row, 0)).collect()
    }

    /// IMMEDIATE takes the write lock at once, so two processes migrating
    /// together apply each file once.
    async fn lock_migrations<'a>(
        conn: &'a mut SqliteConnection,
        _table: &'a TableName,
    ) -> Result<(), sqlx::Error> {
        Self::execute_script(conn, sqlx::SqlSafeStr::into_sql_str("BEGIN IMMEDIATE")).await
    }

    async fn unlock_migrations<'a>(
        conn: &'a mut SqliteConnection,
        _table: &'a TableName,
        applied: bool,
    ) -> Result<(), sqlx::Error> {
        let end = if applied { "COMMIT" } else { "ROLLBACK" };
        Self::execute_script(conn, sqlx::SqlSafeStr::into_sql_str(end)).await
    }
}

/// Loads of several sessions in one statement. The ids come as one JSON
/// array (`[1,2,3]`), so one prepared statement per connection serves
/// batches of any size: a statement per size would cost each connection
/// its own compiled copy of each (measured: ~1 MB more heap with 8
/// connections).
const LOAD_BATCH_SQL: &str =
    "SELECT {columns} FROM {table} WHERE id IN (SELECT value FROM json_each(?))";

/// Value writes of several sessions in one statement, each only if its
/// version matches; the rows come as one JSON array of
/// `[id, version, data, at]`.
const WRITE_BATCH_SQL: &str = "WITH v AS (SELECT value ->> 0 AS id, value ->> 1 AS version, \
    value ->> 2 AS data, value ->> 3 AS at FROM json_each(?)) \
    UPDATE {table} SET data = v.data, last_activity = COALESCE(v.at, {table}.last_activity), \
    version = {table}.version + 1 \
    FROM v WHERE {table}.id = v.id AND {table}.version = v.version RETURNING {table}.id";

/// Renewals of several sessions in one statement, each moving
/// `last_activity` forward only; the rows come as one JSON array of
/// `[id, at]`. `RETURNING` names every row that exists, moved or not.
const TOUCH_BATCH_SQL: &str = "WITH v AS (SELECT value ->> 0 AS id, value ->> 1 AS at \
    FROM json_each(?)) \
    UPDATE {table} SET last_activity = MAX({table}.last_activity, v.at) \
    FROM v WHERE {table}.id = v.id RETURNING {table}.id";

/// `values` as a JSON array, the one parameter of a batch statement.
fn json_array<T: serde::Serialize>(values: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(values).map_err(|error| sqlx::Error::Encode(Box::new(error)))
}
