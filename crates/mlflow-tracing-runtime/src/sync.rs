//! Export on the caller's thread (`MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mlflow_tracing_manager::{Dispatch, ExportItem, LifecycleError, TraceExporter, panic_message};

use crate::stats::{Counters, Failure, WorkerStats};
use crate::worker::WorkerStartError;

/// A [`Dispatch`] that runs every export on the caller's thread before `dispatch` returns, as
/// MLflow does with `MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false`. Slow by design: the code that ends
/// a root span waits for the export. Each export still has a timeout, and an exporter that fails
/// or panics is counted as failed without reaching the caller.
///
/// Exports run on a small current-thread tokio runtime owned by this value (so exporters that
/// need tokio's timers or I/O work from plain sync code). Called from inside a tokio runtime,
/// where blocking that thread on another runtime is not allowed, the export runs on a scoped
/// thread that the caller waits for.
pub struct SyncDispatch {
    exporter: Arc<dyn TraceExporter>,
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
    counters: Counters,
    shut_down: AtomicBool,
}

impl fmt::Debug for SyncDispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncDispatch")
            .field("exporter", &self.exporter)
            .field("timeout", &self.timeout)
            .field("stats", &self.stats())
            .finish()
    }
}

impl SyncDispatch {
    /// Wraps `exporter`; each export may take at most `timeout`.
    ///
    /// # Errors
    /// [`WorkerStartError`] when the runtime cannot be created.
    pub fn new(
        exporter: Arc<dyn TraceExporter>,
        timeout: Duration,
    ) -> Result<Self, WorkerStartError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WorkerStartError)?;
        Ok(SyncDispatch {
            exporter,
            runtime: Some(runtime),
            timeout,
            counters: Counters::default(),
            shut_down: AtomicBool::new(false),
        })
    }

    /// The counters now (`enqueued` counts every export attempted; nothing is ever queued).
    pub fn stats(&self) -> WorkerStats {
        self.counters.snapshot()
    }

    /// Runs `work` to completion on this thread (or, inside a tokio runtime, on a scoped thread
    /// this one waits for); `Err` carries a panic message.
    fn run<T: Send>(&self, work: impl Future<Output = T> + Send) -> Result<T, String> {
        let Some(runtime) = &self.runtime else {
            return Err("the runtime is gone".into());
        };
        let block_on = || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(work)))
                .map_err(|p| format!("the exporter panicked: {}", panic_message(p.as_ref())))
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return block_on();
        }
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("mlflow-tracing-sync-export".into())
                .spawn_scoped(scope, block_on)
                .map_err(|e| format!("cannot start the export thread: {e}"))?
                .join()
                .unwrap_or_else(|_| Err("the export thread panicked".into()))
        })
    }
}

impl SyncDispatch {
    /// Runs the exporter's flush or shutdown under `timeout`.
    fn lifecycle(
        &self,
        timeout: Duration,
        work: impl Future<Output = Result<(), mlflow_tracing_manager::ExportError>> + Send,
    ) -> Result<(), LifecycleError> {
        // The timer is created inside the runtime, so inside the future.
        match self.run(async move { tokio::time::timeout(timeout, work).await }) {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(LifecycleError::InternalFailure(e.to_string())),
            Ok(Err(_)) => Err(LifecycleError::Timeout(timeout)),
            Err(panic) => Err(LifecycleError::InternalFailure(panic)),
        }
    }
}

impl Dispatch for SyncDispatch {
    fn dispatch(&self, item: ExportItem) {
        if self.shut_down.load(Ordering::Acquire) {
            self.counters
                .dropped_shutdown
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters.enqueued.fetch_add(1, Ordering::Relaxed);
        let timeout = self.timeout;
        let exporter = &self.exporter;
        let outcome = self
            .run(async move {
                match tokio::time::timeout(timeout, exporter.export(vec![item])).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(Failure {
                        message: e.to_string(),
                        items: e.failed_items(),
                    }),
                    Err(_) => Err(Failure::all(format!("timed out after {timeout:?}"))),
                }
            })
            .unwrap_or_else(|panic| Err(Failure::all(panic)));
        self.counters.record(1, outcome);
    }

    fn wants_spans(&self) -> bool {
        self.exporter.wants_spans()
    }

    fn force_flush(&self, timeout: Duration) -> Result<(), LifecycleError> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(LifecycleError::AlreadyShutdown);
        }
        let exporter = &self.exporter;
        self.lifecycle(timeout, exporter.force_flush())
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), LifecycleError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Err(LifecycleError::AlreadyShutdown);
        }
        let exporter = &self.exporter;
        self.lifecycle(timeout, exporter.shutdown())
    }
}

impl Drop for SyncDispatch {
    fn drop(&mut self) {
        // Dropping a runtime where blocking is not allowed (inside another runtime) panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
