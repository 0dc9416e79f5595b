//! The behaviour suite on PostgreSQL (`KEYCARD_TEST_POSTGRES_URL`), one
//! table per test.
#![cfg(feature = "postgres")]

mod common;
mod suite;

behaviour_suite!(crate::common::stores::postgres);
