//! What differs between the databases a [`Cnx`](super::Cnx) can run on:
//! how a request transaction begins, and how row-level security learns who
//! the user is.

use std::future::Future;
use std::pin::Pin;

use super::security::Applied;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

mod sealed {
    use super::{Applied, BoxFuture};

    /// What keycard needs of a [`CnxDatabase`](super::CnxDatabase); sealed
    /// so that only keycard implements it.
    pub trait Sealed: sqlx::Database {
        /// The statement that begins a request transaction.
        const BEGIN: &'static str;

        /// Tells the transaction who the user is, for the database's
        /// row-level security. Only PostgreSQL has any.
        fn apply_security<'a>(
            _conn: &'a mut Self::Connection,
            _security: &'a Applied,
        ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
            Box::pin(std::future::ready(Ok(())))
        }
    }
}

/// A database a [`Cnx`](super::Cnx) can run on: SQLite, PostgreSQL or
/// MySQL/MariaDB, with their features. Sealed: keycard implements it.
pub trait CnxDatabase: sqlx::Database + sealed::Sealed {}

#[cfg(feature = "sqlite")]
impl CnxDatabase for sqlx::Sqlite {}
#[cfg(feature = "sqlite")]
impl sealed::Sealed for sqlx::Sqlite {
    // IMMEDIATE takes the write lock at once: a transaction that read first
    // and then wanted to write could otherwise fail with SQLITE_BUSY instead
    // of waiting its turn.
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
}

#[cfg(feature = "mysql")]
impl CnxDatabase for sqlx::MySql {}
#[cfg(feature = "mysql")]
impl sealed::Sealed for sqlx::MySql {
    const BEGIN: &'static str = "BEGIN";
}

#[cfg(feature = "postgres")]
impl CnxDatabase for sqlx::Postgres {}
#[cfg(feature = "postgres")]
impl sealed::Sealed for sqlx::Postgres {
    const BEGIN: &'static str = "BEGIN";

    fn apply_security<'a>(
        conn: &'a mut sqlx::PgConnection,
        security: &'a Applied,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            // `true`: transaction-local, so nothing outlives the transaction
            // on a pooled connection.
            sqlx::query(
                "SELECT set_config($1, $2, true), set_config($3, $4, true), \
                 set_config($5, $6, true)",
            )
            .bind(&security.user_setting)
            .bind(security.user_id.as_deref().unwrap_or(""))
            .bind(&security.read_setting)
            .bind(on_off(security.read))
            .bind(&security.write_setting)
            .bind(on_off(security.write))
            .execute(&mut *conn)
            .await?;
            if let Some(role) = &security.role {
                // A validated identifier: the only text formatted into SQL.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET LOCAL ROLE \"{role}\"")))
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        })
    }
}

#[cfg(feature = "postgres")]
fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
