//! Finding the example binaries that black-box tests run.

use std::path::PathBuf;

/// The example `name`, as cargo built it beside this test (a full
/// `cargo test` builds every example; for one test alone, run
/// `cargo build --all-features --examples` first).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built: run through `cargo test`, or `cargo build --all-features --examples` first",
        path.display()
    );
    path
}
