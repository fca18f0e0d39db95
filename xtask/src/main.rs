//! Project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: everything CI checks, in order: formatting, clippy (`-D warnings`, all targets and
//!   features), the full test suite (which provisions the pinned Python `mlflow` itself), the
//!   example agent traced into a fresh local MLflow server (what `demo` runs), and
//!   `cargo doc` with warnings denied. This is the README's test command. It ends with one line,
//!   `ci: N passed, M failed`, summing every test binary and doc-test run.
//! - `demo [stop]`: starts a local MLflow server (or uses `MLFLOW_TRACKING_URI`), traces the
//!   example agent into it and prints where to see the traces; `stop` stops that server.
//! - `notebook`: the notebook display in a real evcxr Jupyter kernel (built once and cached;
//!   about 20 minutes), executed with nbclient against a real MLflow server and checked in
//!   headless Chromium. Not part of `ci`.
//! - `bench [filter]`: the criterion benches, then each SDK measurement next to its bare
//!   OpenTelemetry counterpart from the same run, with the ratio and its target; the memory held
//!   by large traces; the end-to-end burst against a real server with its ceiling and the Python
//!   SDK. Writes `target/bench/report.md` and `chart.svg`; fails when a target is missed.
//!   `bench e2e` and `bench memory` run only those parts; `bench scale` (not part of the full
//!   run: it needs PostgreSQL) runs many producers into a PostgreSQL-backed server.
//! - `compat`: the SDK against real MLflow servers of several versions (newest, 3.17.2, 3.4.0,
//!   3.1.4, 2.22), each from PyPI in a cached venv; prints a table. Not part of `ci`.
//! - `fuzz [cases]`: long fuzzing campaigns (default 1,000,000 cases per parser) of every parser
//!   that reads outside input. Not part of `ci` (which runs 256 cases per parser).
#![expect(
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "xtask is a command-line tool; it reports on stdout and stderr"
)]

use std::io::BufRead as _;
use std::process::{Command, ExitCode, Stdio};

mod bench;
mod ci;
mod compat;
mod demo;
mod e2e;
mod fuzz;
mod notebook;
mod report;
mod scale;

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <command>\n\ncommands:\n  ci               fmt check, clippy -D warnings, tests, docs (the README's test command)\n  bench [filter]   benchmarks and their targets (filters: a criterion group, e2e, memory, scale)\n  demo [stop]      trace the example agent into a local MLflow server (the README's main command)\n  notebook         the notebook display in a real evcxr kernel (slow the first time: builds evcxr)\n  fuzz [cases]     long fuzzing of every parser of outside input (default 1,000,000 cases each)\n  compat           the SDK against real MLflow servers from 2.22 to the newest release"
    );
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("bench") => bench::run(args.get(1).map(String::as_str)),
        Some("demo") => demo::run(args.get(1).map(String::as_str)),
        Some("notebook") => notebook::run(),
        Some("fuzz") => fuzz::run(args.get(1).map(String::as_str)),
        Some("compat") => compat::run(),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo run` of the example agent (the demo's main job; CI and `compat` run it too).
pub(crate) const RUN_AGENT: &[&str] = &[
    "run",
    "--quiet",
    "-p",
    "mlflow-tracing",
    "--example",
    "agent",
];

pub(crate) fn cargo_command(
    step: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Command, String> {
    eprintln!("==> {step}: cargo {}", args.join(" "));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?;
    let mut cmd = Command::new(cargo);
    cmd.args(args).envs(env.iter().copied()).current_dir(root);
    Ok(cmd)
}

/// Runs `cargo <args>` in the workspace root, failing with the step's name.
pub(crate) fn cargo(step: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let status = cargo_command(step, args, env)?
        .status()
        .map_err(|e| format!("{step}: cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

/// Runs a `cargo test` command, echoing its output, and returns the summed
/// `(passed, failed)` counts of its `test result:` lines.
pub(crate) fn cargo_test(step: &str, args: &[&str]) -> Result<(u64, u64), String> {
    let mut child = cargo_command(step, args, &[])?
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{step}: cannot run cargo: {e}"))?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let line = line.map_err(|e| format!("{step}: reading output: {e}"))?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                passed += count(rest, " passed");
                failed += count(rest, " failed");
            }
        }
    }
    let status = child.wait().map_err(|e| format!("{step}: {e}"))?;
    if status.success() {
        Ok((passed, failed))
    } else {
        Err(format!(
            "{step} failed ({status}): {passed} passed, {failed} failed"
        ))
    }
}

/// The number before `label` in a summary such as `ok. 8 passed; 0 failed; 0 ignored`.
fn count(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
        })
        .find_map(|part| part.strip_suffix(label))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_test_result_lines() {
        let line =
            "ok. 28 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.03s";
        assert_eq!(super::count(line, " passed"), 28);
        assert_eq!(super::count(line, " failed"), 2);
        assert_eq!(super::count("FAILED. 1 passed; 3 failed;", " failed"), 3);
    }
}
