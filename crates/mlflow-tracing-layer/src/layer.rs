//! [`MlflowLayer`]: `tracing` spans as MLflow spans.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use mlflow_tracing_entities::{Link, MlflowTraceId, SpanEvent, SpanStatus, keys};
use mlflow_tracing_manager::{EnteredSpan, LiveSpan, current_span, start_span};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::fields::{FieldValue, Fields};
use crate::genai::{self, MessageEvent};

/// Records `tracing` spans as MLflow spans of the current trace (see the crate docs).
#[derive(Debug, Default)]
pub struct MlflowLayer {
    genai_only: bool,
    warned_no_tracer: AtomicBool,
}

impl MlflowLayer {
    /// Records every span that reaches the layer: choose which with a per-layer filter
    /// (`layer.with_filter(Targets::new().with_target("my_app", Level::INFO))`, an
    /// `EnvFilter`, a level). A recorded span with no MLflow parent starts a trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records only spans that carry OpenTelemetry GenAI attributes (a `gen_ai.*` field, as LLM
    /// frameworks such as rig declare) or that live inside an MLflow trace (a `#[trace]` or
    /// `start_span` span, or a span recorded by this layer): a busy service's other spans do not
    /// become traces. Per-layer filters still apply on top.
    pub fn genai() -> Self {
        MlflowLayer {
            genai_only: true,
            ..Self::default()
        }
    }

    fn warn_no_tracer(&self) {
        if !self.warned_no_tracer.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "MlflowLayer: no MLflow tracer is installed, so tracing spans are not recorded; \
                 call mlflow_tracing::init first. Reported once"
            );
        }
    }
}

/// The MLflow side of a span the layer records.
struct Recorded {
    live: LiveSpan,
    /// `gen_ai.*` fields as attribute JSON text, for the translation when the span closes.
    genai: Vec<(&'static str, String)>,
    /// GenAI message events, for the same.
    events: Vec<MessageEvent>,
    /// MLflow keys set through fields: the translation leaves those alone.
    explicit: Vec<&'static str>,
    /// `otel.status_message`, for an `otel.status_code` of ERROR.
    status_message: String,
}

/// A span the layer saw and does not record (`MlflowLayer::genai`).
struct Skipped;

thread_local! {
    /// The MLflow spans made current by entering their `tracing` span on this thread.
    static ENTERED: RefCell<Entered> = const { RefCell::new(Entered(Vec::new())) };
}

/// Guards of entered spans by span id. A guard still here when the thread ends is forgotten,
/// not dropped: the context it would restore is gone by then.
struct Entered(Vec<(u64, EnteredSpan)>);

impl Drop for Entered {
    fn drop(&mut self) {
        for guard in self.0.drain(..) {
            std::mem::forget(guard);
        }
    }
}

/// The nearest span, from `span` up, that the layer records.
fn nearest_recorded<S>(span: SpanRef<'_, S>) -> Option<LiveSpan>
where
    S: for<'a> LookupSpan<'a>,
{
    span.scope()
        .find_map(|s| s.extensions().get::<Recorded>().map(|r| r.live.clone()))
}

/// Whether the callsite declares a `gen_ai.*` field.
fn declares_genai(metadata: &tracing::Metadata<'_>) -> bool {
    metadata
        .fields()
        .iter()
        .any(|f| f.name().starts_with("gen_ai."))
}

impl Recorded {
    /// Applies fields recorded on the span.
    fn apply(&mut self, fields: Fields) {
        let mut status_error = false;
        for (name, value) in fields.values {
            match name {
                "otel.name" => {
                    if let FieldValue::Text(t) = &value {
                        self.live.update_name(t.clone());
                    }
                }
                // MLflow spans have no kind.
                "otel.kind" => {}
                "otel.status_code" => {
                    if let FieldValue::Text(t) = &value {
                        if t.eq_ignore_ascii_case("error") {
                            status_error = true;
                        } else if t.eq_ignore_ascii_case("ok") {
                            self.live.set_status(SpanStatus::ok());
                        }
                    }
                }
                "otel.status_message" => {
                    if let FieldValue::Text(t) = value {
                        self.status_message = t;
                    }
                }
                "error" if fields.error.is_none() => {
                    if let FieldValue::Text(t) = &value {
                        self.live.record_exception("Error", t, "");
                    }
                }
                "error" => {}
                _ => {
                    let json = value.attribute_json();
                    if name.starts_with("gen_ai.") {
                        self.genai.push((name, json.clone()));
                    } else if name.starts_with("mlflow.") {
                        self.explicit.push(name);
                    }
                    // Valid JSON by construction.
                    let _ = self.live.set_attribute_json(name, json);
                }
            }
        }
        if let Some((kind, message, chain)) = fields.error {
            self.live.record_exception(&kind, &message, &chain);
        }
        if status_error {
            self.live
                .set_status(SpanStatus::error(self.status_message.clone()));
        }
    }

    /// The GenAI translation, then the end of the MLflow span.
    fn close(self) {
        let t = genai::translate(&self.genai, &self.events);
        let unset = |key: &str| !self.explicit.contains(&key);
        if let Some(span_type) = t.span_type
            && unset(keys::span::SPAN_TYPE)
        {
            self.live.set_span_type(span_type);
        }
        let json_keys = [
            (keys::span::INPUTS, t.inputs),
            (keys::span::OUTPUTS, t.outputs),
            (keys::span::CHAT_USAGE, t.token_usage),
            (keys::span::MODEL, t.model),
            (keys::span::MODEL_PROVIDER, t.provider),
            (keys::span::CHAT_TOOLS, t.tools),
        ];
        for (key, value) in json_keys {
            if let Some(json) = value
                && unset(key)
            {
                let _ = self.live.set_attribute_json(key, json);
            }
        }
        self.live.end();
    }
}

impl<S> Layer<S> for MlflowLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        // An explicit tracing parent: its nearest recorded span. Otherwise the current MLflow
        // span (a `#[trace]` span, or the recorded tracing span entered on this thread).
        let explicit_parent = attrs
            .parent()
            .and_then(|p| ctx.span(p))
            .and_then(nearest_recorded);
        let metadata = attrs.metadata();
        if self.genai_only
            && !declares_genai(metadata)
            && explicit_parent.is_none()
            && current_span().is_none()
        {
            span.extensions_mut().insert(Skipped);
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let mut start = start_span(metadata.name());
        if let Some(parent) = &explicit_parent {
            start = start.parent(parent);
        }
        // The span type when the operation is known at creation (it keeps its place next to
        // the trace id, as MLflow's processor writes it).
        let genai_at_start: Vec<(&'static str, String)> = fields
            .values
            .iter()
            .filter(|(k, _)| *k == "gen_ai.operation.name" || *k == "gen_ai.request.model")
            .map(|(k, v)| (*k, v.attribute_json()))
            .collect();
        if let Some(t) = genai::span_type(&genai_at_start) {
            start = start.span_type(t);
        }
        let live = start.start_detached();
        if live.tracer().is_none() {
            self.warn_no_tracer();
            span.extensions_mut().insert(Skipped);
            return;
        }
        let mut recorded = Recorded {
            live,
            genai: Vec::new(),
            events: Vec::new(),
            explicit: Vec::new(),
            status_message: String::new(),
        };
        recorded.apply(fields);
        span.extensions_mut().insert(recorded);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(recorded) = extensions.get_mut::<Recorded>() {
            let mut fields = Fields::default();
            values.record(&mut fields);
            recorded.apply(fields);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        let (Some(span), Some(follows)) = (ctx.span(id), ctx.span(follows)) else {
            return;
        };
        let Some(target) = nearest_recorded(follows) else {
            return;
        };
        let (Some(trace_id), Some(span_id)) = (target.trace_id(), target.span_id()) else {
            return;
        };
        if let Some(recorded) = span.extensions().get::<Recorded>() {
            recorded.live.add_link(&Link {
                trace_id: MlflowTraceId::v3(trace_id).to_string(),
                span_id,
                attributes: None,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let Some(owner) = span.scope().find(|s| s.extensions().get::<Recorded>().is_some())
        else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let message = fields.values.iter().position(|(k, _)| *k == "message");
        let name = if metadata.name().starts_with("event ") {
            message
                .map(|i| fields.values.remove(i).1)
                .and_then(|v| match v {
                    FieldValue::Text(t) => Some(t),
                    _ => None,
                })
                .unwrap_or_else(|| "event".to_owned())
        } else {
            metadata.name().to_owned()
        };
        let mut extensions = owner.extensions_mut();
        let Some(recorded) = extensions.get_mut::<Recorded>() else {
            return;
        };
        if name.starts_with("gen_ai.") {
            let get = |k: &str| {
                fields
                    .values
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.raw())
            };
            recorded.events.push(MessageEvent {
                name: name.clone(),
                role: get("role"),
                content: get("content"),
            });
        }
        let mut span_event = SpanEvent::now(name);
        for (k, v) in &fields.values {
            span_event.attributes.insert((*k).to_owned(), v.raw());
        }
        span_event
            .attributes
            .insert("level".into(), metadata.level().as_str().into());
        span_event
            .attributes
            .insert("target".into(), metadata.target().into());
        recorded.live.add_event(span_event);
        if *metadata.level() == Level::ERROR {
            if let Some((kind, message, chain)) = fields.error {
                recorded.live.record_exception(&kind, &message, &chain);
            } else if let Some((_, FieldValue::Text(t))) =
                fields.values.iter().find(|(k, _)| *k == "error")
            {
                recorded.live.record_exception("Error", t, "");
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let guard = span
            .extensions()
            .get::<Recorded>()
            .map(|r| r.live.enter());
        if let Some(guard) = guard {
            let _ = ENTERED.try_with(|e| e.borrow_mut().0.push((id.into_u64(), guard)));
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let _ = ENTERED.try_with(|e| {
            let mut entered = e.borrow_mut();
            if let Some(i) = entered.0.iter().rposition(|(s, _)| *s == id.into_u64()) {
                let (_, guard) = entered.0.remove(i);
                drop(entered);
                drop(guard);
            }
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let recorded = span.extensions_mut().remove::<Recorded>();
        if let Some(recorded) = recorded {
            recorded.close();
        }
    }
}
