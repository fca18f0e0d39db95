//! MLflow Tracing for Rust.
//!
//! Instrument LLM calls, agents, tools and retrieval; the SDK turns them into MLflow traces
//! (spans with inputs, outputs, types, events and status; traces with info, tags, metadata,
//! previews and token usage) and hands each finished trace to an exporter without blocking the
//! caller.
//!
//! This is the facade crate: it re-exports the SDK's public API and holds no logic of its own.
//! Depend on it, or on the individual `mlflow-tracing-*` crates a la carte.
//!
//! # Quickstart
//!
//! ```
//! use mlflow_tracing::testing::InMemoryExporter;
//!
//! #[mlflow_tracing::trace(span_type = "TOOL")]
//! fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! let exporter = InMemoryExporter::new();
//! let guard = mlflow_tracing::init(
//!     mlflow_tracing::TracerBuilder::from_env()?.with_exporter(exporter.clone()),
//! )?;
//! assert_eq!(add(1, 2), 3);
//! drop(guard); // flushes and shuts down
//!
//! let span = &exporter.traces()[0].data.spans[0];
//! assert_eq!(span.inputs(), Some(serde_json::json!({"a": 1, "b": 2})));
//! # Ok::<(), mlflow_tracing::InitError>(())
//! ```
//!
//! # The span API
//!
//! - `#[trace]` on a `fn` or `async fn` (methods too): the span is named after the function
//!   (`name = "..."` overrides), `span_type = "LLM"`, `attributes(key = value, ...)`,
//!   `skip(arg, ...)`/`skip_all`, `skip_output`. Inputs are the arguments as a JSON object; outputs the return
//!   value. An `Err` is recorded as an `exception` event with ERROR status (`"Type: message"`)
//!   and returned unchanged; a panic ends the span with ERROR and keeps unwinding. Arguments
//!   and return values must be `serde::Serialize` (a compile error says so and points at
//!   `skip`).
//! - [`start_span`]: a builder (span type, inputs, attributes, explicit parent) whose
//!   [`StartSpan::start`] returns a guard that is the current span until dropped and ends it on
//!   drop; [`StartSpan::start_detached`] is MLflow's `start_span_no_context`.
//! - [`current_span`], [`active_trace_id`], [`last_active_trace_id`],
//!   [`update_current_trace`].
//! - Async: a traced `async fn` keeps its span across `.await` on any runtime;
//!   [`FutureExt::in_current_span`] carries the current span into `tokio::spawn`.
//! - Distributed tracing: [`tracing_context_headers`] (`traceparent` for outgoing requests) and
//!   [`continue_trace`] (spans of an incoming request join the caller's trace).
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `macros` | yes | `#[mlflow_tracing::trace]` |
//! | `mlflow-server` | yes | [`MlflowExporter`] and [`TrackingClient`]: traces into an MLflow tracking server |
//! | `inference-table` | no | [`inference_table`] and [`init_inference_table`]: the model-serving trace buffer |
//! | `uc-table` | no | [`uc_table`]: spans and trace infos into Unity Catalog tables (Databricks) |
//! | `display` | no | [`display`]: notebook display (mime bundles, the trace renderer iframe, evcxr) |
//! | `testing` | no | [`testing`]: an in-memory exporter and scoped capture helpers |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

use std::sync::Arc;
use std::time::Duration;

#[cfg(all(feature = "uc-table", not(feature = "mlflow-server")))]
use mlflow_tracing_client::ClientError;

/// The export runtime: the worker thread behind a bounded queue, and synchronous export.
pub use mlflow_tracing_runtime::{
    ExportWorker, StartError, SyncDispatch, WorkerConfig, WorkerStats,
};

/// The entities crate: ids, spans, traces and their wire forms.
pub use mlflow_tracing_entities as entities;
pub use mlflow_tracing_entities::{
    EntityError, Link, MlflowTraceId, Span, SpanEvent, SpanId, SpanLogLevel, SpanStatus,
    SpanStatusCode, SpanType, TokenUsage, Trace, TraceData, TraceId, TraceInfo, TraceLocation,
    TraceState,
};

pub use mlflow_tracing_manager::{
    ConfigError, Dispatch, EnteredSpan, ExportError, ExportItem, FutureExt, InlineDispatch,
    LifecycleError, LiveSpan, MlflowSpanProcessor, REQUEST_ID_HEADER, RemoteTrace,
    RemoteTraceGuard, ServingRequest, ServingRequestGuard, SpanApiError, SpanGuard, SpanItem,
    SpanLimits, StartSpan, TraceDestination, TraceExporter, TraceItem, TraceUpdate, Tracer,
    TracerBuilder, TracerStats, active_trace_id, async_trait, continue_trace, continue_trace_with,
    current_span, global_tracer, last_active_trace_id, start_span, tracing_context_headers,
    update_current_trace,
};

/// The MLflow tracking-server exporter and its REST client.
#[cfg(feature = "mlflow-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "mlflow-server")))]
pub use mlflow_tracing_exporter_mlflow::{
    MLFLOW_EXPERIMENT_NAME, MlflowExporter, MlflowExporterStats,
    client::{
        self as client, ClientConfig, ClientError, Experiment, SearchTraces, TracePage,
        TrackingClient,
    },
};

/// The inference-table buffer of a model-serving host.
#[cfg(feature = "inference-table")]
#[cfg_attr(docsrs, doc(cfg(feature = "inference-table")))]
pub use mlflow_tracing_exporter_inference_table as inference_table;

/// The Unity Catalog table exporter (Databricks).
#[cfg(feature = "uc-table")]
#[cfg_attr(docsrs, doc(cfg(feature = "uc-table")))]
pub use mlflow_tracing_exporter_uc_table as uc_table;

/// Notebook display: mime bundles, the trace renderer iframe, evcxr.
#[cfg(feature = "display")]
#[cfg_attr(docsrs, doc(cfg(feature = "display")))]
pub use mlflow_tracing_display as display;

/// `#[trace]`: traces every call of a function as an MLflow span.
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use mlflow_tracing_macros::trace;

/// Test helpers: an in-memory exporter and scoped captures that keep tests parallel.
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use mlflow_tracing_manager::testing;

/// Support for the `#[trace]` macro; not a public API.
#[doc(hidden)]
pub use mlflow_tracing_manager::__private;

/// The README's examples, compiled and run as doc tests.
#[cfg(all(
    doctest,
    feature = "macros",
    feature = "mlflow-server",
    feature = "inference-table",
    feature = "testing"
))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// How long dropping an [`InitGuard`] waits for the exporter.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// `init` could not set tracing up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A setting or environment variable is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The export worker thread could not start.
    #[error(transparent)]
    Worker(#[from] StartError),
    /// The MLflow tracking-server (or Databricks) client could not be set up from the
    /// environment.
    #[cfg(any(feature = "mlflow-server", feature = "uc-table"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "mlflow-server", feature = "uc-table"))))]
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Builds the tracer and installs it as the process-wide tracer used by `#[trace]` and
/// [`start_span`]. Keep the guard alive for the life of the program: dropping it flushes and
/// shuts the exporter down (within [`DEFAULT_SHUTDOWN_TIMEOUT`]) and logs a one-line summary.
///
/// Without an exporter in the builder, and with `MLFLOW_TRACKING_URI` set to `http(s)://…`
/// (feature `mlflow-server`, on by default), traces go to that MLflow tracking server through
/// [`MlflowExporter::from_env`] (auth, TLS, retries and `MLFLOW_EXPERIMENT_NAME` from the
/// environment too).
///
/// The exporter given to [`TracerBuilder::with_exporter`] runs behind the export runtime's
/// worker thread and bounded queue ([`ExportWorker`], settings from
/// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE` / `_MAX_WORKERS`), which also halts overdue traces
/// once a second. With `MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false` it runs on the caller's thread
/// instead ([`SyncDispatch`]), as MLflow does: slow, since the code that ends a root span waits
/// for its export, and overdue traces are then halted only when spans start or end.
///
/// # Errors
/// [`InitError`] when the settings are invalid or the worker cannot start.
pub fn init(builder: TracerBuilder) -> Result<InitGuard, InitError> {
    #[cfg(feature = "uc-table")]
    let builder = if !builder.has_export()
        && matches!(builder.destination(), TraceDestination::UnityCatalog(_))
    {
        builder.with_exporter(uc_table::UcTableExporter::from_env()?)
    } else {
        builder
    };
    #[cfg(feature = "mlflow-server")]
    let builder = match std::env::var("MLFLOW_TRACKING_URI") {
        Ok(uri)
            if !builder.has_export()
                && (uri.starts_with("http://") || uri.starts_with("https://")) =>
        {
            builder.with_exporter(MlflowExporter::from_env()?)
        }
        _ => builder,
    };
    if !builder.has_export() {
        tracing::warn!(
            "mlflow_tracing::init: no exporter (set MLFLOW_TRACKING_URI to an MLflow server, or \
             call TracerBuilder::with_exporter); finished traces go nowhere"
        );
    }
    let config = WorkerConfig::from_env()?;
    let mut export = Export::None;
    let builder = if mlflow_tracing_runtime::async_logging_enabled()? {
        builder.map_exporter(|exporter| {
            let w = ExportWorker::start_arc(exporter, config)?;
            export = Export::Worker(w.clone());
            Ok::<_, InitError>(Arc::new(w) as Arc<dyn Dispatch>)
        })?
    } else {
        builder.map_exporter(|exporter| {
            let sync = Arc::new(SyncDispatch::new(exporter, config.export_timeout)?);
            export = Export::Sync(sync.clone());
            Ok::<_, InitError>(sync as Arc<dyn Dispatch>)
        })?
    };
    #[cfg(feature = "display")]
    let builder = if display::in_evcxr() {
        // In an evcxr notebook, finished traces are shown in the cell that produced them (one
        // display per cell: each cell's copy of the tracer gets its own).
        builder.with_dispatch_wrapper(|d| Arc::new(display::DisplayDispatch::new(d)))
    } else {
        builder
    };
    install(builder, export)
}

/// Builds the tracer, lets the worker (if any) run its maintenance, installs it globally.
fn install(builder: TracerBuilder, export: Export) -> Result<InitGuard, InitError> {
    let tracer = builder.build()?;
    if let Export::Worker(worker) = &export {
        let maintained = tracer.clone();
        worker.set_maintenance(move || maintained.run_maintenance());
    }
    if let Some(previous) = mlflow_tracing_manager::set_global_tracer(tracer.clone()) {
        tracing::warn!("mlflow_tracing::init called again; the previous tracer is replaced");
        let _ = previous.shutdown(DEFAULT_SHUTDOWN_TIMEOUT);
    }
    Ok(InitGuard { tracer, export })
}

/// The inference-table setup of a model-serving host: traces are kept by serving request id
/// for the host to pop (see [`inference_table::InferenceTableBuffer`]).
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
) -> Result<(InitGuard, inference_table::InferenceTableBuffer), InitError> {
    let experiment_id = std::env::var("MLFLOW_EXPERIMENT_ID")
        .ok()
        .filter(|e| !e.is_empty());
    #[allow(unused_mut, reason = "only reassigned with feature `mlflow-server`")]
    let mut buffer = inference_table::InferenceTableBuffer::from_env()?;
    #[allow(unused_mut, reason = "only reassigned with feature `mlflow-server`")]
    let mut export = Export::None;
    #[cfg(feature = "mlflow-server")]
    if experiment_id.is_some()
        && std::env::var("MLFLOW_TRACKING_URI")
            .is_ok_and(|u| u.starts_with("http://") || u.starts_with("https://"))
    {
        let worker = ExportWorker::start(MlflowExporter::from_env()?, WorkerConfig::from_env()?)?;
        buffer = buffer.with_forward(Arc::new(worker.clone()));
        export = Export::Worker(worker);
    }
    let builder = builder
        .with_destination(TraceDestination::InferenceTable { experiment_id })
        .with_dispatch(Arc::new(buffer.clone()));
    Ok((install(builder, export)?, buffer))
}

/// What `init` put between the tracer and the exporter.
#[derive(Debug)]
enum Export {
    Worker(ExportWorker),
    Sync(Arc<SyncDispatch>),
    /// The builder had a dispatch of its own, or no exporter.
    None,
}

/// Returned by [`init`]; flushes and shuts down the tracer when dropped.
#[must_use = "dropping the guard shuts tracing down"]
#[derive(Debug)]
pub struct InitGuard {
    tracer: Tracer,
    export: Export,
}

impl InitGuard {
    /// The installed tracer (its `stats()` count traces started, finished, evicted, dropped).
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// The export counters (enqueued, exported, failed, dropped queue-full / at shutdown /
    /// on a shutdown timeout), whether exports run on the worker or on the caller's thread;
    /// `None` when the builder was given a [`Dispatch`] of its own.
    pub fn export_stats(&self) -> Option<WorkerStats> {
        match &self.export {
            Export::Worker(worker) => Some(worker.stats()),
            Export::Sync(sync) => Some(sync.stats()),
            Export::None => None,
        }
    }
}

impl Drop for InitGuard {
    fn drop(&mut self) {
        mlflow_tracing_manager::uninstall_global_tracer(&self.tracer);
        let result = self.tracer.shutdown(DEFAULT_SHUTDOWN_TIMEOUT);
        let stats = self.tracer.stats();
        let worker = self.export_stats().unwrap_or_default();
        tracing::info!(
            traces = stats.traces_finished,
            exported = stats.items_exported + worker.exported,
            failed = stats.items_failed + worker.failed,
            dropped = stats.items_dropped
                + worker.dropped_queue_full
                + worker.dropped_shutdown
                + worker.dropped_shutdown_timeout
                + stats.spans_dropped,
            evicted = stats.traces_evicted,
            "MLflow tracing shut down"
        );
        if let Err(err) = result {
            tracing::warn!("MLflow tracing shutdown: {err}");
        }
    }
}
