//! `init` under `MLFLOW_ENABLE_ASYNC_TRACE_LOGGING`: the test re-runs itself in a child process
//! with the variable set (setting it in this process would race other tests).
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlflow_tracing::{
    ExportError, ExportItem, InitError, TraceExporter, TracerBuilder, async_trait, start_span,
};

const ROLE: &str = "MLFLOW_TRACING_TEST_CHILD";

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
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "child")
        .env("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", value)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test:\n{stdout}"
    );
    stdout
}

#[test]
fn async_logging_false_exports_on_the_callers_thread_before_the_root_span_returns() {
    if std::env::var_os(ROLE).is_none() {
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
    if std::env::var_os(ROLE).is_none() {
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
