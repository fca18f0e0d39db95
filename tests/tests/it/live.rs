//! The shared real MLflow server, seen the way the newer tests use it: a fresh experiment per
//! test, a synchronous tracer exporting to it, and Python's `mlflow` reading traces back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mlflow_tracing::Tracer;
use mlflow_tracing::export::{Dispatch, SyncDispatch};
use mlflow_tracing::server::{ClientConfig, MlflowExporter, TrackingClient};
use mlflow_tracing_tests::server::MlflowServer;
use serde_json::Value;

pub(crate) fn server() -> &'static MlflowServer {
    MlflowServer::shared().unwrap_or_else(|e| panic!("the MLflow server must run: {e}"))
}

pub(crate) fn client() -> TrackingClient {
    TrackingClient::new(ClientConfig::new(server().url()).with_retries(2, 0.1, 0.1)).unwrap()
}

pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A fresh experiment; its id.
pub(crate) fn experiment(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let unique = format!("{name}-{}-{nanos}", std::process::id());
    block_on(client().create_experiment(&unique)).unwrap()
}

/// A tracer that exports each trace to `experiment` before its root's end returns.
pub(crate) fn sync_tracer(experiment: &str) -> Tracer {
    sync_tracer_with(Arc::new(MlflowExporter::new(client())), experiment)
}

/// [`sync_tracer`] through `exporter` (kept by the caller for its counters).
pub(crate) fn sync_tracer_with(exporter: Arc<MlflowExporter>, experiment: &str) -> Tracer {
    let dispatch: Arc<dyn Dispatch> =
        Arc::new(SyncDispatch::new(exporter, Duration::from_secs(30)).unwrap());
    Tracer::builder()
        .with_environment_metadata(false)
        .with_experiment_id(experiment)
        .with_dispatch(dispatch)
        .build()
        .unwrap()
}

/// Runs a Python script against the server (synchronous trace logging, as the Rust side);
/// its last line of output, as JSON.
pub(crate) fn python_json(script: &str, args: &[&str]) -> Value {
    let out = mlflow_tracing_tests::python::run_script_with(
        script,
        args,
        &[
            ("MLFLOW_TRACKING_URI", server().url()),
            ("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false"),
        ],
    )
    .unwrap();
    let last = out.trim().lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}"))
}
