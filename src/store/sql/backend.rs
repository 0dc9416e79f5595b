//! What each SQL database does its own way, so that the store's behaviour
//! is written once, in plain generic Rust (`session_store.rs`,
//! `user_store.rs`, `migrate.rs`).
//!
//! Three traits, narrowest first:
//! - [`Dialect`]: how a timestamp is kept, and how many rows a statement
//!   changed (sqlx has no trait for either);
//! - [`Io`]: binding an [`Arg`], running a statement, reading a column. One
//!   blanket impl serves every dialect, so the sqlx bounds (`Encode`,
//!   `Decode`, `Executor`, …) are written here once instead of on every
//!   generic function;
//! - [`SqlBackend`]: the backend's SQL text and the few operations that
//!   differ: the transaction of a locked read, the id of an insert, the
//!   batch statements, the migration lock. Crate-private, so sealed.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::{Database, Decode, Encode, SqlStr, Type};

use super::{
    Batcher, FactorSql, Load, MigrationSql, SessionSql, SqlStore, Touch, UserSql, ValueWrite,
};
use crate::store::StoreError;
use crate::store::migrate::Migration;
use crate::store::request_tx::JoinableDatabase;

/// A statement parameter: the few types keycard's statements take.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    Text(Option<&'a str>),
    Bytes(&'a [u8]),
    Time(Option<DateTime<Utc>>),
}

/// A statement with its parameters bound, ready to run.
pub(crate) type Query<DB> = sqlx::query::Query<'static, DB, <DB as Database>::Arguments>;

/// How one database keeps a timestamp and counts changed rows.
pub(crate) trait Dialect: Database {
    /// A timestamp as the column holds it.
    type Time: for<'q> Encode<'q, Self>
        + for<'r> Decode<'r, Self>
        + Type<Self>
        + Send
        + Sync
        + 'static;

    /// `t` as the column holds it.
    fn encode_time(t: DateTime<Utc>) -> Self::Time;

    /// A column's timestamp, or `None` if it is out of range.
    fn decode_time(raw: Self::Time) -> Option<DateTime<Utc>>;

    /// The rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

/// Statements and columns, for generic code (see the module docs).
pub(crate) trait Io: Dialect {
    /// `sql` with `args` bound, in order.
    fn query(sql: &SqlStr, args: &[Arg<'_>]) -> Query<Self> {
        Self::bind(sqlx::query(sql.clone()), args)
    }

    /// `query` with `args` bound after those it has.
    fn bind(query: Query<Self>, args: &[Arg<'_>]) -> Query<Self>;

    /// Runs `query`; the rows it changed.
    fn execute(
        conn: &mut Self::Connection,
        query: Query<Self>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Runs `query`; its first row, if any.
    fn fetch_optional(
        conn: &mut Self::Connection,
        query: Query<Self>,
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send;

    /// Runs `query` to its end; all its rows.
    fn fetch_all(
        conn: &mut Self::Connection,
        query: Query<Self>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send;

    /// Runs `script`, which may hold several statements and no parameters.
    fn execute_script(
        conn: &mut Self::Connection,
        script: SqlStr,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// An integer column.
    fn int(row: &Self::Row, column: usize) -> Result<i64, sqlx::Error>;
    /// A nullable integer column.
    fn opt_int(row: &Self::Row, column: usize) -> Result<Option<i64>, sqlx::Error>;
    /// A boolean column.
    fn boolean(row: &Self::Row, column: usize) -> Result<bool, sqlx::Error>;
    /// A text column.
    fn text(row: &Self::Row, column: usize) -> Result<String, sqlx::Error>;
    /// A nullable text column.
    fn opt_text(row: &Self::Row, column: usize) -> Result<Option<String>, sqlx::Error>;
    /// A binary column.
    fn bytes(row: &Self::Row, column: usize) -> Result<Vec<u8>, sqlx::Error>;
    /// A nullable binary column.
    fn opt_bytes(row: &Self::Row, column: usize) -> Result<Option<Vec<u8>>, sqlx::Error>;
    /// A nullable timestamp column; out of range is [`StoreError::Corrupt`].
    fn time(row: &Self::Row, column: usize) -> Result<Option<DateTime<Utc>>, StoreError>;
}

impl<DB> Io for DB
where
    DB: Dialect,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    bool: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    Vec<u8>: for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB>,
    Option<i64>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<String>: for<'r> Decode<'r, DB>,
    Option<DB::Time>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
{
    fn bind(query: Query<Self>, args: &[Arg<'_>]) -> Query<Self> {
        args.iter().fold(query, |query, arg| match *arg {
            Arg::Int(v) => query.bind(v),
            Arg::OptInt(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Bytes(v) => query.bind(v),
            Arg::Time(v) => query.bind(v.map(DB::encode_time)),
        })
    }

    async fn execute(conn: &mut Self::Connection, query: Query<Self>) -> Result<u64, sqlx::Error> {
        Ok(DB::rows_affected(&query.execute(conn).await?))
    }

    fn fetch_optional(
        conn: &mut Self::Connection,
        query: Query<Self>,
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send {
        query.fetch_optional(conn)
    }

    fn fetch_all(
        conn: &mut Self::Connection,
        query: Query<Self>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send {
        query.fetch_all(conn)
    }

    async fn execute_script(
        conn: &mut Self::Connection,
        script: SqlStr,
    ) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(script).execute(conn).await?;
        Ok(())
    }

    fn int(row: &Self::Row, column: usize) -> Result<i64, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }

    fn opt_int(row: &Self::Row, column: usize) -> Result<Option<i64>, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }

    fn boolean(row: &Self::Row, column: usize) -> Result<bool, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }

    fn text(row: &Self::Row, column: usize) -> Result<String, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }

    fn opt_text(row: &Self::Row, column: usize) -> Result<Option<String>, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }

    fn bytes(row: &Self::Row, column: usize) -> Result<Vec<u8>, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }

    fn opt_bytes(row: &Self::Row, column: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }

    fn time(row: &Self::Row, column: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
        let raw: Option<DB::Time> = sqlx::Row::try_get(row, column)?;
        raw.map(|raw| {
            DB::decode_time(raw).ok_or(StoreError::Corrupt {
                id: 0,
                what: "a timestamp is out of range",
            })
        })
        .transpose()
    }
}

/// One SQL database as keycard's stores use it: its SQL text, and what it
/// does differently.
pub(crate) trait SqlBackend: Io + JoinableDatabase {
    /// The session statements, with `{table}` and `{columns}` to fill in.
    const SESSIONS: SessionSql<&'static str>;
    /// The account and API token statements.
    const USERS: UserSql<&'static str>;
    /// The second-factor statements.
    const FACTORS: FactorSql<&'static str>;
    /// The migration files, oldest first.
    const MIGRATIONS: &'static [Migration];
    /// [`SessionStore::combines_updates`](crate::store::SessionStore::combines_updates).
    const COMBINES_UPDATES: bool;
    /// The statements that record which migrations were applied.
    const MIGRATION_BOOK: MigrationSql<&'static str>;

    /// The batch statements of a store on `table`: for loads, and for value
    /// writes where the backend can batch them (`None`: each alone).
    fn batch_statements(table: &crate::store::TableName) -> (Vec<SqlStr>, Option<Vec<SqlStr>>);

    /// What tells a store on `pool` whether anything was committed since it
    /// last looked, so that it may cache its loads (`read_cache.rs`);
    /// `None` where the database has nothing that cheap.
    fn change_counter(
        _pool: &sqlx::Pool<Self>,
    ) -> Option<std::sync::Arc<dyn super::read_cache::ChangeCounter>> {
        None
    }

    /// A transaction whose locked read (`load_for_update`) keeps other
    /// writers of the row out until it ends.
    fn begin_locked(
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<sqlx::Transaction<'_, Self>, sqlx::Error>> + Send;

    /// Runs an `INSERT` to its end; the new row's id.
    fn insert_returning_id(
        conn: &mut Self::Connection,
        query: Query<Self>,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// The rows of `ids` (two or more), in one statement.
    fn load_batch<'a>(
        store: &'a SqlStore<Self>,
        batcher: &'a Batcher<Load<Self::Row>>,
        ids: &'a [i64],
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'a;

    /// Writes `writes` (two or more, distinct sessions) in one statement;
    /// the ids of the rows written. Only called where
    /// [`batch_statements`](Self::batch_statements) gave write statements;
    /// the default, for a backend without them, writes each alone.
    fn write_rows<'a>(
        store: &'a SqlStore<Self>,
        batcher: &'a Batcher<ValueWrite>,
        writes: &'a [&'a ValueWrite],
    ) -> impl Future<Output = Result<Vec<i64>, sqlx::Error>> + Send + 'a {
        let _ = batcher;
        async move {
            let mut written = Vec::new();
            for write in writes {
                written.extend(store.write_one(write).await?);
            }
            Ok(written)
        }
    }

    /// The statements of a store's renewal (`touch`) batches on `table`.
    fn touch_statements(table: &crate::store::TableName) -> Vec<SqlStr>;

    /// Renews `touches` (two or more, distinct sessions) in one statement,
    /// each moving `last_activity` forward only; the ids of the rows that
    /// exist.
    fn touch_rows<'a>(
        store: &'a SqlStore<Self>,
        batcher: &'a Batcher<Touch>,
        touches: &'a [&'a Touch],
    ) -> impl Future<Output = Result<Vec<i64>, sqlx::Error>> + Send + 'a;

    /// Keeps other processes from migrating `table` until
    /// [`unlock_migrations`](Self::unlock_migrations).
    fn lock_migrations<'a>(
        conn: &'a mut Self::Connection,
        table: &'a crate::store::TableName,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a;

    /// Ends what [`lock_migrations`](Self::lock_migrations) began: keeps
    /// the applied files if `applied`.
    fn unlock_migrations<'a>(
        conn: &'a mut Self::Connection,
        table: &'a crate::store::TableName,
        applied: bool,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a;
}
