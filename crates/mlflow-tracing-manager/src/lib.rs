//! The trace manager and the span API of MLflow Tracing for Rust.
//!
//! This crate turns running code into MLflow traces in memory and hands each finished trace to
//! an exporter:
//!
//! - A [`Tracer`] owns the trace manager: the traces in progress (MLflow's
//!   `InMemoryTraceManager`: a `TTLCache` with `MLFLOW_TRACE_BUFFER_TTL_SECONDS` and
//!   `MLFLOW_TRACE_BUFFER_MAX_SIZE`, evictions counted and logged, overdue traces halted with
//!   `MLFLOW_TRACE_TIMEOUT_SECONDS`) and the policy of their destination
//!   ([`TraceDestination`]). Spans started through OpenTelemetry's API on
//!   [`Tracer::otel_tracer`] become MLflow spans too.
//! - The span API: [`start_span`] (a guard that is the current span until dropped),
//!   [`LiveSpan`] (MLflow's `LiveSpan` setters), [`current_span`], [`update_current_trace`],
//!   [`FutureExt::in_current_span`] for spawned tasks, and W3C `traceparent` propagation
//!   ([`tracing_context_headers`], [`continue_trace`]). The `#[trace]` macro (crate
//!   `mlflow-tracing-macros`) builds on it.
//! - When a root span ends (and any span still running in the background has ended too), the
//!   trace is finalized (timings, state, trace inputs/outputs, previews, token usage) and handed
//!   to a [`Dispatch`]: [`InlineDispatch`] runs a [`TraceExporter`] on the spot; the export
//!   runtime's worker queues it without blocking.
//!
//! The span path holds no lock across user code and does no I/O.
//!
//! ```
//! use mlflow_tracing_manager::{start_span, testing::Capture};
//!
//! let capture = Capture::new();
//! capture.run(|| {
//!     let root = start_span("agent").inputs(&"What is MLflow?").start();
//!     {
//!         let llm = start_span("llm").span_type("LLM").start();
//!         llm.set_outputs(&"An MLOps platform.");
//!     }
//!     root.set_outputs(&"MLflow is an MLOps platform.");
//! });
//! let traces = capture.traces();
//! assert_eq!(traces[0].data.spans.len(), 2);
//! assert_eq!(traces[0].info.request_preview.as_deref(), Some("\"What is MLflow?\""));
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

// Bottom: helpers, settings and data (no module here imports a module further down).
mod counters;
mod env;
mod error;
mod limits;
pub mod notice;
mod otel_values;
pub mod process_global;
mod stats;
mod traceparent;
mod util;
// The exporter contract, the data of traces in progress, destinations and their policies.
mod destination;
mod export;
mod finish;
mod in_progress;
mod instrument;
mod items;
mod policy;
mod sampler;
mod scope;
// The trace manager and its OpenTelemetry front door; the tracer and its settings.
mod builder;
mod global;
mod manager;
mod processor;
mod tracer;
// The span API on top.
mod context;
mod live;
mod llm;
mod parent;
mod remote;
mod start;
mod stream;

#[doc(hidden)]
pub mod __private;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use builder::TracerBuilder;
pub use context::{
    FutureExt, TraceUpdate, active_trace_id, current_span, current_tracer, last_active_trace_id,
    tracing_context_headers, update_current_trace,
};
pub use destination::{
    InServingRequest, MLFLOW_TRACING_DESTINATION, REQUEST_ID_HEADER, ServingRequest,
    ServingRequestGuard, TraceDestination,
};
pub use env::{
    MLFLOW_EXPERIMENT_ID, MLFLOW_TRACE_BUFFER_MAX_SIZE, MLFLOW_TRACE_BUFFER_TTL_SECONDS,
    MLFLOW_TRACE_SAMPLING_RATIO, MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS,
    MLFLOW_TRACE_TIMEOUT_SECONDS, read_env, read_env_bool,
};
pub use error::{ConfigError, ExportError, LifecycleError, SpanApiError};
pub use export::{Dispatch, ExportItem, InlineDispatch, SpanItem, TraceExporter, TraceItem};
pub use finish::{FinishHook, PendingTrace, SpanProcessorFn};
pub use global::{global_tracer, set_global_tracer, take_global_tracer, uninstall_global_tracer};
pub use instrument::Instrumented;
pub use limits::{
    OTEL_ATTRIBUTE_COUNT_LIMIT, OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_SPAN_EVENT_COUNT_LIMIT,
    OTEL_SPAN_LINK_COUNT_LIMIT, SpanLimits,
};
pub use live::{EnteredSpan, LiveSpan, SpanGuard};
pub use remote::{RemoteTrace, RemoteTraceGuard, continue_trace, continue_trace_with};
pub use scope::{TraceContext, TraceContextGuard, WithTraceContext};
pub use start::{StartSpan, start_span};
pub use stats::TracerStats;
pub use stream::{
    TraceIterExt, TraceStreamExt, TracedIter, TracedStream, TracedTryIter, TracedTryStream,
};
pub use tracer::{DispatchWrapper, Tracer};
pub use util::panic_message;

/// Re-exported so implementors of [`TraceExporter`] need no direct dependency.
pub use async_trait::async_trait;
