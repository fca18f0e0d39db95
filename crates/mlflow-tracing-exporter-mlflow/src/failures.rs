//! How the exporter reports a failure: a refused credential or permission loudly once, the
//! rest at WARN; and the per-trace copy of a chunk's error.

use std::sync::atomic::{AtomicU8, Ordering};

use mlflow_tracing_client::ClientError;

/// Logs a trace's failure: a refused credential (401) or permission (403) once at ERROR
/// with the setting to fix (then at DEBUG: each failed trace is counted anyway), anything
/// else at WARN.
pub(crate) fn log_failure(
    reported: &AtomicU8,
    trace_id: &str,
    experiment_id: &str,
    e: &ClientError,
) {
    let (bit, hint) = match e.status() {
        Some(401) => (
            1,
            "the server refused the credentials: check MLFLOW_TRACKING_USERNAME and \
             MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
                .to_owned(),
        ),
        Some(403) => (
            2,
            format!(
                "the user may not write traces to experiment {experiment_id}: grant it \
                 EDIT on the experiment, or set MLFLOW_TRACKING_USERNAME to a user who has it"
            ),
        ),
        _ => {
            mlflow_tracing_manager::notice::visible(|| {
                tracing::warn!(trace_id, "failed to send the trace to MLflow: {e}")
            });
            return;
        }
    };
    if reported.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
        mlflow_tracing_manager::notice::visible(|| {
            tracing::error!(
                trace_id,
                "traces are NOT saved to MLflow ({e}): {hint}. Reported once; every \
                 trace that fails is counted (export_stats)"
            )
        });
    } else {
        tracing::debug!(trace_id, "the trace was NOT saved to MLflow: {e}");
    }
}
