//! The OpenTelemetry span processor that turns spans into MLflow traces.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mlflow_tracing_entities::{
    Link, MlflowTraceId, Span, SpanEvent, SpanId, SpanLogLevel, SpanParts, SpanStatus, SpanType,
    TraceId, keys,
};
use opentelemetry::trace::{Span as _, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue, StringValue, Value as OtelValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span as SdkSpan, SpanData, SpanProcessor};
use serde_json::{Map, Number, Value};

use crate::limits::{SpanLimits, is_reserved};
use crate::stats::Stats;
use crate::tracer::Shared;

/// Passed in the parent context of a root span started by the span API: what `on_start` cannot
/// read from the span itself.
#[derive(Debug, Clone)]
pub(crate) struct RootStart {
    pub(crate) name: String,
    pub(crate) experiment_id: Option<String>,
}

/// The MLflow span processor: registers traces and spans with the trace manager on start, and
/// on end converts each span to MLflow's form, applies user span processors, and hands finished
/// traces to the exporter.
///
/// It is installed in the tracer's own (isolated) `SdkTracerProvider` by
/// [`TracerBuilder::build`](crate::TracerBuilder::build); spans started through OpenTelemetry's
/// API on that provider ([`Tracer::otel_tracer`](crate::Tracer::otel_tracer)) become MLflow spans
/// too.
#[derive(Debug, Clone)]
pub struct MlflowSpanProcessor {
    pub(crate) shared: Arc<Shared>,
}

const UNKNOWN_SPAN_TYPE_JSON: &str = "\"UNKNOWN\"";

thread_local! {
    static DEFER_END: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static DEFERRED: std::cell::RefCell<Vec<SpanData>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `end` (which ends an SDK span), then processes the ended span outside the SDK's span
/// lock: user span processors, trace completion and the exporter never run under it.
pub(crate) fn end_deferred(shared: &Shared, end: impl FnOnce()) {
    let outer = DEFER_END.replace(true);
    end();
    DEFER_END.set(outer);
    if !outer {
        for data in DEFERRED.take() {
            shared.end_span(data);
        }
    }
}

impl SpanProcessor for MlflowSpanProcessor {
    fn on_start(&self, span: &mut SdkSpan, cx: &Context) {
        let sc = span.span_context().clone();
        let trace_id = TraceId::from(sc.trace_id());
        let span_id = SpanId::from(sc.span_id());
        let has_parent = cx.has_active_span() && cx.span().span_context().is_valid();
        let shared = &self.shared;
        let entry = if has_parent {
            match shared.buffer.get_for_span(trace_id) {
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
            let start = cx.get::<RootStart>();
            let name = match start {
                Some(s) => s.name.clone(),
                None => span
                    .exported_data()
                    .map(|d| d.name.into_owned())
                    .unwrap_or_default(),
            };
            let experiment_id = start.and_then(|s| s.experiment_id.clone());
            match shared.start_trace(trace_id, &name, experiment_id) {
                Some(entry) => entry,
                None => return,
            }
        };
        span.set_attribute(KeyValue::new(
            keys::span::REQUEST_ID,
            OtelValue::String(StringValue::from(entry.request_id_attr.clone())),
        ));
        span.set_attribute(KeyValue::new(keys::span::SPAN_TYPE, UNKNOWN_SPAN_TYPE_JSON));
        entry.span_started(span_id, !has_parent);
    }

    fn on_end(&self, data: SpanData) {
        // Called by the SDK while it holds the span's lock: when the span API ends the span,
        // only stash the data here and process it once the lock is released (see `end_deferred`).
        if DEFER_END.get() {
            DEFERRED.with(|d| d.borrow_mut().push(data));
        } else {
            self.shared.end_span(data);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// An OpenTelemetry attribute value in MLflow's stored form: strings as they are (the SDK stores
/// JSON text), other values raw (as MLflow keeps attributes set by foreign OpenTelemetry code).
pub(crate) fn otel_value_to_json(value: OtelValue) -> Value {
    use opentelemetry::Array;
    fn num(f: f64) -> Value {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
    match value {
        OtelValue::String(s) => Value::String(String::from(s)),
        OtelValue::Bool(b) => Value::Bool(b),
        OtelValue::I64(i) => Value::Number(i.into()),
        OtelValue::F64(f) => num(f),
        OtelValue::Array(Array::Bool(v)) => Value::Array(v.into_iter().map(Value::Bool).collect()),
        OtelValue::Array(Array::I64(v)) => {
            Value::Array(v.into_iter().map(|i| Value::Number(i.into())).collect())
        }
        OtelValue::Array(Array::F64(v)) => Value::Array(v.into_iter().map(num).collect()),
        OtelValue::Array(Array::String(v)) => Value::Array(
            v.into_iter()
                .map(|s| Value::String(String::from(s)))
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

/// A raw JSON value as an OpenTelemetry attribute value (for event attributes, which MLflow keeps
/// raw). Objects and mixed arrays become their JSON text.
pub(crate) fn json_to_otel_value(value: &Value) -> OtelValue {
    match value {
        Value::String(s) => OtelValue::String(s.clone().into()),
        Value::Bool(b) => OtelValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => OtelValue::I64(i),
            None => OtelValue::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Null => OtelValue::String("None".into()),
        other => OtelValue::String(other.to_string().into()),
    }
}

/// Converts a finished SDK span to MLflow's span: OK unless ERROR, MLflow's attribute forms,
/// and the default log level of its type when none was set. `limits` apply here to spans made
/// through OpenTelemetry's API (the span API applies them as values are set): what is over them
/// is dropped and counted in `stats`.
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
    let mut attributes = Map::with_capacity(data.attributes.len() + 1);
    let mut user_attributes = 0u32;
    let mut attributes_dropped = 0u64;
    for kv in data.attributes {
        let key = kv.key.as_str();
        if !attributes.contains_key(key) && !is_reserved(key) {
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
    let mut events_dropped = 0u64;
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
    if data.links.links.len() > max_links {
        stats.links_dropped((data.links.links.len() - max_links) as u64);
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
    let mut span = Span::from(SpanParts {
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
    });
    if !span.raw_attributes().contains_key(keys::span::LOG_LEVEL) {
        // The span type as stored is almost always a plain JSON string: read it without parsing.
        let span_type = match span.raw_attributes().get(keys::span::SPAN_TYPE) {
            Some(Value::String(s))
                if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') && !s.contains('\\') =>
            {
                SpanType::from(&s[1..s.len() - 1])
            }
            _ => span.span_type().unwrap_or(SpanType::Unknown),
        };
        let level = span_type.default_log_level();
        span.set_raw_attribute(
            keys::span::LOG_LEVEL,
            Value::String(level.as_i64().to_string()),
        );
    }
    // MLflow raises the level to ERROR when an exception event is added.
    if span.events().iter().any(|e| e.name == SpanEvent::EXCEPTION) {
        let error = SpanLogLevel::Error.as_i64();
        let current = span
            .raw_attributes()
            .get(keys::span::LOG_LEVEL)
            .and_then(|v| match v {
                Value::String(s) => s.parse::<i64>().ok(),
                other => other.as_i64(),
            });
        if current.is_none_or(|c| c < error) {
            span.set_raw_attribute(keys::span::LOG_LEVEL, Value::String(error.to_string()));
        }
    }
    span
}
