//! Live spans: MLflow's `LiveSpan` setters, ending a span, making it current. A live span keeps
//! its own state (attributes as MLflow's JSON text, events, links, status) and, when it ends,
//! hands the finished MLflow `Span` to the trace manager.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use compact_str::CompactString;
use mlflow_tracing_entities::json::{AttributeJson, string_attribute_json, to_attribute_json};
use mlflow_tracing_entities::{
    Link, MlflowTraceId, SpanEvent, SpanId, SpanLogLevel, SpanStatus, SpanStatusCode, SpanType,
    TraceId, keys,
};
use opentelemetry::{Context, ContextGuard};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::SpanApiError;
use crate::finish::{Ended, FinishHook, RareParts, RawSpan};
use crate::in_progress::{HaltRoot, TraceEntry};
use crate::instrument::Instrumented;
use crate::manager::timeout_event;
use crate::otel_values::normalize_raw_value;
use crate::parent::RemoteParent;
use crate::tracer::Tracer;
use crate::util::{lock, now_ns};

/// An error's `Debug` form followed by its sources (`Caused by: …`): the exception's stack
/// trace.
pub(crate) fn error_chain<E: std::error::Error + ?Sized>(error: &E) -> String {
    let mut chain = format!("{error:?}");
    let mut source = error.source();
    while let Some(s) = source {
        chain.push_str("\nCaused by: ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    chain
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

/// Context value: the parent of new spans, the current span or a remote one. One key, so the
/// most recent attach wins (continuing a remote trace inside a local span makes the remote span
/// the parent, as MLflow's context attach does).
#[derive(Clone)]
pub(crate) enum ActiveSpan {
    Local(LiveSpan),
    Remote(RemoteParent),
}

pub(crate) struct LiveSpanInner {
    pub(crate) tracer: Tracer,
    /// The trace it belongs to, when the manager tracks it.
    pub(crate) entry: Option<Arc<TraceEntry>>,
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_id: Option<SpanId>,
    /// Sampled: records what is set and is exported. Unsampled spans carry the decision to
    /// their children and to `traceparent`.
    pub(crate) recording: bool,
    /// W3C `tracestate` inherited from a remote parent.
    pub(crate) trace_state: Option<Arc<str>>,
    pub(crate) name: Cow<'static, str>,
    pub(crate) start_time_ns: u64,
    pub(crate) ended: AtomicBool,
    pub(crate) outputs_set: AtomicBool,
    /// What becomes the finished span.
    pub(crate) state: Mutex<LiveState>,
}

/// What a live span collects until it ends.
#[derive(Default)]
pub(crate) struct LiveState {
    /// The status to apply at end (MLflow's rules, see `set_status_raw`).
    status: Option<SpanStatus>,
    /// Attribute values as MLflow stores them (JSON text), in the order they were set; setting
    /// a key again moves it to the end, as in the OpenTelemetry attribute dict MLflow uses.
    /// Values are compact strings: short ones (a number, a model name, a span type) are kept
    /// inline, without an allocation of their own.
    attributes: Vec<(Cow<'static, str>, CompactString)>,
    /// Distinct user (non-MLflow) attribute keys in `attributes`.
    user_attributes: u32,
    events: Vec<SpanEvent>,
    /// Events counted against the limit (`exception` events are not).
    counted_events: u32,
    links: Vec<Link>,
    /// A new name (`update_name`).
    name: Option<String>,
    /// Work to do on the span when its trace is finalized ([`LiveSpan::finish_with`]).
    finish_hook: Option<FinishHook>,
}

impl LiveState {
    /// The state a recording span starts with: its span type first (the trace's request id is
    /// written before it when the span is finalized), as MLflow's `LiveSpan` sets them when it
    /// is made; room for `more` attributes after it (a span that sets more grows).
    pub(crate) fn starting(span_type_json: CompactString, more: usize) -> Self {
        let mut attributes = Vec::with_capacity(more.saturating_add(1));
        attributes.push((Cow::Borrowed(keys::span::SPAN_TYPE), span_type_json));
        LiveState {
            attributes,
            ..LiveState::default()
        }
    }

    /// Sets `key` (moved to the end if it was set before); false when it is a new user key past
    /// `max_user` (dropped).
    pub(crate) fn set(
        &mut self,
        key: Cow<'static, str>,
        json: CompactString,
        max_user: u32,
    ) -> bool {
        if let Some(i) = self.attributes.iter().position(|(k, _)| *k == key) {
            self.attributes.remove(i);
            self.attributes.push((key, json));
            return true;
        }
        if !crate::limits::is_reserved(&key) {
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
                self.tracer.manager().stats.serialization_error(what, &err);
                string_attribute_json(&format!("<unserializable {what}: {err}>"))
            }
        }
    }

    pub(crate) fn set_json(&self, key: Cow<'static, str>, json: impl Into<CompactString>) {
        if !self.recording {
            return;
        }
        let manager = self.tracer.manager();
        let kept = lock(&self.state).set(key, json.into(), manager.limits.max_attributes);
        if !kept {
            manager.stats.attributes_dropped(1);
        }
    }

    pub(crate) fn add_event_raw(&self, event: SpanEvent) {
        self.add_event_limited(event, true);
    }

    /// Adds an event; `limited`: it counts against the event limit (exception events never do).
    pub(crate) fn add_event_limited(&self, mut event: SpanEvent, limited: bool) {
        if !self.recording {
            return;
        }
        let manager = self.tracer.manager();
        // Attribute values as they look once exported (MLflow keeps them raw).
        let attributes = std::mem::take(&mut event.attributes);
        event.attributes = attributes
            .into_iter()
            .map(|(k, v)| (k, normalize_raw_value(v)))
            .collect();
        let mut st = lock(&self.state);
        // Exception events carry the error: never dropped, not counted.
        if limited && event.name != SpanEvent::EXCEPTION {
            if st.counted_events >= manager.limits.max_events {
                drop(st);
                manager.stats.events_dropped(1);
                return;
            }
            st.counted_events += 1;
        }
        st.events.push(event);
    }

    /// How many more (non-exception) events the span keeps.
    pub(crate) fn event_room(&self) -> usize {
        let limit = self.tracer.manager().limits.max_events;
        limit.saturating_sub(lock(&self.state).counted_events) as usize
    }

    fn add_link_raw(&self, trace_id: TraceId, link: &Link) {
        let manager = self.tracer.manager();
        let attributes: Map<String, Value> = link
            .attributes
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), normalize_raw_value(v.clone())))
            .collect();
        let link = Link {
            trace_id: String::from(MlflowTraceId::v3(trace_id)),
            span_id: link.span_id,
            attributes: (!attributes.is_empty()).then_some(attributes),
        };
        let mut st = lock(&self.state);
        let max = usize::try_from(manager.limits.max_links).unwrap_or(usize::MAX);
        if st.links.len() >= max {
            drop(st);
            manager.stats.links_dropped(1);
            return;
        }
        st.links.push(link);
    }

    pub(crate) fn set_status_raw(&self, status: SpanStatus) {
        if !self.recording {
            return;
        }
        // MLflow keeps the last status set, except that OK is final.
        let mut st = lock(&self.state);
        if st
            .status
            .as_ref()
            .is_some_and(|s| s.code == SpanStatusCode::Ok)
        {
            return;
        }
        st.status = Some(status);
    }

    /// Ends the span; false if it had already been ended (by another thread, say).
    pub(crate) fn end_raw(&self, end_time_ns: Option<u64>) -> bool {
        if self.ended.swap(true, Ordering::AcqRel) {
            return false;
        }
        if self.recording {
            let end = end_time_ns.unwrap_or_else(now_ns);
            let state = std::mem::take(&mut *lock(&self.state));
            let span = self.finished(state, end);
            self.tracer
                .manager()
                .end_span(self.entry.as_ref(), Ended::Raw(span));
        }
        true
    }

    /// The span as ended, converted to an MLflow span when its trace is finalized.
    fn finished(&self, state: LiveState, end_time_ns: u64) -> RawSpan {
        let error = match state.status {
            Some(s) if s.code == SpanStatusCode::Error => Some(s.message),
            _ => None,
        };
        RawSpan {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_id: self.parent_id,
            name: state.name.map_or_else(|| self.name.clone(), Cow::Owned),
            start_time_ns: self.start_time_ns,
            end_time_ns,
            rare: RareParts::boxed(error, state.events, state.links),
            attributes: state.attributes,
            finish_hook: state.finish_hook,
        }
    }
}

impl HaltRoot for LiveSpanInner {
    fn halt(&self, message: String) {
        self.add_event_raw(timeout_event(message));
        self.set_status_raw(SpanStatus::error(""));
        self.end_raw(None);
    }
}

impl Drop for LiveSpanInner {
    fn drop(&mut self) {
        // A span dropped without `end` ends now, with what was set.
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
                .field("trace_id", &self.mlflow_trace_id())
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

    /// The MLflow trace id (`tr-…`, or `trace:/…` for Unity Catalog); `None` for spans that do
    /// not record.
    pub fn mlflow_trace_id(&self) -> Option<String> {
        self.inner
            .as_ref()
            .and_then(|i| i.entry.as_ref())
            .map(|e| String::from(e.mlflow_trace_id.clone()))
    }

    /// The trace id (also set for sampled-out spans, which carry the decision), as
    /// [`Span::trace_id`](mlflow_tracing_entities::Span::trace_id).
    pub fn trace_id(&self) -> Option<TraceId> {
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

    pub(crate) fn recording(&self) -> Option<&LiveSpanInner> {
        self.inner.as_deref().filter(|i| i.recording)
    }

    /// Sets `mlflow.spanInputs`.
    pub fn set_inputs<T: Serialize + ?Sized>(&self, inputs: &T) {
        if let Some(i) = self.recording() {
            let json = i.encode("inputs", inputs);
            i.set_json(Cow::Borrowed(keys::span::INPUTS), json);
        }
    }

    /// Sets `mlflow.spanOutputs`.
    pub fn set_outputs<T: Serialize + ?Sized>(&self, outputs: &T) {
        if let Some(i) = self.recording() {
            let json = i.encode("outputs", outputs);
            i.set_json(Cow::Borrowed(keys::span::OUTPUTS), json);
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
            i.set_json(Cow::Owned(key), json);
        }
    }

    /// Sets an attribute to JSON text as it is (MLflow stores attribute values as JSON text):
    /// for values that are already JSON, such as OpenTelemetry GenAI message lists, kept byte for
    /// byte.
    ///
    /// # Errors
    /// [`SpanApiError::InvalidJson`] when `json` is not JSON; nothing is set.
    pub fn set_attribute_json(
        &self,
        key: impl Into<String>,
        json: impl Into<String>,
    ) -> Result<(), SpanApiError> {
        let Some(i) = self.recording() else {
            return Ok(());
        };
        let key = key.into();
        match AttributeJson::parse(json.into()) {
            Ok(json) => {
                i.set_json(Cow::Owned(key), json);
                Ok(())
            }
            Err((_, e)) => Err(SpanApiError::InvalidJson {
                key,
                reason: e.to_string(),
            }),
        }
    }

    /// Sets attributes to values already in MLflow's stored form, in one step (what a bridge
    /// from another instrumentation API, such as the `tracing` layer, records at a span's end).
    pub fn set_attribute_values<K: Into<Cow<'static, str>>>(
        &self,
        values: impl IntoIterator<Item = (K, AttributeJson)>,
    ) {
        let Some(i) = self.recording() else {
            return;
        };
        let manager = i.tracer.manager();
        let mut dropped = 0;
        let values = values.into_iter();
        {
            let mut state = lock(&i.state);
            state.attributes.reserve(values.size_hint().0);
            for (key, json) in values {
                if !state.set(
                    key.into(),
                    CompactString::from(json),
                    manager.limits.max_attributes,
                ) {
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            manager.stats.attributes_dropped(dropped);
        }
    }

    /// Renames the span (OpenTelemetry's `update_name`).
    pub fn update_name(&self, name: impl Into<String>) {
        if let Some(i) = self.recording() {
            lock(&i.state).name = Some(name.into());
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

    /// Runs `hook` on the span where it is finished, before MLflow's end rules and the span
    /// processors: when its trace is finalized (on the export worker when the tracer exports
    /// through one, as `init` sets it up), or as it ends when the tracer has span processors
    /// or an exporter that takes each span (Unity Catalog). For derived attributes the thread
    /// that ends the span need not wait for (the `tracing` layer's GenAI translation). A span
    /// has one hook: the last one given runs (the layer sets its own on the spans it records).
    /// A panic inside is caught and counted as a span processor's is.
    pub fn finish_with(&self, hook: FinishHook) {
        if let Some(i) = self.recording() {
            lock(&i.state).finish_hook = Some(hook);
        }
    }

    /// Sets `mlflow.spanType`.
    pub fn set_span_type(&self, span_type: impl Into<SpanType>) {
        if let Some(i) = self.recording() {
            let t: SpanType = span_type.into();
            i.set_json(Cow::Borrowed(keys::span::SPAN_TYPE), t.attribute_json());
        }
    }

    /// Sets `mlflow.spanDescription`.
    pub fn set_description(&self, description: &str) {
        if let Some(i) = self.recording() {
            i.set_json(
                Cow::Borrowed(keys::span::DESCRIPTION),
                string_attribute_json(description),
            );
        }
    }

    /// Sets `mlflow.spanLogLevel` (otherwise the span type's default is written at end).
    pub fn set_log_level(&self, level: SpanLogLevel) {
        if let Some(i) = self.recording() {
            i.set_json(
                Cow::Borrowed(keys::span::LOG_LEVEL),
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
        self.record_exception(
            &short_type_name::<E>(),
            &error.to_string(),
            &error_chain(error),
        );
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

    /// Adds a link to another span (ignored when its trace id does not parse).
    pub fn add_link(&self, link: &Link) {
        if let Some(i) = self.recording()
            && let Ok(trace_id) = link.otel_trace_id()
        {
            i.add_link_raw(trace_id, link);
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
    pub fn instrument<F: Future>(&self, future: F) -> Instrumented<F> {
        Instrumented::new(future, self.context())
    }

    /// Headers carrying this span as the parent of a remote call (`traceparent`, and
    /// `tracestate` when the trace came with one); empty for a no-op span.
    pub fn tracing_context_headers(&self) -> std::collections::HashMap<String, String> {
        let mut headers = std::collections::HashMap::new();
        if let Some(i) = &self.inner {
            headers.insert(
                "traceparent".to_owned(),
                crate::traceparent::format(i.trace_id, i.span_id, i.recording),
            );
            if let Some(state) = i.trace_state.as_deref().filter(|s| !s.is_empty()) {
                headers.insert("tracestate".to_owned(), state.to_owned());
            }
        }
        headers
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
/// [`StartSpan::start_detached`](crate::StartSpan::start_detached) with
/// [`LiveSpan::instrument`], or `#[trace]`.
#[must_use = "the span ends when the guard drops"]
pub struct SpanGuard {
    pub(crate) span: LiveSpan,
    pub(crate) _entered: Option<EnteredSpan>,
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
