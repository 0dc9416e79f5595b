//! What the SQL stores share: the generic [`SqlStore`], their statements
//! (formatted once with the table name), the checks that turn a raw row into
//! a [`SessionRecord`](super::SessionRecord), deadlock retries, and the macros that implement the
//! store traits once for every backend.

use super::TableName;

mod retry;
mod session_store;
mod statements;
mod user_store;

pub(crate) use retry::{DEADLOCK_ATTEMPTS, deadlock_pause, retry_deadlocks};
pub(crate) use session_store::sql_store;
pub(crate) use statements::*;
pub(crate) use user_store::user_store;

/// A session store over an sqlx pool. Use it through its aliases,
/// `SqliteStore`, `PostgresStore`
/// and `MySqlStore`, as sqlx's `PgPool` is a `Pool<Postgres>`.
pub struct SqlStore<DB: sqlx::Database> {
    pub(crate) pool: sqlx::Pool<DB>,
    pub(crate) table: TableName,
    pub(crate) sql: std::sync::Arc<Statements>,
    pub(crate) users_sql: std::sync::Arc<UserStatements>,
}

impl<DB: sqlx::Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            sql: self.sql.clone(),
            users_sql: self.users_sql.clone(),
        }
    }
}

impl<DB: sqlx::Database> std::fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("database", &DB::NAME)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl<DB: sqlx::Database> SqlStore<DB> {
    /// A store on `pool` and `table`, with one backend's SQL.
    pub(crate) fn build(
        pool: sqlx::Pool<DB>,
        table: TableName,
        sql: &StatementTexts,
        users_sql: &UserStatementTexts,
    ) -> Self {
        Self {
            sql: std::sync::Arc::new(Statements::new(sql, &table)),
            users_sql: std::sync::Arc::new(UserStatements::new(users_sql, &table)),
            pool,
            table,
        }
    }

    /// The pool this store uses (the application may share it).
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    /// The sessions table; the accounts and API tokens tables are named
    /// after it (`<table>_users`, `<table>_api_tokens`).
    pub fn table_name(&self) -> &TableName {
        &self.table
    }
}

impl<DB: crate::cnx::CnxDatabase> SqlStore<DB> {
    /// The connection a session read runs on: the request's open
    /// transaction on this pool when there is one (see
    /// [`CnxLayer`](crate::cnx::CnxLayer)), else a pooled connection.
    pub(crate) async fn read_conn(
        &self,
    ) -> Result<crate::cnx::CnxConn<DB>, crate::store::StoreError> {
        if let Some(conn) = crate::cnx::ambient::join_read(&self.pool).await {
            return Ok(conn);
        }
        Ok(crate::cnx::CnxConn::pooled(self.pool.acquire().await?))
    }

    /// The connection a session write runs on: the request's transaction
    /// when a [`CnxLayer`](crate::cnx::CnxLayer) on this pool holds one (or
    /// begins one beside the session save for its hooks), else a pooled
    /// connection of its own.
    pub(crate) async fn write_conn(
        &self,
    ) -> Result<crate::cnx::CnxConn<DB>, crate::store::StoreError> {
        if let Some(conn) = crate::cnx::ambient::join(&self.pool).await? {
            return Ok(conn);
        }
        Ok(crate::cnx::CnxConn::pooled(self.pool.acquire().await?))
    }
}
