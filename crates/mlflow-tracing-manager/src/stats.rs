//! Counters of everything the SDK drops, evicts or fails, so nothing is lost silently.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

crate::counter_set! {
    /// A snapshot of a tracer's counters (see [`Tracer::stats`](crate::Tracer::stats)).
    pub struct TracerStats;
    pub(crate) struct Stats;
    counters {
        /// Traces whose root span started (sampled ones only).
        traces_started,
        /// Traces finished and handed to the exporter.
        traces_finished,
        /// In-progress traces evicted from the buffer (TTL or capacity) and therefore not exported.
        traces_evicted,
        /// In-progress traces halted by `MLFLOW_TRACE_TIMEOUT_SECONDS` and exported with ERROR.
        traces_timed_out,
        /// Spans that ended after their trace was gone (evicted, halted or finished).
        spans_dropped,
        /// Values that could not be serialized and were replaced by an error text.
        serialization_errors,
        /// Panics caught in user span processors.
        span_processor_errors,
        /// Items the exporter accepted.
        items_exported,
        /// Items the exporter failed on.
        items_failed,
        /// Items dropped before reaching the exporter (e.g. after shutdown).
        items_dropped,
        /// User attributes dropped past [`SpanLimits::max_attributes`](crate::SpanLimits).
        attributes_dropped,
        /// Events dropped past [`SpanLimits::max_events`](crate::SpanLimits).
        events_dropped,
        /// Links dropped past [`SpanLimits::max_links`](crate::SpanLimits).
        links_dropped,
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Logs the first drop of `what` in this process at WARN, later ones at DEBUG.
fn warn_once(warned: &AtomicBool, what: &str, setting: &str) {
    if warned.swap(true, Ordering::Relaxed) {
        tracing::debug!("span {what} over the limit dropped");
    } else {
        crate::notice::visible(|| {
            tracing::warn!(
                "span {what} over the limit were dropped (MLflow's own attributes never are); they \
             are counted in TracerStats. Raise {setting} to keep more. Reported once per process"
            )
        });
    }
}

impl Stats {
    pub(crate) fn trace_started(&self) {
        add(&self.traces_started, 1);
    }
    pub(crate) fn trace_finished(&self) {
        add(&self.traces_finished, 1);
    }
    pub(crate) fn trace_evicted(&self, trace_id: &str, spans: usize, why: &str) {
        add(&self.traces_evicted, 1);
        crate::notice::visible(|| {
            tracing::warn!(
                trace_id,
                spans,
                "MLflow trace evicted from the in-progress buffer ({why}); it will not be exported. \
             Raise MLFLOW_TRACE_BUFFER_TTL_SECONDS / MLFLOW_TRACE_BUFFER_MAX_SIZE or set \
             MLFLOW_TRACE_TIMEOUT_SECONDS to export overdue traces as errors."
            )
        });
    }
    pub(crate) fn trace_timed_out(&self, trace_id: &str) {
        add(&self.traces_timed_out, 1);
        crate::notice::visible(|| {
            tracing::warn!(
                trace_id,
                "MLflow trace halted after MLFLOW_TRACE_TIMEOUT_SECONDS"
            )
        });
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
        crate::notice::visible(|| {
            tracing::warn!("could not serialize {what} for an MLflow span: {err}")
        });
    }
    pub(crate) fn span_processor_error(&self, message: &str) {
        add(&self.span_processor_errors, 1);
        crate::notice::visible(|| {
            tracing::warn!("a user span processor panicked and was skipped: {message}")
        });
    }
    pub(crate) fn record_exported(&self, n: u64) {
        add(&self.items_exported, n);
    }
    pub(crate) fn record_export_failed(&self, n: u64, err: &dyn std::fmt::Display) {
        add(&self.items_failed, n);
        crate::notice::visible(|| {
            tracing::warn!("failed to export {n} MLflow trace item(s): {err}")
        });
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
        crate::notice::visible(|| tracing::warn!("dropped {n} MLflow trace item(s): {why}"));
    }
}
