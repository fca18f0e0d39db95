//! What leaves the trace manager: finished spans and traces, as exporters receive them.

use mlflow_tracing_entities::{Span, Trace, TraceLocation};

/// A span that just ended, for exporters that log spans incrementally (MLflow's `log_spans`,
/// Unity Catalog tables). Only sent to exporters whose [`TraceExporter::wants_spans`](crate::TraceExporter::wants_spans) is true.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SpanItem {
    /// The finished span (user span processors already applied).
    pub span: Span,
    /// The MLflow trace id of its trace (`tr-…` or `trace:/…`).
    pub trace_id: String,
    /// Where its trace is stored.
    pub location: TraceLocation,
}

/// A finished trace: every span, the final trace info, previews and token usage.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TraceItem {
    /// The trace. Size stats are not added here: exporters add them just before upload.
    pub trace: Trace,
    /// True for the placeholder trace of a request continued from a remote `traceparent`: it
    /// holds only this process's spans of someone else's trace, so exporters that store whole
    /// traces skip it (as MLflow does) and span-logging exporters already have its spans.
    pub remote: bool,
}

/// One unit handed from the span processor to an exporter.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ExportItem {
    /// A span that ended (only for exporters that want spans).
    Span(Box<SpanItem>),
    /// A trace whose root span ended (and whose other spans ended too).
    Trace(Box<TraceItem>),
}
