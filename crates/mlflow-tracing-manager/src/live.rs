//! Live spans: starting them (`start_span`), editing them while they run, and ending them.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use mlflow_tracing_entities::json::{string_attribute_json, to_attribute_json};
use mlflow_tracing_entities::{
    Link, SpanEvent, SpanId, SpanLogLevel, SpanStatus, SpanStatusCode, SpanType, TraceId, keys,
};
use opentelemetry::trace::{
    Span as _, SpanContext, Status, TraceContextExt, TraceFlags, TraceState, Tracer as _,
};
use opentelemetry::{Context, ContextGuard, Key, KeyValue, Value as OtelValue};
use serde::Serialize;

use crate::buffer::TraceEntry;
use crate::context::{ActiveSpan, ScopedTracer};
use crate::global::global_tracer;
use crate::processor::{RootStart, json_to_otel_value};
use crate::tracer::Tracer;

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The text of a panic payload (`&str` or `String`), as the exception message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// The short name of a type, as MLflow's `exception.type` holds a class name: the last path
/// segment of [`std::any::type_name`], generics kept (`Error`, `MyError<u8>`).
pub(crate) fn short_type_name<T: ?Sized>() -> String {
    // Drop the module path of every path in the name: `alloc::boxed::Box<dyn core::error::Error>`
    // becomes `Box<dyn Error>`.
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        out.push_str(token.rsplit("::").next().unwrap_or(token));
        token.clear();
    };
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

pub(crate) struct LiveSpanInner {
    pub(crate) tracer: Tracer,
    /// A fresh context holding only the SDK span (MLflow keeps its spans out of the global
    /// OpenTelemetry context).
    pub(crate) otel_cx: Context,
    pub(crate) entry: Option<Arc<TraceEntry>>,
    pub(crate) span_id: SpanId,
    pub(crate) trace_id: TraceId,
    pub(crate) recording: bool,
    pub(crate) ended: AtomicBool,
    pub(crate) outputs_set: AtomicBool,
    /// What is applied to the SDK span at end.
    pub(crate) state: std::sync::Mutex<LiveState>,
}

/// What a live span keeps until it ends: its status and its attributes. Attributes stay here
/// rather than in the SDK span, whose attribute list appends every set (a key set twice is
/// stored twice) and refuses everything past its limit, MLflow's own keys included.
#[derive(Default)]
pub(crate) struct LiveState {
    /// The status to apply at end (MLflow's rules, see `set_status_raw`).
    status: Option<SpanStatus>,
    /// Attribute values as MLflow stores them (JSON text), in the order keys were first set; a
    /// later set replaces the value in place, as in MLflow's attribute dict.
    attributes: Vec<(Key, String)>,
    /// Distinct user (non-MLflow) attribute keys in `attributes`.
    user_attributes: u32,
    /// Events added through the span API (`exception` events not counted).
    events: u32,
    /// Links added.
    links: u32,
}

impl LiveState {
    /// Sets `key`; false when it is a new user key past `max_user` (dropped).
    pub(crate) fn set(&mut self, key: Key, json: String, max_user: u32) -> bool {
        if let Some(slot) = self.attributes.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = json;
            return true;
        }
        if !crate::limits::is_reserved(key.as_str()) {
            if self.user_attributes >= max_user {
                return false;
            }
            self.user_attributes += 1;
        }
        self.attributes.push((key, json));
        true
    }
}

impl LiveSpanInner {
    fn encode<T: Serialize + ?Sized>(&self, what: &str, value: &T) -> String {
        match to_attribute_json(value) {
            Ok(json) => json,
            Err(err) => {
                self.tracer.shared().stats.serialization_error(what, &err);
                string_attribute_json(&format!("<unserializable {what}: {err}>"))
            }
        }
    }

    pub(crate) fn set_json(&self, key: Key, json: String) {
        if !self.recording {
            return;
        }
        let shared = self.tracer.shared();
        let kept = crate::buffer::lock(&self.state).set(key, json, shared.limits.max_attributes);
        if !kept {
            shared.stats.attributes_dropped(1);
        }
    }

    /// Whether one more event or link fits (`count` selects which); counts a drop.
    fn admit(&self, count: fn(&mut LiveState) -> &mut u32, max: u32, events: bool) -> bool {
        let fits = {
            let mut st = crate::buffer::lock(&self.state);
            let n = count(&mut st);
            if *n < max {
                *n += 1;
                true
            } else {
                false
            }
        };
        if !fits {
            let stats = &self.tracer.shared().stats;
            if events {
                stats.events_dropped(1);
            } else {
                stats.links_dropped(1);
            }
        }
        fits
    }

    pub(crate) fn add_event_raw(&self, event: SpanEvent) {
        if !self.recording {
            return;
        }
        // Exception events carry the error: never dropped, not counted.
        if event.name != SpanEvent::EXCEPTION
            && !self.admit(
                |st| &mut st.events,
                self.tracer.shared().limits.max_events,
                true,
            )
        {
            return;
        }
        let attributes = event
            .attributes
            .iter()
            .map(|(k, v)| KeyValue::new(Key::from(k.clone()), json_to_otel_value(v)))
            .collect();
        let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(event.time_unix_nano);
        self.otel_cx
            .span()
            .add_event_with_timestamp(event.name, time, attributes);
    }

    pub(crate) fn set_status_raw(&self, status: SpanStatus) {
        if !self.recording {
            return;
        }
        // The SDK keeps the "greatest" status (and orders ERRORs by description); MLflow keeps
        // the last one set, except that OK is final. Keep it here and apply it once at end.
        let mut st = crate::buffer::lock(&self.state);
        if st
            .status
            .as_ref()
            .is_some_and(|s| s.code == SpanStatusCode::Ok)
        {
            return;
        }
        st.status = Some(status);
    }

    /// Moves the attributes and the status kept here onto the SDK span (just before it ends).
    fn apply_state(&self) {
        let (attributes, status) = {
            let mut st = crate::buffer::lock(&self.state);
            (std::mem::take(&mut st.attributes), st.status.take())
        };
        if !self.recording {
            return;
        }
        let span = self.otel_cx.span();
        if !attributes.is_empty() {
            span.set_attributes(
                attributes
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, OtelValue::String(v.into()))),
            );
        }
        if let Some(status) = status {
            span.set_status(match status.code {
                SpanStatusCode::Error => Status::error(status.message),
                SpanStatusCode::Ok => Status::Ok,
                SpanStatusCode::Unset => Status::Unset,
            });
        }
    }

    /// Ends the span; false if it had already been ended (by another thread, say).
    pub(crate) fn end_raw(&self, end_time_ns: Option<u64>) -> bool {
        if self.ended.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.apply_state();
        let span = self.otel_cx.span();
        let shared = self.tracer.shared();
        crate::buffer::with_handoff(self.entry.as_ref(), || {
            crate::processor::end_deferred(shared, || match end_time_ns {
                Some(ns) => {
                    span.end_with_timestamp(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns));
                }
                None => span.end(),
            });
        });
        true
    }
}

impl Drop for LiveSpanInner {
    fn drop(&mut self) {
        // A span dropped without `end` ends now (the SDK would end it too, without what is kept
        // here).
        self.end_raw(None);
    }
}

/// A running span (MLflow's `LiveSpan`). Cheap to clone; every clone edits the same span.
///
/// Setters JSON-encode values as MLflow stores them. A value that cannot be serialized is stored
/// as an error text instead, counted in [`TracerStats::serialization_errors`](crate::TracerStats)
/// and logged; setters never fail or panic. A no-op span (tracing disabled, trace sampled out, no
/// tracer installed) accepts every call and records nothing.
#[derive(Clone, Default)]
pub struct LiveSpan {
    pub(crate) inner: Option<Arc<LiveSpanInner>>,
}

impl fmt::Debug for LiveSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Some(i) => f
                .debug_struct("LiveSpan")
                .field("trace_id", &self.trace_id())
                .field("span_id", &i.span_id)
                .field("recording", &i.recording)
                .field("ended", &i.ended.load(Ordering::Relaxed))
                .finish(),
            None => f.write_str("LiveSpan(no-op)"),
        }
    }
}

impl LiveSpan {
    /// A span that records nothing.
    pub fn noop() -> Self {
        LiveSpan { inner: None }
    }

    /// Whether this span records (false for no-op and sampled-out spans).
    pub fn is_recording(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.recording)
    }

    /// Whether `end` was called (or the trace was halted).
    pub fn is_ended(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|i| i.ended.load(Ordering::Acquire))
    }

    /// The MLflow trace id (`tr-…`); `None` for spans that do not record.
    pub fn trace_id(&self) -> Option<String> {
        self.inner
            .as_ref()
            .and_then(|i| i.entry.as_ref())
            .map(|e| e.mlflow_trace_id.clone())
    }

    /// The OpenTelemetry trace id (also set for sampled-out spans, which carry the decision).
    pub fn otel_trace_id(&self) -> Option<TraceId> {
        self.inner.as_ref().map(|i| i.trace_id)
    }

    /// The span id.
    pub fn span_id(&self) -> Option<SpanId> {
        self.inner.as_ref().map(|i| i.span_id)
    }

    /// The tracer this span belongs to.
    pub fn tracer(&self) -> Option<Tracer> {
        self.inner.as_ref().map(|i| i.tracer.clone())
    }

    fn recording(&self) -> Option<&LiveSpanInner> {
        self.inner.as_deref().filter(|i| i.recording)
    }

    /// Sets `mlflow.spanInputs`.
    pub fn set_inputs<T: Serialize + ?Sized>(&self, inputs: &T) {
        if let Some(i) = self.recording() {
            let json = i.encode("inputs", inputs);
            i.set_json(Key::from_static_str(keys::span::INPUTS), json);
        }
    }

    /// Sets `mlflow.spanOutputs`.
    pub fn set_outputs<T: Serialize + ?Sized>(&self, outputs: &T) {
        if let Some(i) = self.recording() {
            let json = i.encode("outputs", outputs);
            i.set_json(Key::from_static_str(keys::span::OUTPUTS), json);
            i.outputs_set.store(true, Ordering::Release);
        }
    }

    /// Whether outputs were set (the `#[trace]` macro does not overwrite them).
    pub fn has_outputs(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.outputs_set.load(Ordering::Acquire))
    }

    /// Sets an attribute to `json.dumps(value)`.
    pub fn set_attribute<T: Serialize + ?Sized>(&self, key: impl Into<String>, value: &T) {
        if let Some(i) = self.recording() {
            let key = key.into();
            let json = i.encode(&key, value);
            i.set_json(Key::from(key), json);
        }
    }

    /// Sets several attributes.
    pub fn set_attributes<'a, K, T>(&self, attributes: impl IntoIterator<Item = (K, &'a T)>)
    where
        K: Into<String>,
        T: Serialize + ?Sized + 'a,
    {
        for (k, v) in attributes {
            self.set_attribute(k, v);
        }
    }

    /// Sets `mlflow.spanType`.
    pub fn set_span_type(&self, span_type: impl Into<SpanType>) {
        if let Some(i) = self.recording() {
            let t: SpanType = span_type.into();
            i.set_json(
                Key::from_static_str(keys::span::SPAN_TYPE),
                string_attribute_json(t.as_str()),
            );
        }
    }

    /// Sets `mlflow.spanDescription`.
    pub fn set_description(&self, description: &str) {
        if let Some(i) = self.recording() {
            i.set_json(
                Key::from_static_str(keys::span::DESCRIPTION),
                string_attribute_json(description),
            );
        }
    }

    /// Sets `mlflow.spanLogLevel` (otherwise the span type's default is written at end).
    pub fn set_log_level(&self, level: SpanLogLevel) {
        if let Some(i) = self.recording() {
            i.set_json(
                Key::from_static_str(keys::span::LOG_LEVEL),
                level.as_i64().to_string(),
            );
        }
    }

    /// Sets the status. At end, a span whose status is not ERROR becomes OK (as in MLflow).
    pub fn set_status(&self, status: SpanStatus) {
        if let Some(i) = self.recording() {
            i.set_status_raw(status);
        }
    }

    /// Adds an event (attribute values are kept raw, as MLflow does).
    pub fn add_event(&self, event: SpanEvent) {
        if let Some(i) = self.recording() {
            i.add_event_raw(event);
        }
    }

    /// Records an error as MLflow records an exception: an `exception` event with
    /// `exception.type` (the type's short name), `exception.message` (its `Display`) and
    /// `exception.stacktrace` (its `Debug` form and source chain), and status ERROR
    /// `"Type: message"`.
    pub fn record_error<E: std::error::Error + ?Sized>(&self, error: &E) {
        let mut chain = format!("{error:?}");
        let mut source = error.source();
        while let Some(s) = source {
            chain.push_str("\nCaused by: ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        self.record_exception(&short_type_name::<E>(), &error.to_string(), &chain);
    }

    /// Records an exception from its parts (see [`LiveSpan::record_error`]).
    pub fn record_exception(&self, error_type: &str, message: &str, stacktrace: &str) {
        if let Some(i) = self.recording() {
            i.add_event_raw(SpanEvent::exception(
                error_type,
                message,
                stacktrace,
                now_ns(),
            ));
            i.set_status_raw(SpanStatus::error(format!("{error_type}: {message}")));
        }
    }

    /// Adds a link to another span.
    pub fn add_link(&self, link: &Link) {
        if let Some(i) = self.recording()
            && let Ok(trace_id) = link.otel_trace_id()
            && i.admit(
                |st| &mut st.links,
                i.tracer.shared().limits.max_links,
                false,
            )
        {
            let sc = SpanContext::new(
                trace_id.into(),
                link.span_id.into(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            );
            let attributes = link
                .attributes
                .iter()
                .flatten()
                .map(|(k, v)| KeyValue::new(Key::from(k.clone()), json_to_otel_value(v)))
                .collect();
            i.otel_cx.span().add_link(sc, attributes);
        }
    }

    /// Ends the span now. Later calls do nothing.
    pub fn end(&self) {
        if let Some(i) = &self.inner {
            i.end_raw(None);
        }
    }

    /// Ends the span at an explicit time (ns since the Unix epoch).
    pub fn end_at(&self, end_time_ns: u64) {
        if let Some(i) = &self.inner {
            i.end_raw(Some(end_time_ns));
        }
    }

    /// The context that makes this span the current one.
    pub(crate) fn context(&self) -> Context {
        Context::current().with_value(ActiveSpan::Local(self.clone()))
    }

    /// Makes this span the current one until the guard drops (without ending it).
    pub fn enter(&self) -> EnteredSpan {
        EnteredSpan {
            _guard: self.context().attach(),
        }
    }

    /// Makes this span the current one while `future` runs, on whatever thread polls it.
    pub fn instrument<F: Future>(&self, future: F) -> opentelemetry::context::WithContext<F> {
        use opentelemetry::context::FutureExt as _;
        future.with_context(self.context())
    }

    /// Headers carrying this span as the parent of a remote call (`traceparent`).
    pub fn tracing_context_headers(&self) -> std::collections::HashMap<String, String> {
        crate::context::headers_for(self)
    }
}

/// Keeps a span current (see [`LiveSpan::enter`]). Not `Send`: do not hold it across `.await`;
/// use [`LiveSpan::instrument`] for futures.
#[must_use = "the span stops being current when the guard drops"]
pub struct EnteredSpan {
    _guard: ContextGuard,
}

impl fmt::Debug for EnteredSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnteredSpan")
    }
}

/// A span that is current until dropped, and ends when dropped (MLflow's `with start_span()`).
///
/// Derefs to [`LiveSpan`]. Not `Send`: do not hold it across `.await`; for async code use
/// [`StartSpan::start_detached`] with [`LiveSpan::instrument`], or `#[trace]`.
#[must_use = "the span ends when the guard drops"]
pub struct SpanGuard {
    span: LiveSpan,
    _entered: Option<EnteredSpan>,
}

impl fmt::Debug for SpanGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SpanGuard").field(&self.span).finish()
    }
}

impl std::ops::Deref for SpanGuard {
    type Target = LiveSpan;
    fn deref(&self) -> &LiveSpan {
        &self.span
    }
}

impl SpanGuard {
    /// The span, as a clonable handle.
    pub fn span(&self) -> &LiveSpan {
        &self.span
    }
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(i) = self.span.recording()
            && !i.ended.load(Ordering::Acquire)
        {
            i.add_event_raw(SpanEvent::exception(
                "panic",
                "the thread panicked inside the span",
                "",
                now_ns(),
            ));
            i.set_status_raw(SpanStatus::error(
                "panic: the thread panicked inside the span",
            ));
        }
        self.span.end();
    }
}

/// Starts a span named `name`: configure it, then [`StartSpan::start`] (current until dropped)
/// or [`StartSpan::start_detached`] (MLflow's `start_span_no_context`).
///
/// The parent is, in order: [`StartSpan::parent`], the current span, a remote parent continued
/// from `traceparent` headers; otherwise the span is the root of a new trace of the current
/// tracer ([`Tracer::in_scope`], else the global one).
pub fn start_span(name: impl Into<Cow<'static, str>>) -> StartSpan {
    StartSpan {
        name: name.into(),
        span_type: None,
        inputs: None,
        attributes: Vec::new(),
        parent: None,
        tracer: None,
        experiment_id: None,
        start_time_ns: None,
        function_name: None,
        serialization_errors: Vec::new(),
    }
}

/// Options of a span to start (see [`start_span`]).
#[must_use = "call .start() or .start_detached()"]
pub struct StartSpan {
    name: Cow<'static, str>,
    span_type: Option<SpanType>,
    inputs: Option<String>,
    attributes: Vec<(String, String)>,
    parent: Option<LiveSpan>,
    tracer: Option<Tracer>,
    experiment_id: Option<String>,
    start_time_ns: Option<u64>,
    pub(crate) function_name: Option<&'static str>,
    serialization_errors: Vec<String>,
}

impl fmt::Debug for StartSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartSpan")
            .field("name", &self.name)
            .field("span_type", &self.span_type)
            .finish_non_exhaustive()
    }
}

impl StartSpan {
    fn encode<T: Serialize + ?Sized>(&mut self, what: &str, value: &T) -> String {
        match to_attribute_json(value) {
            Ok(json) => json,
            Err(err) => {
                let text = format!("<unserializable {what}: {err}>");
                self.serialization_errors.push(text.clone());
                string_attribute_json(&text)
            }
        }
    }

    /// The span type (default `UNKNOWN`).
    pub fn span_type(mut self, span_type: impl Into<SpanType>) -> Self {
        self.span_type = Some(span_type.into());
        self
    }

    /// The inputs.
    pub fn inputs<T: Serialize + ?Sized>(mut self, inputs: &T) -> Self {
        let json = self.encode("inputs", inputs);
        self.inputs = Some(json);
        self
    }

    /// An attribute, stored as `json.dumps(value)`.
    pub fn attribute<T: Serialize + ?Sized>(mut self, key: impl Into<String>, value: &T) -> Self {
        let key = key.into();
        let json = self.encode(&key, value);
        self.attributes.push((key, json));
        self
    }

    /// An explicit parent (instead of the current span).
    pub fn parent(mut self, parent: &LiveSpan) -> Self {
        self.parent = Some(parent.clone());
        self
    }

    /// The tracer for a root span (instead of the current one).
    pub fn tracer(mut self, tracer: &Tracer) -> Self {
        self.tracer = Some(tracer.clone());
        self
    }

    /// The experiment of a new trace (root spans only; MLflow's `trace_destination`).
    pub fn experiment_id(mut self, experiment_id: impl Into<String>) -> Self {
        self.experiment_id = Some(experiment_id.into());
        self
    }

    /// An explicit start time (ns since the Unix epoch), recorded as
    /// `mlflow.spanStartTimeNs` too.
    pub fn start_time_ns(mut self, start_time_ns: u64) -> Self {
        self.start_time_ns = Some(start_time_ns);
        self
    }

    /// Starts the span and makes it current until the guard drops; the guard ends it.
    pub fn start(self) -> SpanGuard {
        let span = self.start_detached();
        let entered = span.inner.is_some().then(|| span.enter());
        SpanGuard {
            span,
            _entered: entered,
        }
    }

    /// Starts the span without making it current; call [`LiveSpan::end`].
    pub fn start_detached(self) -> LiveSpan {
        let (tracer, parent) = match resolve_parent(self.parent.as_ref(), self.tracer.as_ref()) {
            Some(found) => found,
            None => return LiveSpan::noop(),
        };
        if !tracer.is_enabled() || Context::map_current(Context::is_telemetry_suppressed) {
            return LiveSpan::noop();
        }
        let is_root = matches!(parent, Parent::None);
        if is_root {
            tracer.maybe_run_maintenance();
        }
        let mut builder = opentelemetry::trace::SpanBuilder::from_name(self.name.clone());
        if let Some(ns) = self.start_time_ns {
            builder = builder.with_start_time(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns));
        }
        let parent_cx = match &parent {
            Parent::None => Context::new().with_value(RootStart {
                name: self.name.clone().into_owned(),
                experiment_id: self.experiment_id.clone(),
            }),
            Parent::Local(p) => p.otel_cx.clone(),
            Parent::Remote(cx) => cx.clone(),
        };
        let parent_entry = match &parent {
            Parent::Local(p) => p.entry.as_ref(),
            _ => None,
        };
        let span = crate::buffer::with_handoff(parent_entry, || {
            tracer.otel_tracer().build_with_context(builder, &parent_cx)
        });
        let recording = span.is_recording();
        let sc = span.span_context().clone();
        let trace_id = TraceId::from(sc.trace_id());
        let entry = if !recording {
            None
        } else if let Parent::Local(p) = &parent
            && p.entry.is_some()
        {
            p.entry.clone()
        } else {
            tracer.shared().buffer.get(trace_id)
        };
        let mut state = LiveState::default();
        if recording {
            let shared = tracer.shared();
            for e in &self.serialization_errors {
                shared.stats.serialization_error("a span value", e);
            }
            let max_user = shared.limits.max_attributes;
            let mut dropped = 0;
            let mut set = |key: Key, json: String| {
                if !state.set(key, json, max_user) {
                    dropped += 1;
                }
            };
            if let Some(t) = &self.span_type {
                set(
                    Key::from_static_str(keys::span::SPAN_TYPE),
                    string_attribute_json(t.as_str()),
                );
            }
            if let Some(f) = self.function_name {
                set(
                    Key::from_static_str(keys::span::FUNCTION_NAME),
                    string_attribute_json(f),
                );
            }
            if let Some(inputs) = self.inputs {
                set(Key::from_static_str(keys::span::INPUTS), inputs);
            }
            for (k, v) in self.attributes {
                set(Key::from(k), v);
            }
            if is_root && let Some(id) = &self.experiment_id {
                set(
                    Key::from_static_str(keys::span::EXPERIMENT_ID),
                    string_attribute_json(id),
                );
            }
            if let Some(ns) = self.start_time_ns {
                set(
                    Key::from_static_str(keys::span::START_TIME_NS),
                    ns.to_string(),
                );
            }
            if dropped > 0 {
                shared.stats.attributes_dropped(dropped);
            }
        }
        let inner = Arc::new(LiveSpanInner {
            tracer,
            otel_cx: Context::new().with_span(span),
            entry,
            span_id: SpanId::from(sc.span_id()),
            trace_id,
            recording,
            ended: AtomicBool::new(false),
            outputs_set: AtomicBool::new(false),
            state: std::sync::Mutex::new(state),
        });
        if is_root && let Some(entry) = &inner.entry {
            entry.lock().root_span = Some(Arc::downgrade(&inner));
        }
        LiveSpan { inner: Some(inner) }
    }
}

pub(crate) enum Parent {
    None,
    Local(Arc<LiveSpanInner>),
    Remote(Context),
}

/// Finds the tracer and parent of a new span; `None` means "record nothing".
fn resolve_parent(
    explicit: Option<&LiveSpan>,
    tracer: Option<&Tracer>,
) -> Option<(Tracer, Parent)> {
    if let Some(p) = explicit {
        let inner = p.inner.clone()?;
        return Some((inner.tracer.clone(), Parent::Local(inner)));
    }
    let (active, scoped) = Context::map_current(|cx| {
        (
            cx.get::<ActiveSpan>().cloned(),
            cx.get::<ScopedTracer>().map(|s| s.0.clone()),
        )
    });
    match active {
        Some(ActiveSpan::Local(active)) => {
            let inner = active.inner?; // children of a no-op span are no-ops
            // An ended parent still is one while its trace is in progress (a task spawned with
            // `in_current_span` may outlive its parent, as in MLflow). Once the trace is gone
            // (the leaked guard of a halted or evicted trace, say), new spans start a new trace.
            let trace_gone = inner.ended.load(Ordering::Acquire)
                && inner
                    .entry
                    .as_ref()
                    .is_some_and(|e| e.is_evicted() || e.lock().popped);
            if !trace_gone {
                return Some((inner.tracer.clone(), Parent::Local(inner)));
            }
        }
        Some(ActiveSpan::Remote(remote)) => {
            return Some((remote.tracer, Parent::Remote(remote.otel_cx)));
        }
        None => {}
    }
    let tracer = tracer.cloned().or(scoped).or_else(global_tracer)?;
    Some((tracer, Parent::None))
}
