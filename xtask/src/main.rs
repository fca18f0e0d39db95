//! Project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: everything CI checks, in order: formatting, clippy (`-D warnings`, all targets and
//!   features), the full test suite (which provisions the pinned Python `mlflow` itself), and
//!   `cargo doc` with warnings denied. This is the README's test command.

#![expect(
    clippy::print_stderr,
    reason = "xtask is a command-line tool; it reports progress on stderr"
)]

use std::process::{Command, ExitCode};

mod ci;

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <command>\n\ncommands:\n  ci    fmt check, clippy -D warnings, tests, docs (the README's test command)"
    );
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
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

/// Runs `cargo <args>` in the workspace root, failing with the step's name.
pub(crate) fn cargo(step: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    eprintln!("==> {step}: cargo {}", args.join(" "));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?;
    let status = Command::new(cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root)
        .status()
        .map_err(|e| format!("{step}: cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}
