//! [`MlflowLayer`]: `tracing` spans as MLflow spans.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use mlflow_tracing_entities::{Link, MlflowTraceId, SpanEvent, SpanStatus, SpanType, keys};
use mlflow_tracing_manager::{EnteredSpan, LiveSpan, current_span, start_span};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::fields::{FieldValue, Fields, is_convention};
use crate::genai;

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
    /// The span's fields in the order recorded (a field recorded again moves to the end, as a
    /// key set again does in OpenTelemetry), stored on the MLflow span when it closes.
    fields: Vec<(&'static str, FieldValue)>,
    /// Whether a GenAI message event was recorded (for the translation).
    message_events: bool,
    /// `otel.status_message`, for an `otel.status_code` of ERROR.
    status_message: String,
    /// The span type given at the start.
    start_type: Option<SpanType>,
    /// An `otel.status_code` of ERROR in the fields being recorded.
    status_error: bool,
    /// An error value (with its chain) in the fields being recorded: its text twin is skipped.
    error_recorded: bool,
}

/// Records `on_record` fields straight into the span (no list in between).
struct RecordInto<'a> {
    recorded: &'a mut Recorded,
    actions: &'a mut Vec<Action>,
}

impl RecordInto<'_> {
    fn field(&mut self, name: &'static str, value: FieldValue) {
        self.recorded.field(name, value, self.actions);
    }
}

impl tracing::field::Visit for RecordInto<'_> {
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.field(field.name(), FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.field(field.name(), FieldValue::U64(value));
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.field(field.name(), FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.field(field.name(), FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.field(field.name(), FieldValue::of_text(field.name(), value));
    }
    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        let (message, chain) = crate::fields::error_chain(value);
        if field.name() == "error" || !self.recorded.error_recorded {
            self.actions.push(Action::Exception(
                "Error".to_owned(),
                message.clone(),
                chain,
            ));
            self.recorded.error_recorded = true;
        }
        self.field(field.name(), FieldValue::Text(message));
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.field(field.name(), FieldValue::Text(format!("{value:?}")));
    }
}

/// What recorded fields ask of the MLflow span, done once the `tracing` span's extensions are
/// released: calling into the span may log (a dropped event is reported), and a layer that
/// reads extensions while handling that log on this thread would wait on the lock forever.
enum Action {
    Rename(String),
    Status(SpanStatus),
    Exception(String, String, String),
}

impl Action {
    fn run(self, live: &LiveSpan) {
        match self {
            Action::Rename(name) => live.update_name(name),
            Action::Status(status) => live.set_status(status),
            Action::Exception(kind, message, chain) => {
                live.record_exception(&kind, &message, &chain);
            }
        }
    }
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
    /// Applies fields recorded on the span (see [`Recorded::field`]) and an error value's
    /// exception (when the span is made: nothing is locked yet).
    fn apply(
        &mut self,
        fields: Vec<(&'static str, FieldValue)>,
        error: Option<(String, String, String)>,
    ) {
        let mut actions = Vec::new();
        for (name, value) in fields {
            self.field(name, value, &mut actions);
        }
        if let Some((kind, message, chain)) = error {
            actions.push(Action::Exception(kind, message, chain));
        }
        self.after_fields(&mut actions);
        for action in actions {
            action.run(&self.live);
        }
    }

    /// One field: the `otel.*` conventions and a text `error` as actions, the others kept for
    /// the end.
    fn field(&mut self, name: &'static str, value: FieldValue, actions: &mut Vec<Action>) {
        match name {
            "otel.name" => {
                if let FieldValue::Text(t) = value {
                    actions.push(Action::Rename(t));
                }
            }
            // MLflow spans have no kind.
            "otel.kind" => {}
            "otel.status_code" => {
                if let FieldValue::Text(t) = &value {
                    if t.eq_ignore_ascii_case("error") {
                        self.status_error = true;
                    } else if t.eq_ignore_ascii_case("ok") {
                        actions.push(Action::Status(SpanStatus::ok()));
                    }
                }
            }
            "otel.status_message" => {
                if let FieldValue::Text(t) = value {
                    self.status_message = t;
                }
            }
            // An error recorded with `record_error` comes with its chain (see `Fields`).
            "error" => {
                if let FieldValue::Text(t) = value
                    && !self.error_recorded
                {
                    actions.push(Action::Exception("Error".to_owned(), t, String::new()));
                }
            }
            _ => {
                if let Some(i) = self.fields.iter().position(|(k, _)| *k == name) {
                    self.fields.remove(i);
                }
                self.fields.push((name, value));
            }
        }
    }

    /// After a set of fields: an `otel.status_code` of ERROR with its message.
    fn after_fields(&mut self, actions: &mut Vec<Action>) {
        if std::mem::take(&mut self.status_error) {
            actions.push(Action::Status(SpanStatus::error(
                self.status_message.clone(),
            )));
        }
        self.error_recorded = false;
    }

    /// The span type from the GenAI fields, the fields as attributes, the GenAI translation
    /// asked for (it runs when the trace is finalized), then the end of the MLflow span.
    fn close(self) {
        let genai_fields = self
            .fields
            .iter()
            .any(|(k, _)| k.starts_with("gen_ai.") || k.starts_with("llm."));
        // An `mlflow.spanType` field wins over the translation.
        if genai_fields && !self.fields.iter().any(|(k, _)| *k == keys::span::SPAN_TYPE) {
            let span_type = genai::span_type_of_fields(&self.fields);
            if span_type != self.start_type
                && let Some(span_type) = span_type
            {
                self.live.set_span_type(span_type);
            }
        }
        let genai = genai_fields || self.message_events;
        self.live.set_attribute_values(
            self.fields
                .into_iter()
                .map(|(k, v)| (k, v.into_attribute_json())),
        );
        if genai {
            self.live.finish_with(genai::finish);
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
        let mut fields = Fields::of_span(metadata.fields().len());
        attrs.record(&mut fields);
        // Room for the fields (the translation, at finalization, reserves its own).
        let mut start = start_span(metadata.name()).attribute_capacity(metadata.fields().len());
        if let Some(parent) = &explicit_parent {
            start = start.parent(parent);
        }
        // The span type when the operation is known at creation (it keeps its place next to
        // the trace id, as MLflow's processor writes it).
        let start_type = genai::span_type_of_fields(&fields.values);
        if let Some(t) = start_type.clone() {
            start = start.span_type(t);
        }
        let live = start.start_detached();
        if live.tracer().is_none() {
            // A no-op: tracing is off here (a disabled tracer or scope), or there is no tracer.
            if mlflow_tracing_manager::current_tracer().is_none() {
                self.warn_no_tracer();
            }
            span.extensions_mut().insert(Skipped);
            return;
        }
        let Fields {
            mut values, error, ..
        } = fields;
        // The conventions out; the other fields (distinct, as a callsite declares them) stay in
        // the list the span keeps.
        let conventions: Vec<_> = values
            .extract_if(.., |(name, _)| is_convention(name))
            .collect();
        let mut recorded = Recorded {
            live,
            fields: values,
            message_events: false,
            status_message: String::new(),
            start_type,
            status_error: false,
            error_recorded: error.is_some(),
        };
        recorded.apply(conventions, error);
        span.extensions_mut().insert(recorded);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut actions = Vec::new();
        let live = {
            let mut extensions = span.extensions_mut();
            let Some(recorded) = extensions.get_mut::<Recorded>() else {
                return;
            };
            values.record(&mut RecordInto {
                recorded,
                actions: &mut actions,
            });
            recorded.after_fields(&mut actions);
            if actions.is_empty() {
                return;
            }
            recorded.live.clone()
        };
        for action in actions {
            action.run(&live);
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
        let live = span.extensions().get::<Recorded>().map(|r| r.live.clone());
        if let Some(live) = live {
            live.add_link(&Link {
                trace_id: String::from(MlflowTraceId::v3(trace_id)),
                span_id,
                attributes: None,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The SDK's own logs (a dropped event is reported, say) are not span events: recording
        // them could report another drop, and so on.
        if event.metadata().target().starts_with("mlflow_tracing") {
            return;
        }
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let Some(owner) = span
            .scope()
            .find(|s| s.extensions().get::<Recorded>().is_some())
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
        // The lock only to note a message event and take the span; calls into the span after.
        let live = {
            let mut extensions = owner.extensions_mut();
            let Some(recorded) = extensions.get_mut::<Recorded>() else {
                return;
            };
            recorded.message_events |= name.starts_with("gen_ai.");
            recorded.live.clone()
        };
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
        live.add_event(span_event);
        if *metadata.level() == Level::ERROR {
            if let Some((kind, message, chain)) = fields.error {
                live.record_exception(&kind, &message, &chain);
            } else if let Some((_, FieldValue::Text(t))) =
                fields.values.iter().find(|(k, _)| *k == "error")
            {
                live.record_exception("Error", t, "");
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        // Entering only makes the span current (nothing that could log): done under the lock.
        let guard = span.extensions().get::<Recorded>().map(|r| r.live.enter());
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
