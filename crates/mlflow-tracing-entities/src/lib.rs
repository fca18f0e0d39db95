//! MLflow-compatible trace and span entities and their wire forms.
//!
//! This is the bottom layer of the `mlflow-tracing` SDK: plain data, no I/O, no threads, no
//! runtime. Everything here matches MLflow 3.17.2's Python SDK, byte for byte where MLflow's own
//! output is exact:
//!
//! - ids ([`TraceId`], [`SpanId`], [`MlflowTraceId`]) in hex, base64 and raw-byte forms;
//! - [`Span`] with attributes stored as JSON text exactly as MLflow stores them, readable from
//!   the current, 3.5.0 and V2 `Span.to_dict()` layouts;
//! - [`TraceInfo`] (V3, and V4 for Unity Catalog), [`TraceData`], [`Trace`];
//! - wire forms: `Trace.to_json()` ([`Trace::to_json`]), the StartTraceV3 body
//!   ([`TraceInfo::start_trace_v3_body`]), OTLP protobuf spans ([`Span::to_otlp`],
//!   [`Span::from_otlp`]);
//! - the rules that live with the data: truncation, chat-aware previews, size statistics, token
//!   usage aggregation, trace state from the root span ([`Trace::finalize`]).
//!
//! JSON is written as Python's `json.dumps` writes it (see [`json`]). Hostile
//! values never panic: see [`json`] for what happens to non-finite floats, deep nesting and lone
//! surrogates.
//!
//! ```
//! use mlflow_tracing_entities::{Span, SpanId, SpanStatus, SpanType, Trace, TraceId, TraceInfo, TraceLocation};
//!
//! let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736")?;
//! let root = Span::builder(trace_id, SpanId::from_hex("00f067aa0ba902b7")?, "answer_question")
//!     .times(1_700_000_000_000_000_000, Some(1_700_000_000_250_000_000))
//!     .span_type(&SpanType::Chain)
//!     .attribute("mlflow.spanInputs", &serde_json::json!({"question": "2+2?"}))?
//!     .attribute("mlflow.spanOutputs", "4")?
//!     .status(SpanStatus::ok())
//!     .build();
//! let info = TraceInfo::new("tr-4bf92f3577b34da6a3ce929d0e0e4736", TraceLocation::experiment("0"), 0);
//! let mut trace = Trace::new(info, vec![root]);
//! trace.finalize(1000);
//! assert_eq!(trace.info.request_preview.as_deref(), Some(r#"{"question": "2+2?"}"#));
//! assert!(trace.to_json()?.starts_with(r#"{"info": {"trace_id": "tr-4bf92f3577b34da6a3ce929d0e0e4736""#));
//! # Ok::<(), mlflow_tracing_entities::EntityError>(())
//! ```
#![doc(test(attr(deny(warnings))))]

mod assessment;
mod attributes;
mod chat_tool;
mod error;
mod ids;
pub mod json;
pub mod keys;
pub mod otlp;
pub mod preview;
mod span;
mod span_dict;
mod span_kinds;
mod token_usage;
mod trace;
mod trace_info;
mod trace_location;
mod uri;
mod usage_rollup;

pub use assessment::{
    Assessment, AssessmentError, AssessmentSource, AssessmentSourceType, AssessmentValue,
};
pub use attributes::SpanAttributes;
pub use chat_tool::{ChatTool, FunctionToolDefinition};
pub use error::{EntityError, Result};
pub use ids::{MlflowTraceId, SpanId, TRACE_ID_V3_PREFIX, TRACE_ID_V4_PREFIX, TraceId};
pub use span::{Span, SpanBuilder, SpanParts};
pub use span_kinds::{Link, SpanEvent, SpanLogLevel, SpanStatus, SpanStatusCode, SpanType};
pub use token_usage::TokenUsage;
pub use trace::{SizeStats, Trace, TraceData};
pub use trace_info::{
    ProtoJson, StringMap, TraceInfo, TraceState, format_duration_ms, format_request_time,
    parse_duration_ms, parse_request_time,
};
pub use trace_location::{
    DEFAULT_UC_LOGS_TABLE, DEFAULT_UC_SPANS_TABLE, TraceLocation, UcSchemaLocation,
    UcTablePrefixLocation,
};
pub use uri::is_http_uri;

/// Re-exported so that users of [`Span::to_otlp`] need no direct dependency.
pub use opentelemetry_proto;
