//! Counters of everything the SDK drops, evicts or fails, so nothing is lost silently.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A snapshot of a tracer's counters (see [`Tracer::stats`](crate::Tracer::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TracerStats {
    /// Traces whose root span started (sampled ones only).
    pub traces_started: u64,
    /// Traces finished and handed to the exporter.
    pub traces_finished: u64,
    /// In-progress traces evicted from the buffer (TTL or capacity) and therefore not exported.
    pub traces_evicted: u64,
    /// In-progress traces halted by `MLFLOW_TRACE_TIMEOUT_SECONDS` and exported with ERROR.
    pub traces_timed_out: u64,
    /// Spans that ended after their trace was gone (evicted, halted or finished).
    pub spans_dropped: u64,
    /// Values that could not be serialized and were replaced by an error text.
    pub serialization_errors: u64,
    /// Panics caught in user span processors.
    pub span_processor_errors: u64,
    /// Items the exporter accepted.
    pub items_exported: u64,
    /// Items the exporter failed on.
    pub items_failed: u64,
    /// Items dropped before reaching the exporter (e.g. after shutdown).
    pub items_dropped: u64,
    /// User attributes dropped past [`SpanLimits::max_attributes`](crate::SpanLimits).
    pub attributes_dropped: u64,
    /// Events dropped past [`SpanLimits::max_events`](crate::SpanLimits).
    pub events_dropped: u64,
    /// Links dropped past [`SpanLimits::max_links`](crate::SpanLimits).
    pub links_dropped: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    traces_started: AtomicU64,
    traces_finished: AtomicU64,
    traces_evicted: AtomicU64,
    traces_timed_out: AtomicU64,
    spans_dropped: AtomicU64,
    serialization_errors: AtomicU64,
    span_processor_errors: AtomicU64,
    items_exported: AtomicU64,
    items_failed: AtomicU64,
    items_dropped: AtomicU64,
    attributes_dropped: AtomicU64,
    events_dropped: AtomicU64,
    links_dropped: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Logs the first drop of `what` in this process at WARN, later ones at DEBUG.
fn warn_once(warned: &AtomicBool, what: &str, setting: &str) {
    if warned.swap(true, Ordering::Relaxed) {
        tracing::debug!("span {what} over the limit dropped");
    } else {
        tracing::warn!(
            "span {what} over the limit were dropped (MLflow's own attributes never are); they \
             are counted in TracerStats. Raise {setting} to keep more. Reported once per process"
        );
    }
}

impl Stats {
    pub(crate) fn snapshot(&self) -> TracerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TracerStats {
            traces_started: get(&self.traces_started),
            traces_finished: get(&self.traces_finished),
            traces_evicted: get(&self.traces_evicted),
            traces_timed_out: get(&self.traces_timed_out),
            spans_dropped: get(&self.spans_dropped),
            serialization_errors: get(&self.serialization_errors),
            span_processor_errors: get(&self.span_processor_errors),
            items_exported: get(&self.items_exported),
            items_failed: get(&self.items_failed),
            items_dropped: get(&self.items_dropped),
            attributes_dropped: get(&self.attributes_dropped),
            events_dropped: get(&self.events_dropped),
            links_dropped: get(&self.links_dropped),
        }
    }

    pub(crate) fn trace_started(&self) {
        add(&self.traces_started, 1);
    }
    pub(crate) fn trace_finished(&self) {
        add(&self.traces_finished, 1);
    }
    pub(crate) fn trace_evicted(&self, trace_id: &str, spans: usize, why: &str) {
        add(&self.traces_evicted, 1);
        tracing::warn!(
            trace_id,
            spans,
            "MLflow trace evicted from the in-progress buffer ({why}); it will not be exported. \
             Raise MLFLOW_TRACE_BUFFER_TTL_SECONDS / MLFLOW_TRACE_BUFFER_MAX_SIZE or set \
             MLFLOW_TRACE_TIMEOUT_SECONDS to export overdue traces as errors."
        );
    }
    pub(crate) fn trace_timed_out(&self, trace_id: &str) {
        add(&self.traces_timed_out, 1);
        tracing::warn!(
            trace_id,
            "MLflow trace halted after MLFLOW_TRACE_TIMEOUT_SECONDS"
        );
    }
    pub(crate) fn span_dropped(&self, name: &str) {
        add(&self.spans_dropped, 1);
        tracing::debug!(
            span = name,
            "span ended after its trace was evicted, halted or finished; dropped"
        );
    }
    pub(crate) fn serialization_error(&self, what: &str, err: &dyn std::fmt::Display) {
        add(&self.serialization_errors, 1);
        tracing::warn!("could not serialize {what} for an MLflow span: {err}");
    }
    pub(crate) fn span_processor_error(&self, message: &str) {
        add(&self.span_processor_errors, 1);
        tracing::warn!("a user span processor panicked and was skipped: {message}");
    }
    pub(crate) fn record_exported(&self, n: u64) {
        add(&self.items_exported, n);
    }
    pub(crate) fn record_export_failed(&self, n: u64, err: &dyn std::fmt::Display) {
        add(&self.items_failed, n);
        tracing::warn!("failed to export {n} MLflow trace item(s): {err}");
    }
    /// `n` user attributes of a span were over the limit.
    pub(crate) fn attributes_dropped(&self, n: u64) {
        add(&self.attributes_dropped, n);
        static WARNED: AtomicBool = AtomicBool::new(false);
        warn_once(
            &WARNED,
            "attributes",
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT or TracerBuilder::with_span_limits",
        );
    }
    /// `n` events of a span were over the limit.
    pub(crate) fn events_dropped(&self, n: u64) {
        add(&self.events_dropped, n);
        static WARNED: AtomicBool = AtomicBool::new(false);
        warn_once(
            &WARNED,
            "events",
            "OTEL_SPAN_EVENT_COUNT_LIMIT or TracerBuilder::with_span_limits",
        );
    }
    /// `n` links of a span were over the limit.
    pub(crate) fn links_dropped(&self, n: u64) {
        add(&self.links_dropped, n);
        static WARNED: AtomicBool = AtomicBool::new(false);
        warn_once(
            &WARNED,
            "links",
            "OTEL_SPAN_LINK_COUNT_LIMIT or TracerBuilder::with_span_limits",
        );
    }
    pub(crate) fn record_export_dropped(&self, n: u64, why: &str) {
        add(&self.items_dropped, n);
        tracing::warn!("dropped {n} MLflow trace item(s): {why}");
    }
}
