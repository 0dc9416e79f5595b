//! Decides, at build time, whether the PostgreSQL and MySQL test suites can
//! run: without their URL variable (and outside CI) their tests are marked
//! `#[ignore]` through `cfg(keycard_no_postgres_url)` /
//! `cfg(keycard_no_mysql_url)`, so `cargo test` counts them as ignored
//! rather than as passed. Under `CI` the cfg is never set: a missing URL
//! makes those tests run and fail, as CI must never skip a store silently.
//!
//! Nothing in the library reads these cfgs; only the tests do.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var_os("CI").is_some();
    for (var, cfg) in [
        ("KEYCARD_TEST_POSTGRES_URL", "keycard_no_postgres_url"),
        ("KEYCARD_TEST_MYSQL_URL", "keycard_no_mysql_url"),
    ] {
        println!("cargo::rerun-if-env-changed={var}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let set = std::env::var_os(var).is_some_and(|url| !url.is_empty());
        if !set && !ci {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
