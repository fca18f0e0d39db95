//! The OpenTelemetry front door: spans started through OpenTelemetry's API on a tracer's own
//! provider ([`Tracer::otel_tracer`](crate::Tracer::otel_tracer)) become MLflow spans. A thin
//! adapter: `on_start` registers the trace or span with the trace manager, `on_end` converts the
//! SDK's span data to MLflow's `Span` and hands it to the manager.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use mlflow_tracing_entities::{
    Link, MlflowTraceId, Span, SpanAttributes, SpanEvent, SpanId, SpanParts, SpanStatus, TraceId,
    keys,
};
use opentelemetry::trace::{Span as _, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue, StringValue, Value as OtelValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span as SdkSpan, SpanData, SpanProcessor};
use serde_json::{Map, Value};

use crate::finish::Ended;
use crate::limits::{SpanLimits, is_reserved};
use crate::manager::TraceManager;
use crate::otel_values::otel_value_to_json;
use crate::stats::Stats;
use crate::util::{now_ns, unix_nanos};

/// Registers spans started through OpenTelemetry's API with the trace manager, and hands them to
/// it when they end.
#[derive(Debug, Clone)]
pub(crate) struct MlflowSpanProcessor {
    pub(crate) manager: Arc<TraceManager>,
}

const UNKNOWN_SPAN_TYPE_JSON: &str = "\"UNKNOWN\"";

impl SpanProcessor for MlflowSpanProcessor {
    fn on_start(&self, span: &mut SdkSpan, cx: &Context) {
        let sc = span.span_context().clone();
        let trace_id = TraceId::from(sc.trace_id());
        let span_id = SpanId::from(sc.span_id());
        let has_parent = cx.has_active_span() && cx.span().span_context().is_valid();
        let manager = &self.manager;
        let entry = if has_parent {
            match manager.entry(trace_id) {
                Some(entry) => entry,
                None => {
                    tracing::debug!(
                        trace_id = %trace_id.to_hex(),
                        "span started in a trace that is not in progress (probably timed out); \
                         it will not be recorded"
                    );
                    return;
                }
            }
        } else {
            let (name, start) = span.exported_data().map_or_else(
                || (String::new(), now_ns()),
                |d| (d.name.into_owned(), unix_nanos(d.start_time)),
            );
            match manager.start_trace(trace_id, name.into(), None, start) {
                Some(entry) => entry,
                None => return,
            }
        };
        span.set_attribute(KeyValue::new(
            keys::span::REQUEST_ID,
            OtelValue::String(StringValue::from(
                mlflow_tracing_entities::json::string_attribute_json(&String::from(
                    entry.mlflow_trace_id.clone(),
                )),
            )),
        ));
        span.set_attribute(KeyValue::new(keys::span::SPAN_TYPE, UNKNOWN_SPAN_TYPE_JSON));
        entry.span_started(span_id, !has_parent);
    }

    fn on_end(&self, data: SpanData) {
        let span = convert(data, &self.manager.limits, &self.manager.stats);
        self.manager.end_span(None, Ended::Span(Box::new(span)));
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Converts a finished SDK span to MLflow's span: OK unless ERROR, MLflow's attribute forms.
/// `limits` apply here (the span API applies them as values are set): what is over them is
/// dropped and counted in `stats`.
pub(crate) fn convert(data: SpanData, limits: &SpanLimits, stats: &Stats) -> Span {
    let trace_id = TraceId::from(data.span_context.trace_id());
    let span_id = SpanId::from(data.span_context.span_id());
    let parent = (data.parent_span_id != opentelemetry::trace::SpanId::INVALID)
        .then(|| SpanId::from(data.parent_span_id));
    let status = match data.status {
        Status::Error { description } => SpanStatus::error(description.into_owned()),
        Status::Ok | Status::Unset => SpanStatus::ok(),
    };
    let name = match data.name {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => s,
    };
    let mut attributes = SpanAttributes::with_capacity(data.attributes.len() + 1);
    let mut user_attributes = 0u32;
    // What the SDK itself dropped past its (generous) limits counts too.
    let event_attributes_dropped: u64 = data
        .events
        .iter()
        .map(|e| u64::from(e.dropped_attributes_count))
        .sum();
    let mut attributes_dropped =
        u64::from(data.dropped_attributes_count) + event_attributes_dropped;
    for kv in data.attributes {
        let key = kv.key.as_str();
        // Set again: moved to the end, as in OpenTelemetry Python's attribute dict.
        if attributes.shift_remove(key).is_none() && !is_reserved(key) {
            if user_attributes >= limits.max_attributes {
                attributes_dropped += 1;
                continue;
            }
            user_attributes += 1;
        }
        attributes.insert(key.to_owned(), otel_value_to_json(kv.value));
    }
    if attributes_dropped > 0 {
        stats.attributes_dropped(attributes_dropped);
    }
    let mut counted_events = 0u32;
    let mut events_dropped = u64::from(data.events.dropped_count);
    let events: Vec<SpanEvent> = data
        .events
        .events
        .into_iter()
        .filter(|event| {
            if event.name == SpanEvent::EXCEPTION {
                return true;
            }
            counted_events = counted_events.saturating_add(1);
            let keep = counted_events <= limits.max_events;
            if !keep {
                events_dropped += 1;
            }
            keep
        })
        .map(|event| SpanEvent {
            name: event.name.into_owned(),
            time_unix_nano: unix_nanos(event.timestamp),
            attributes: event
                .attributes
                .into_iter()
                .map(|kv| (kv.key.as_str().to_owned(), otel_value_to_json(kv.value)))
                .collect(),
        })
        .collect();
    if events_dropped > 0 {
        stats.events_dropped(events_dropped);
    }
    let max_links = usize::try_from(limits.max_links).unwrap_or(usize::MAX);
    let links_dropped = data.links.links.len().saturating_sub(max_links) as u64
        + u64::from(data.links.dropped_count);
    if links_dropped > 0 {
        stats.links_dropped(links_dropped);
    }
    let links = data
        .links
        .links
        .into_iter()
        .take(max_links)
        .map(|link| {
            let attributes: Map<String, Value> = link
                .attributes
                .into_iter()
                .map(|kv| (kv.key.as_str().to_owned(), otel_value_to_json(kv.value)))
                .collect();
            Link {
                trace_id: MlflowTraceId::v3(TraceId::from(link.span_context.trace_id()))
                    .to_string(),
                span_id: SpanId::from(link.span_context.span_id()),
                attributes: (!attributes.is_empty()).then_some(attributes),
            }
        })
        .collect();
    Span::from(SpanParts {
        trace_id,
        span_id,
        parent_id: parent,
        name,
        start_time_ns: unix_nanos(data.start_time),
        end_time_ns: Some(unix_nanos(data.end_time)),
        status,
        events,
        links,
        attributes,
    })
}
