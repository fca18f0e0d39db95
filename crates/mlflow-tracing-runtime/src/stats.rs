//! The export runtime's counters, and how a failed export is counted.

use std::sync::atomic::Ordering;

mlflow_tracing_manager::counter_set! {
    /// Counters of an [`ExportWorker`]. `enqueued = exported + failed + in flight`; items dropped
    /// never entered the queue.
    pub struct WorkerStats;
    pub(crate) struct Counters;
    counters {
        /// Items accepted into the queue.
        enqueued,
        /// Items the exporter accepted.
        exported,
        /// Items whose export failed, panicked or timed out.
        failed,
        /// Items dropped because the queue was full.
        dropped_queue_full,
        /// Items dropped because the worker was shut down.
        dropped_shutdown,
        /// Items still queued or exporting when `shutdown` ran out of time (lost if the process
        /// exits now).
        dropped_shutdown_timeout,
    }
}

impl Counters {
    /// Counts the outcome of one export of `n` items (a failure is also logged).
    pub(crate) fn record(&self, n: u64, result: Result<(), Failure>) {
        match result {
            Ok(()) => {
                self.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(Failure { message, items }) => {
                let failed = items.map_or(n, |k| k.min(n));
                self.failed.fetch_add(failed, Ordering::Relaxed);
                self.exported.fetch_add(n - failed, Ordering::Relaxed);
                mlflow_tracing_manager::notice::visible(|| {
                    tracing::warn!(
                        "failed to export {failed} of {n} MLflow trace item(s): {message}"
                    )
                });
            }
        }
    }
}

/// A failed export: why, and how many of its items failed when not all did.
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) items: Option<u64>,
}

impl Failure {
    pub(crate) fn all(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            items: None,
        }
    }
}
