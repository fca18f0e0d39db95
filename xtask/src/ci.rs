//! `cargo xtask ci`: the README's test command.

use crate::{cargo, cargo_test};

/// Runs every check CI runs; stops at the first failure.
pub(crate) fn run() -> Result<(), String> {
    cargo("format", &["fmt", "--all", "--check"], &[])?;
    cargo(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    let (passed, failed) = cargo_test("tests", &["test", "--workspace", "--all-features"])?;
    if passed == 0 {
        return Err("tests: no test ran".into());
    }
    cargo(
        "docs",
        &["doc", "--workspace", "--all-features", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    eprintln!("==> ci: all checks passed");
    // The closing line CI reads: the total over every test binary and doc-test run.
    println!("ci: {passed} passed, {failed} failed");
    Ok(())
}
