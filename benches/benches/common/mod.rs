//! Helpers shared by the bench targets.
#![allow(clippy::expect_used, reason = "benchmark code")]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mlflow_tracing::Tracer;
use mlflow_tracing::export::{
    ExportError, ExportItem, ExportWorker, TraceExporter, WorkerConfig, async_trait,
};

/// Counts the traces it is given and drops them (on the worker).
#[derive(Clone, Debug, Default)]
pub(crate) struct Counted(pub(crate) Arc<AtomicU64>);

impl Counted {
    /// Waits until `n` traces have been exported.
    pub(crate) fn wait_for(&self, n: u64) {
        while self.0.load(Ordering::Acquire) < n {
            std::hint::spin_loop();
        }
    }
}

#[async_trait]
impl TraceExporter for Counted {
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        let n = batch.len() as u64;
        drop(black_box(batch));
        self.0.fetch_add(n, Ordering::Release);
        Ok(())
    }
}

/// A tracer as `init` sets it up: an export worker (MLflow's default batching) finalizes each
/// trace on its own thread, then the counting exporter drops it.
pub(crate) fn deferred() -> (Tracer, ExportWorker, Counted) {
    let counted = Counted::default();
    let worker = ExportWorker::start(counted.clone(), WorkerConfig::default())
        .expect("the export worker starts");
    let tracer = Tracer::builder()
        .with_dispatch(Arc::new(worker.clone()))
        .with_environment_metadata(false)
        .build()
        .expect("the tracer builds");
    (tracer, worker, counted)
}
