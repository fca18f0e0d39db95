//! `cargo xtask ci`: the README's test command.

use mlflow_tracing_tests::server::MlflowServer;

use crate::{cargo, cargo_test};

/// Runs every check CI runs (format, clippy, the facade with each feature alone, tests, the
/// demo's example agent against a real server, docs); stops at the first failure.
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
    // Feature hygiene: the facade builds with no features and with each feature alone.
    for features in [
        "",
        "macros",
        "mlflow-server",
        "inference-table",
        "uc-table",
        "display",
        "tracing-layer",
        "otlp",
        "signals",
        "testing",
        "http2",
    ] {
        let mut args = vec![
            "check",
            "--quiet",
            "-p",
            "mlflow-tracing",
            "--no-default-features",
        ];
        if !features.is_empty() {
            args.extend(["--features", features]);
        }
        cargo(&format!("features [{features}]"), &args, &[])?;
    }
    // A la carte: the inference-table crate with only the manager (its example).
    cargo(
        "a la carte (inference-table + manager)",
        &[
            "run",
            "--quiet",
            "-p",
            "mlflow-tracing-exporter-inference-table",
            "--example",
            "serving",
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
        crate::RUN_AGENT,
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
