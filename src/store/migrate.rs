//! The migrations every SQL store applies, and the bookkeeping they share.
//!
//! Migration files live in `migrations/<backend>/` and are compiled in. They
//! use `{table}` where the validated table name goes, so one database can hold
//! several session tables (one per app, or one per test). Applied versions are
//! recorded in `<table>_migrations`.

use super::TableName;

/// One migration file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    /// Applied in ascending order; recorded once applied.
    pub(crate) version: i64,
    /// The file's SQL, with `{table}` placeholders.
    pub(crate) sql: &'static str,
}

impl Migration {
    /// The SQL with the table name in place.
    pub(crate) fn render(&self, table: &TableName) -> String {
        self.sql.replace("{table}", table.as_str())
    }
}

/// The SQLite migrations, oldest first.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../migrations/sqlite/0001_create_sessions.sql"),
}];
