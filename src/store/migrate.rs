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

/// A backend's migrations, oldest first: the files of
/// `migrations/<backend>/`, compiled in.
macro_rules! migrations {
    ($backend:literal) => {
        &[
            Migration {
                version: 1,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0001_create_sessions.sql"
                )),
            },
            Migration {
                version: 2,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0002_auth_version.sql"
                )),
            },
            Migration {
                version: 3,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0003_users_and_api_tokens.sql"
                )),
            },
            Migration {
                version: 4,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0004_credentials.sql"
                )),
            },
            Migration {
                version: 5,
                sql: include_str!(concat!("../../migrations/", $backend, "/0005_device.sql")),
            },
            Migration {
                version: 6,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0006_one_time_tokens.sql"
                )),
            },
            Migration {
                version: 7,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0007_remember_me.sql"
                )),
            },
            Migration {
                version: 8,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0008_second_factor.sql"
                )),
            },
            Migration {
                version: 9,
                sql: include_str!(concat!("../../migrations/", $backend, "/0009_passkeys.sql")),
            },
            Migration {
                version: 10,
                sql: include_str!(concat!(
                    "../../migrations/",
                    $backend,
                    "/0010_user_recency.sql"
                )),
            },
        ]
    };
}

/// The SQLite migrations.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[Migration] = migrations!("sqlite");

/// The PostgreSQL migrations.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[Migration] = migrations!("postgres");

/// The MySQL/MariaDB migrations.
#[cfg(feature = "mysql")]
pub(crate) const MYSQL: &[Migration] = migrations!("mysql");

/// A stable 64-bit key for a table's migration lock (PostgreSQL advisory
/// locks take a number): FNV-1a of the table name.
#[cfg(feature = "postgres")]
pub(crate) fn lock_key(table: &TableName) -> i64 {
    let hash = table
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    i64::from_ne_bytes(hash.to_ne_bytes())
}
