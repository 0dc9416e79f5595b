//! The behaviour suite on MySQL/MariaDB (`KEYCARD_TEST_MYSQL_URL`), one
//! table per test.
#![cfg(feature = "mysql")]

mod common;
mod suite;

behaviour_suite!(crate::common::stores::mysql);

cnx_suite!(sqlx::MySql, crate::common::cnx::mysql);
