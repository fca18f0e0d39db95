//! OTLP export to a collector (feature `otlp`): the exporter, and `init`'s use of it, with MLflow's rules (`mlflow/tracing/provider.py`):
//! an OTLP endpoint in the environment (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, unless `MLFLOW_ENABLE_OTLP_EXPORTER=false`) sends traces
//! there instead of the tracking server; with `MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT=true`, to
//! both, each destination behind its own queue and worker ([`FanOut`]). An exporter given to
//! the builder wins over the environment, as a trace destination does in MLflow.

use std::sync::Arc;

pub use mlflow_tracing_exporter_otlp::{OtlpConfigError, OtlpExporter, OtlpExporterStats};
use mlflow_tracing_manager::Dispatch;
use mlflow_tracing_runtime::{ExportWorker, FanOut, SyncDispatch, WorkerConfig, WorkerStartError};

/// What the environment asks for.
pub(crate) struct OtlpPlan {
    pub(crate) exporter: Arc<OtlpExporter>,
    /// `MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT`: the tracking server too.
    pub(crate) dual: bool,
}

/// The plan, when an OTLP endpoint is set and the builder has no exporter of its own.
pub(crate) fn plan(builder_has_export: bool) -> Result<Option<OtlpPlan>, OtlpConfigError> {
    if builder_has_export {
        return Ok(None);
    }
    let Some(exporter) = OtlpExporter::from_env()? else {
        return Ok(None);
    };
    let dual = std::env::var("MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"));
    Ok(Some(OtlpPlan {
        exporter: Arc::new(exporter),
        dual,
    }))
}

/// `main`, and the OTLP exporter behind a queue of its own (or synchronous, as `main`).
pub(crate) fn fan_out(
    main: Arc<dyn Dispatch>,
    otlp: Arc<OtlpExporter>,
    asynchronous: bool,
    config: WorkerConfig,
) -> Result<Arc<dyn Dispatch>, WorkerStartError> {
    let timeout = config.export_timeout;
    let second: Arc<dyn Dispatch> = if asynchronous {
        Arc::new(ExportWorker::start_arc(otlp, config)?)
    } else {
        Arc::new(SyncDispatch::new(otlp, timeout)?)
    };
    Ok(Arc::new(FanOut::new(vec![main, second])))
}
