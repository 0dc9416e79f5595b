//! The behaviour suite on SQLite (a real database file per test).

mod common;
mod suite;

behaviour_suite!(crate::common::stores::sqlite);
