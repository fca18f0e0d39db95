//! Running one test of this binary again in a child process, for what needs a process of its
//! own: the environment `init` reads, a global subscriber or tracer, signals, exiting. The
//! child finds [`CHILD`] set to its role and does the child's part of the test.

use std::path::Path;
use std::process::Command;

/// The variable a child finds set, to its role (`"1"` where a test has only one).
pub(crate) const CHILD: &str = "MLFLOW_TRACING_TEST_CHILD";

/// This test binary, set to run the one test `test` (its full name: `test_name!`) alone, its
/// output not captured, as `role`. The caller adds the child's environment.
pub(crate) fn command(test: &str, role: &str) -> Command {
    command_of(
        &std::env::current_exe().expect("the test binary's path"),
        test,
        role,
    )
}

/// [`command`] for `exe`, this test binary under another name (a hard link).
pub(crate) fn command_of(exe: &Path, test: &str, role: &str) -> Command {
    let mut command = Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, role);
    command
}

/// Runs `command` to its end: its stdout and stderr. Panics, showing both, unless it succeeded.
pub(crate) fn output_ok(command: &mut Command) -> (String, String) {
    let out = command.output().expect("the child starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// The JSON a child printed after `RESULT ` (the first such line of `output`).
pub(crate) fn result(output: &str) -> serde_json::Value {
    let line = output
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{output}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("RESULT is not JSON ({e}): {line}"))
}
