//! `cargo xtask ci`: the README's test command.

use crate::cargo;

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
    cargo("tests", &["test", "--workspace", "--all-features"], &[])?;
    cargo(
        "docs",
        &["doc", "--workspace", "--all-features", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    eprintln!("==> ci: all checks passed");
    Ok(())
}
