//! What `InitGuard::flush_on_signals` (feature `signals`) does on SIGTERM or SIGINT: flush
//! within the given time; with a spool configured, flush for half of it, then send what is
//! still queued to the spool instead of the server for the other half. The runtime's
//! [`on_terminate`](mlflow_tracing_runtime::on_terminate) then lets the signal end the process.

use std::time::Duration;

use mlflow_tracing_manager::{LifecycleError, Tracer};

/// What the signal thread needs.
pub(crate) struct OnSignal {
    pub(crate) tracer: Tracer,
    pub(crate) timeout: Duration,
    #[cfg(feature = "mlflow-server")]
    pub(crate) spooling: Option<std::sync::Arc<crate::server::MlflowExporter>>,
}

impl OnSignal {
    #[cfg(feature = "mlflow-server")]
    fn flush_all(&self) -> Result<(), LifecycleError> {
        crate::spool_fallback::spool_fallback(
            self.spooling.as_deref(),
            &self.tracer,
            self.timeout,
            |rest| self.tracer.force_flush(rest),
        )
    }

    #[cfg(not(feature = "mlflow-server"))]
    fn flush_all(&self) -> Result<(), LifecycleError> {
        self.tracer.force_flush(self.timeout)
    }

    /// Flushes, and says how it went.
    pub(crate) fn flush(&self, signal: i32) {
        match self.flush_all() {
            Ok(()) => tracing::info!(signal, "MLflow tracing flushed on a signal"),
            Err(e) => mlflow_tracing_manager::notice::visible(|| {
                tracing::warn!(
                    signal,
                    "MLflow tracing could not flush everything on a signal: {e}"
                )
            }),
        }
    }
}
