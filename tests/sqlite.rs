//! The behaviour suite on SQLite (a real database file per test).

mod common;
mod suite;

behaviour_suite!(crate::common::stores::sqlite);

cnx_suite!(sqlx::Sqlite, crate::common::cnx::sqlite);
