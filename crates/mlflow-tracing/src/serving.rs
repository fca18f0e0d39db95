//! Model serving: the request a trace belongs to, and (feature `inference-table`) the
//! inference-table buffer a serving host pops traces from.

pub use mlflow_tracing_manager::{
    InServingRequest, REQUEST_ID_HEADER, ServingRequest, ServingRequestGuard,
};

#[cfg(feature = "inference-table")]
#[cfg_attr(docsrs, doc(cfg(feature = "inference-table")))]
pub use mlflow_tracing_exporter_inference_table::{InferenceTableBuffer, InferenceTableStats};

#[cfg(feature = "inference-table")]
use crate::{InitError, InitGuard, TracerBuilder, tracer::TraceDestination};

/// The inference-table setup of a model-serving host: traces are kept by serving request id
/// for the host to pop (see [`InferenceTableBuffer`]).
///
/// Sets the builder's destination to [`TraceDestination::InferenceTable`] and its dispatch to a
/// buffer configured from `MLFLOW_TRACE_BUFFER_TTL_SECONDS` / `MLFLOW_TRACE_BUFFER_MAX_SIZE`.
/// With `MLFLOW_EXPERIMENT_ID` set (and, with feature `mlflow-server`, `MLFLOW_TRACKING_URI`
/// pointing at a server), every trace is also exported to that experiment in the background
/// through the export worker, which never delays `pop_trace`. Attach a [`ServingRequest`]
/// around each request; root spans without one are not recorded.
///
/// # Errors
/// [`InitError`] when a setting is invalid or the worker cannot start.
#[cfg(feature = "inference-table")]
#[cfg_attr(docsrs, doc(cfg(feature = "inference-table")))]
pub fn init_inference_table(
    builder: TracerBuilder,
) -> Result<(InitGuard, InferenceTableBuffer), InitError> {
    use std::sync::Arc;

    use crate::init::{Export, install};

    let experiment_id = std::env::var("MLFLOW_EXPERIMENT_ID")
        .ok()
        .filter(|e| !e.is_empty());
    #[cfg_attr(
        not(feature = "mlflow-server"),
        expect(unused_mut, reason = "only reassigned with feature `mlflow-server`")
    )]
    let mut buffer = InferenceTableBuffer::from_env()?;
    #[cfg_attr(
        not(feature = "mlflow-server"),
        expect(unused_mut, reason = "only reassigned with feature `mlflow-server`")
    )]
    let mut export = Export::None;
    #[cfg(feature = "mlflow-server")]
    if experiment_id.is_some()
        && std::env::var("MLFLOW_TRACKING_URI")
            .is_ok_and(|u| mlflow_tracing_entities::is_http_uri(&u))
    {
        let worker = mlflow_tracing_runtime::ExportWorker::start(
            crate::server::MlflowExporter::from_env()?,
            mlflow_tracing_runtime::WorkerConfig::from_env()?,
        )?;
        buffer = buffer.with_forward(Arc::new(worker.clone()));
        export = Export::Worker(worker);
    }
    let builder = builder
        .with_destination(TraceDestination::InferenceTable { experiment_id })
        .with_dispatch(Arc::new(buffer.clone()));
    Ok((install(builder, export)?, buffer))
}
