//! Shutting down or flushing with a spool: what is still queued halfway through goes to the
//! spool rather than waiting for the server (the guard's drop and `flush_on_signals`).

use std::time::Duration;

use mlflow_tracing_manager::{LifecycleError, Tracer};

/// With a spool, flushes for half of `timeout`, sends what is still queued to the spool instead
/// of the server, then gives `finish` the other half; without one, `finish` gets all of it
/// (the guard's drop and `flush_on_signals`).
pub(crate) fn spool_fallback(
    spooling: Option<&crate::server::MlflowExporter>,
    tracer: &Tracer,
    timeout: Duration,
    finish: impl FnOnce(Duration) -> Result<(), LifecycleError>,
) -> Result<(), LifecycleError> {
    let Some(exporter) = spooling else {
        return finish(timeout);
    };
    let half = timeout / 2;
    if tracer.force_flush(half).is_err() {
        exporter.spool_remaining();
    }
    finish(timeout - half)
}
