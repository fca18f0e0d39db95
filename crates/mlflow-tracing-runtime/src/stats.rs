//! The export runtime's counters, and how a failed export is counted.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of an [`ExportWorker`]. `enqueued = exported + failed + in flight`; items dropped
/// never entered the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Items accepted into the queue.
    pub enqueued: u64,
    /// Items the exporter accepted.
    pub exported: u64,
    /// Items whose export failed, panicked or timed out.
    pub failed: u64,
    /// Items dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Items dropped because the worker was shut down.
    pub dropped_shutdown: u64,
    /// Items still queued or exporting when `shutdown` ran out of time (lost if the process
    /// exits now).
    pub dropped_shutdown_timeout: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) enqueued: AtomicU64,
    pub(crate) exported: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_shutdown: AtomicU64,
    pub(crate) dropped_shutdown_timeout: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WorkerStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerStats {
            enqueued: get(&self.enqueued),
            exported: get(&self.exported),
            failed: get(&self.failed),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_shutdown: get(&self.dropped_shutdown),
            dropped_shutdown_timeout: get(&self.dropped_shutdown_timeout),
        }
    }

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
                tracing::warn!("failed to export {failed} of {n} MLflow trace item(s): {message}");
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
