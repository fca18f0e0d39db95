//! MLflow Tracing for Rust.
//!
//! Instrument LLM calls, agents, tools and retrieval; the SDK turns them into MLflow traces
//! (spans with inputs, outputs, types, events and status; traces with info, tags, metadata,
//! previews and token usage) and hands each finished trace to an exporter without blocking the
//! caller.
//!
//! This is the facade crate: it re-exports the SDK's public API and holds no logic beyond
//! [`init`]. Depend on it, or on the individual `mlflow-tracing-*` crates a la carte. The root
//! holds what application code calls; the rest is grouped by what it is for:
//!
//! | module | what for |
//! |---|---|
//! | [`entities`] | ids, spans, traces, trace info and their wire forms |
//! | [`tracer`] | tracer settings: destinations, span limits, counters, the global tracer, environment variables |
//! | [`context`] | the current span and trace, across threads and `.await` |
//! | [`distributed`] | W3C `traceparent` in and out of a process |
//! | [`export`] | the exporter contract, the export worker and synchronous export |
//! | [`serving`] | model serving: the serving request, the inference-table buffer |
//! | [`server`] | the MLflow tracking server's exporter and REST client (feature `mlflow-server`) |
//! | [`uc_table`] | Unity Catalog tables (feature `uc-table`) |
//! | [`display`] | notebook display (feature `display`) |
//! | [`layer`] | `tracing` spans as MLflow spans (feature `tracing-layer`) |
//! | [`testing`] | an in-memory exporter and scoped captures (feature `testing`) |
//! | [`otel`] | the OpenTelemetry crates, for [`Tracer::otel_tracer`] |
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
//!   `skip(arg, ...)`/`skip_all`, `skip_output`. Inputs are the arguments as a JSON object;
//!   outputs the return value. An `Err` is recorded as an `exception` event with ERROR status
//!   (`"Type: message"`) and returned unchanged; a panic ends the span with ERROR and keeps
//!   unwinding. Arguments and return values must be `serde::Serialize` (a compile error says so
//!   and points at `skip`).
//! - [`start_span`]: a builder (span type, inputs, attributes, explicit parent) whose
//!   [`StartSpan::start`] returns a guard that is the current span until dropped and ends it on
//!   drop; [`StartSpan::start_detached`] is MLflow's `start_span_no_context`.
//! - [`context::current_span`], [`update_current_trace`], [`context::active_trace_id`],
//!   [`context::last_active_trace_id`].
//! - Async: a traced `async fn` keeps its span across `.await` on any runtime;
//!   [`FutureExt::in_current_span`] carries the current span into `tokio::spawn`.
//! - Distributed tracing: [`distributed::tracing_context_headers`] (`traceparent` for outgoing
//!   requests) and [`distributed::continue_trace`] (spans of an incoming request join the
//!   caller's trace).
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `macros` | yes | `#[mlflow_tracing::trace]` |
//! | `mlflow-server` | yes | [`server`]: traces into an MLflow tracking server |
//! | `inference-table` | no | [`serving::InferenceTableBuffer`] and [`serving::init_inference_table`]: the model-serving trace buffer |
//! | `uc-table` | no | [`uc_table`]: spans and trace infos into Unity Catalog tables (Databricks) |
//! | `display` | no | [`display`]: notebook display (mime bundles, the trace renderer iframe, evcxr) |
//! | `tracing-layer` | no | [`layer`]: `tracing` spans (and rig's GenAI spans) as MLflow spans |
//! | `testing` | no | [`testing`]: an in-memory exporter and scoped capture helpers |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod init;
#[cfg(feature = "otlp")]
mod otlp;
pub mod serving;
#[cfg(feature = "signals")]
mod signals;
#[cfg(feature = "mlflow-server")]
mod spool_fallback;

pub use init::{InitError, InitGuard, init};
pub use mlflow_tracing_entities::{Span, SpanType, Trace};
pub use mlflow_tracing_manager::{
    FutureExt, LiveSpan, SpanApiError, SpanGuard, StartSpan, TraceUpdate, Tracer, TracerBuilder,
    start_span, update_current_trace,
};

/// `#[trace]`: traces every call of a function as an MLflow span.
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use mlflow_tracing_macros::trace;

/// Ids, spans, traces, trace info and their wire forms (the entities crate).
pub use mlflow_tracing_entities as entities;

/// Tracer settings: where traces go, span limits, counters, the global tracer, and the names
/// of the environment variables `TracerBuilder::from_env` reads.
pub mod tracer {
    pub use mlflow_tracing_manager::{
        ConfigError, DispatchWrapper, FinishHook, MLFLOW_EXPERIMENT_ID,
        MLFLOW_TRACE_BUFFER_MAX_SIZE, MLFLOW_TRACE_BUFFER_TTL_SECONDS, MLFLOW_TRACE_SAMPLING_RATIO,
        MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS, MLFLOW_TRACE_TIMEOUT_SECONDS,
        MLFLOW_TRACING_DESTINATION, OTEL_ATTRIBUTE_COUNT_LIMIT, OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT,
        OTEL_SPAN_EVENT_COUNT_LIMIT, OTEL_SPAN_LINK_COUNT_LIMIT, SpanLimits, SpanProcessorFn,
        TraceDestination, Tracer, TracerBuilder, TracerStats, global_tracer, set_global_tracer,
        take_global_tracer,
    };
}

/// The current span and trace, across threads and `.await`; [`TraceContext`](context::TraceContext)
/// scopes (MLflow's `mlflow.tracing.context`).
pub mod context {
    pub use mlflow_tracing_manager::{
        EnteredSpan, FutureExt, Instrumented, TraceContext, TraceContextGuard, WithTraceContext,
        active_trace_id, current_span, current_tracer, last_active_trace_id, update_current_trace,
    };
}

/// Streams and iterators traced as one span (MLflow's generator tracing): `#[trace]` on a
/// function returning `impl Stream` or `impl Iterator`, or `.traced(span)` on any.
pub mod stream {
    pub use mlflow_tracing_manager::{
        TraceIterExt, TraceStreamExt, TracedIter, TracedStream, TracedTryIter, TracedTryStream,
    };
}

/// Distributed tracing: W3C `traceparent` headers out of and into a process (MLflow's
/// `mlflow.tracing.distributed`).
pub mod distributed {
    pub use mlflow_tracing_manager::{
        RemoteTrace, RemoteTraceGuard, continue_trace, continue_trace_with, tracing_context_headers,
    };
}

/// The exporter contract (implement [`TraceExporter`](export::TraceExporter) for a destination
/// of your own), the export worker behind a bounded queue, synchronous export, and their
/// counters and errors.
pub mod export {
    /// OTLP export to a collector (feature `otlp`): `init` configures it from
    /// `OTEL_EXPORTER_OTLP_*` as MLflow does.
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    pub use crate::otlp::{OtlpConfigError, OtlpExporter, OtlpExporterStats};
    pub use mlflow_tracing_manager::{
        Dispatch, ExportError, ExportItem, LifecycleError, PendingTrace, SpanItem, TraceExporter,
        TraceItem, async_trait, panic_message,
    };
    pub use mlflow_tracing_runtime::FanOut;
    pub use mlflow_tracing_runtime::{
        ExportWorker, MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS,
        MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE, MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE,
        MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS, MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT,
        MLFLOW_ENABLE_ASYNC_TRACE_LOGGING, SyncDispatch, WorkerConfig, WorkerStartError,
        WorkerStats,
    };
}

/// The MLflow tracking server: the exporter `init` picks for an `http(s)` `MLFLOW_TRACKING_URI`,
/// and the REST client (also the read side: `get_trace`, `search_traces`, tags, experiments).
#[cfg(feature = "mlflow-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "mlflow-server")))]
pub mod server {
    pub use mlflow_tracing_client::{
        AssessmentUpdate, Auth, ClientConfig, ClientError, Expectation, Experiment, Feedback,
        SearchTraces, Secret, TracePage, TrackingClient,
    };
    pub use mlflow_tracing_exporter_mlflow::{
        DEFAULT_SPOOL_MAX_BYTES, MLFLOW_EXPERIMENT_NAME, MLFLOW_TRACING_SPOOL_DIR,
        MLFLOW_TRACING_SPOOL_MAX_BYTES, MlflowExporter, MlflowExporterStats, SpoolError,
        SpoolStats,
    };
}

/// The Unity Catalog table exporter (Databricks).
#[cfg(feature = "uc-table")]
#[cfg_attr(docsrs, doc(cfg(feature = "uc-table")))]
pub use mlflow_tracing_exporter_uc_table as uc_table;

/// Notebook display: mime bundles, the trace renderer iframe, evcxr.
#[cfg(feature = "display")]
#[cfg_attr(docsrs, doc(cfg(feature = "display")))]
pub use mlflow_tracing_display as display;

/// `tracing` spans as MLflow spans: [`MlflowLayer`](layer::MlflowLayer), with the OpenTelemetry
/// GenAI conventions translated as MLflow does.
#[cfg(feature = "tracing-layer")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing-layer")))]
pub use mlflow_tracing_layer as layer;

/// Test helpers: an in-memory exporter and scoped captures that keep tests parallel.
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use mlflow_tracing_manager::testing;

/// The OpenTelemetry crates this SDK is built on, at the versions it uses: name the types of
/// [`Tracer::otel_tracer`] and start spans through OpenTelemetry's API without a direct
/// dependency.
pub mod otel {
    pub use opentelemetry;
    pub use opentelemetry_sdk;
}

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
#[doc(hidden)]
pub struct ReadmeDoctests;
