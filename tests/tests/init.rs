//! `mlflow_tracing::init` end to end (its own test binary: it installs the global tracer):
//! the export worker, its maintenance timer, and the guard's shutdown inside a tokio runtime.
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::Duration;

use mlflow_tracing::entities::TraceState;
use mlflow_tracing::testing::InMemoryExporter;
use mlflow_tracing::{TracerBuilder, start_span};

#[mlflow_tracing::trace]
async fn work(n: u32) -> u32 {
    tokio::task::yield_now().await;
    n * 2
}

#[test]
fn init_exports_through_the_worker_halts_overdue_traces_and_shuts_down_in_a_runtime() {
    let exporter = InMemoryExporter::new();
    let guard = mlflow_tracing::init(
        TracerBuilder::default()
            .with_environment_metadata(false)
            .with_trace_timeout(Some(Duration::from_millis(100)))
            .with_exporter(exporter.clone()),
    )
    .unwrap();

    // A guard leaked on this thread: only the worker's once-a-second maintenance can halt it.
    std::mem::forget(start_span("stuck").start());
    std::thread::sleep(Duration::from_millis(2500));
    guard.tracer().force_flush(Duration::from_secs(5)).unwrap();
    let traces = exporter.traces();
    assert_eq!(
        traces.len(),
        1,
        "halted by the worker without any other call"
    );
    assert_eq!(traces[0].info.state, TraceState::Error);
    let worker = guard.export_stats().unwrap();
    assert_eq!((worker.enqueued, worker.exported), (1, 1));

    // Traces from a multi-thread runtime, and the guard dropped inside it: no
    // "cannot block the current thread" panic, and everything is exported.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut tasks = Vec::new();
        for n in 0..20 {
            tasks.push(tokio::spawn(work(n)));
        }
        for t in tasks {
            t.await.unwrap();
        }
        drop(guard);
    });
    assert_eq!(exporter.traces().len(), 21);
    assert!(mlflow_tracing::tracer::global_tracer().is_none());
}
