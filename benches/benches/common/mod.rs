//! Helpers shared by the bench targets.
#![allow(clippy::expect_used, reason = "benchmark code")]

use std::hint::black_box;
use std::sync::Arc;

use mlflow_tracing::Tracer;
use mlflow_tracing::export::{
    ExportError, ExportItem, ExportWorker, TraceExporter, WorkerConfig, async_trait,
};

/// Drops the traces it is given (on the worker).
#[derive(Clone, Debug, Default)]
pub(crate) struct Dropping;

#[async_trait]
impl TraceExporter for Dropping {
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        drop(black_box(batch));
        Ok(())
    }
}

/// Waits (untimed, in the benches) until the worker has exported everything queued, as
/// between a service's requests. The worker is not woken per batch while traces keep coming
/// (it polls), so waiting for it to notice would take milliseconds.
pub(crate) fn settle(worker: &ExportWorker) {
    use mlflow_tracing::export::Dispatch as _;
    worker
        .force_flush(std::time::Duration::from_secs(10))
        .expect("the worker flushes");
}

/// A tracer as `init` sets it up: an export worker (MLflow's default batching) finalizes each
/// trace on its own thread, then the exporter drops it.
pub(crate) fn deferred() -> (Tracer, ExportWorker) {
    let worker =
        ExportWorker::start(Dropping, WorkerConfig::default()).expect("the export worker starts");
    let tracer = Tracer::builder()
        .with_dispatch(Arc::new(worker.clone()))
        .with_environment_metadata(false)
        .build()
        .expect("the tracer builds");
    (tracer, worker)
}
