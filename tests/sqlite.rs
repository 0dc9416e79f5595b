//! The behaviour suite on SQLite (a real database file per test).

mod common;
mod suite;

behaviour_suite!(crate::common::stores::sqlite);

/// The same suite with statement batching off.
mod unbatched {
    crate::behaviour_suite!(crate::common::stores::sqlite_unbatched);
}

cnx_suite!(sqlx::Sqlite, crate::common::cnx::sqlite);

#[path = "sqlite_only/connect_options.rs"]
mod connect_options;
#[path = "sqlite_only/read_cache.rs"]
mod read_cache;
#[path = "sqlite_only/wal_size.rs"]
mod wal_size;
