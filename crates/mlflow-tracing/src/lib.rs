//! MLflow Tracing for Rust.
//!
//! This is the facade crate: it re-exports the SDK's public API and holds no logic of its own.
//! Depend on it, or on the individual `mlflow-tracing-*` crates a la carte.
//!
//! Today it exposes the entities layer: MLflow-compatible [`Trace`], [`Span`] and [`TraceInfo`]
//! with their wire forms (see [`entities`]). The trace manager, the `#[trace]` macro, the
//! export runtime and the exporters arrive as their crates land; their features will be listed
//! here.
//!
//! ```
//! let trace = mlflow_tracing::Trace::from_json(
//!     r#"{"info": {"trace_id": "tr-4bf92f3577b34da6a3ce929d0e0e4736",
//!                  "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}},
//!                  "request_time": "2023-11-14T22:13:20Z", "state": "OK"},
//!         "data": {"spans": []}}"#,
//! )?;
//! assert_eq!(trace.repr(), "Trace(trace_id='tr-4bf92f3577b34da6a3ce929d0e0e4736')");
//! # Ok::<(), mlflow_tracing::EntityError>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

/// The entities crate: ids, spans, traces and their wire forms.
pub use mlflow_tracing_entities as entities;
pub use mlflow_tracing_entities::{
    EntityError, Link, MlflowTraceId, Span, SpanEvent, SpanId, SpanLogLevel, SpanStatus,
    SpanStatusCode, SpanType, TokenUsage, Trace, TraceData, TraceId, TraceInfo, TraceLocation,
    TraceState,
};
