//! What depends on the process environment: `init` under `MLFLOW_ENABLE_ASYNC_TRACE_LOGGING`,
//! and `mlflow.user` without user variables. Each test re-runs itself in a child process with
//! the environment changed (changing it in this process would race other tests).
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlflow_tracing::export::{ExportError, ExportItem, TraceExporter, async_trait};
use mlflow_tracing::{InitError, TracerBuilder, start_span};

use crate::rerun::{self, CHILD};

/// Records the thread each export ran on; sleeps on tokio's timer, so it needs a runtime.
#[derive(Debug, Default, Clone)]
struct ThreadRecorder(Arc<Mutex<Vec<Option<String>>>>);

#[async_trait]
impl TraceExporter for ThreadRecorder {
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let name = std::thread::current().name().map(str::to_owned);
        self.0
            .lock()
            .unwrap()
            .extend(batch.iter().map(|_| name.clone()));
        Ok(())
    }
}

fn child(name: &str, value: &str) -> String {
    let (stdout, _) = rerun::output_ok(
        rerun::command(&test_name!(name), "child").env("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", value),
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test:\n{stdout}"
    );
    stdout
}

#[test]
fn async_logging_false_exports_on_the_callers_thread_before_the_root_span_returns() {
    if std::env::var_os(CHILD).is_none() {
        let out = child(
            "async_logging_false_exports_on_the_callers_thread_before_the_root_span_returns",
            "false",
        );
        assert!(
            out.contains("child: exported on the caller's thread"),
            "{out}"
        );
        return;
    }
    let exporter = ThreadRecorder::default();
    let guard = mlflow_tracing::init(
        TracerBuilder::default()
            .with_environment_metadata(false)
            .with_exporter(exporter.clone()),
    )
    .unwrap();
    let caller = std::thread::current().name().map(str::to_owned);
    drop(start_span("sync").start());
    assert_eq!(
        *exporter.0.lock().unwrap(),
        [caller],
        "exported before returning"
    );

    // Inside a multi-thread runtime too (on a helper thread, since blocking a runtime
    // thread on another runtime is not allowed), still before the span's end returns.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        drop(start_span("in runtime").start());
        assert_eq!(exporter.0.lock().unwrap().len(), 2);
    });
    let stats = guard.export_stats().unwrap();
    assert_eq!((stats.enqueued, stats.exported, stats.failed), (2, 2, 0));
    runtime.block_on(async move { drop(guard) });
    println!("child: exported on the caller's thread");
}

#[test]
fn async_logging_must_be_a_boolean() {
    if std::env::var_os(CHILD).is_none() {
        let out = child("async_logging_must_be_a_boolean", "sometimes");
        assert!(out.contains("child: rejected"), "{out}");
        return;
    }
    let err =
        mlflow_tracing::init(TracerBuilder::default().with_exporter(ThreadRecorder::default()))
            .unwrap_err();
    assert!(matches!(err, InitError::Config(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"),
        "{err}"
    );
    println!("child: rejected: {err}");
}

/// With none of `LOGNAME`, `USER`, `LNAME`, `USERNAME` set (systemd services, containers),
/// `mlflow.user` is what Python's `getpass.getuser()` finds in the same environment: the
/// password database's name for the process's user.
#[test]
fn the_os_user_is_pythons_without_user_variables() {
    const VARS: [&str; 4] = ["LOGNAME", "USER", "LNAME", "USERNAME"];
    if std::env::var_os(CHILD).is_none() {
        let mut command = rerun::command(
            &test_name!("the_os_user_is_pythons_without_user_variables"),
            "child",
        );
        for v in VARS {
            command.env_remove(v);
        }
        let (stdout, _) = rerun::output_ok(&mut command);
        let ours = stdout
            .lines()
            .find_map(|l| {
                l.split_once("child: mlflow.user=")
                    .map(|(_, u)| u.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("the child reported the user:\n{stdout}"));

        let python = mlflow_tracing_tests::python::mlflow_python().unwrap();
        let mut py = Command::new(python);
        py.args(["-c", "import getpass; print(getpass.getuser())"]);
        for v in VARS {
            py.env_remove(v);
        }
        let out = py.output().unwrap();
        if out.status.success() {
            let theirs = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(!theirs.is_empty());
            assert_eq!(ours, theirs);
        } else {
            // A uid with no password database entry: Python's getpass raises, MLflow writes
            // "unknown".
            assert_eq!(ours, "unknown");
        }
        return;
    }
    for v in VARS {
        assert!(std::env::var_os(v).is_none(), "{v} is unset in the child");
    }
    let capture =
        mlflow_tracing::testing::Capture::with(|b| b.with_environment_metadata(true)).unwrap();
    capture.run(|| drop(start_span("who").start()));
    let traces = capture.traces();
    let user = &traces[0].info.trace_metadata["mlflow.user"];
    println!("child: mlflow.user={user}");
}
