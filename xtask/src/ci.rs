//! `cargo xtask ci`: the README's test command.

use mlflow_tracing_tests::server::MlflowServer;

use crate::{cargo, cargo_test};

/// Runs every check CI runs (format, clippy, tests, the demo's example agent against a real
/// server, docs); stops at the first failure.
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
    // The README's main command traces the example agent; run it against a fresh server.
    let server = MlflowServer::start().map_err(|e| format!("demo: {e}"))?;
    cargo(
        "demo (the example agent against a real MLflow server)",
        &[
            "run",
            "--quiet",
            "-p",
            "mlflow-tracing",
            "--example",
            "agent",
        ],
        &[("MLFLOW_TRACKING_URI", server.url())],
    )?;
    drop(server);
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
