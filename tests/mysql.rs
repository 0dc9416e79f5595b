//! The behaviour suite on MySQL/MariaDB (`KEYCARD_TEST_MYSQL_URL`), one
//! table per test.
#![cfg(feature = "mysql")]

mod common;
mod suite;

behaviour_suite!(
    #[cfg_attr(keycard_no_mysql_url, ignore = "KEYCARD_TEST_MYSQL_URL is not set")]
    crate::common::stores::mysql
);

cnx_suite!(
    #[cfg_attr(keycard_no_mysql_url, ignore = "KEYCARD_TEST_MYSQL_URL is not set")]
    sqlx::MySql,
    crate::common::cnx::mysql
);
