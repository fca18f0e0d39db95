//! The current span across threads and `.await`, trace updates, and W3C `traceparent`
//! propagation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use mlflow_tracing_entities::{MlflowTraceId, TraceId, TraceState, keys};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, ContextGuard};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::buffer::TraceEntry;
use crate::error::SpanApiError;
use crate::global::global_tracer;
use crate::live::LiveSpan;
use crate::tracer::Tracer;

/// Context value: the parent of new spans, the current span or a remote one. One key, so the
/// most recent attach wins (continuing a remote trace inside a local span makes the remote span
/// the parent, as MLflow's context attach does).
#[derive(Clone)]
pub(crate) enum ActiveSpan {
    Local(LiveSpan),
    Remote(RemoteParent),
}

/// Context value: the tracer for root spans started in this scope.
#[derive(Clone)]
pub(crate) struct ScopedTracer(pub(crate) Tracer);

/// A parent span in another process (from `traceparent`). Every context holding it keeps the
/// placeholder trace open.
#[derive(Clone)]
pub(crate) struct RemoteParent {
    pub(crate) otel_cx: Context,
    pub(crate) tracer: Tracer,
    /// Held, never read: keeps the placeholder open.
    _scope: Arc<RemoteScope>,
}

/// One continuation of a remote trace; the placeholder ends when the last one drops.
struct RemoteScope {
    tracer: Tracer,
    placeholder: Option<Arc<TraceEntry>>,
}

impl Drop for RemoteScope {
    fn drop(&mut self) {
        if let Some(entry) = self.placeholder.take()
            && entry
                .scopes
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
                == 1
            && let Some(completed) = entry.end_scope()
        {
            self.tracer.shared().complete(&entry, completed);
        }
    }
}

/// The current span (MLflow's `get_current_active_span`); `None` outside any span.
pub fn current_span() -> Option<LiveSpan> {
    Context::map_current(|cx| match cx.get::<ActiveSpan>() {
        Some(ActiveSpan::Local(span)) => Some(span.clone()),
        _ => None,
    })
    .filter(|s| s.inner.is_some() && !s.is_ended())
}

/// The MLflow trace id of the current span (MLflow's `get_active_trace_id`).
pub fn active_trace_id() -> Option<String> {
    current_span().and_then(|s| s.trace_id())
}

fn current_tracer() -> Option<Tracer> {
    Context::map_current(|cx| cx.get::<ScopedTracer>().map(|s| s.0.clone())).or_else(global_tracer)
}

/// The trace id of the last trace whose root span ended, for the current tracer (MLflow's
/// `get_last_active_trace_id`).
pub fn last_active_trace_id() -> Option<String> {
    current_tracer().and_then(|t| t.last_active_trace_id())
}

/// Changes to the current trace's info (MLflow's `update_current_trace`). Applied in memory and
/// sent when the trace ends.
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct TraceUpdate {
    tags: Vec<(String, String)>,
    metadata: Vec<(String, String)>,
    client_request_id: Option<String>,
    request_preview: Option<String>,
    response_preview: Option<String>,
    state: Option<TraceState>,
}

impl TraceUpdate {
    /// An empty update.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }
    /// Sets a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }
    /// Sets the client request id.
    pub fn client_request_id(mut self, id: impl Into<String>) -> Self {
        self.client_request_id = Some(id.into());
        self
    }
    /// Overrides the request preview (ignored when empty, as in MLflow).
    pub fn request_preview(mut self, preview: impl Into<String>) -> Self {
        self.request_preview = Some(preview.into());
        self
    }
    /// Overrides the response preview (ignored when empty).
    pub fn response_preview(mut self, preview: impl Into<String>) -> Self {
        self.response_preview = Some(preview.into());
        self
    }
    /// Sets the final state; only `OK` and `ERROR` are accepted.
    pub fn state(mut self, state: TraceState) -> Self {
        self.state = Some(state);
        self
    }
    /// The application's end user: metadata `mlflow.trace.user`.
    pub fn user(self, user: impl Into<String>) -> Self {
        self.metadata(keys::metadata::TRACE_USER, user)
    }
    /// The session: metadata `mlflow.trace.session`.
    pub fn session(self, session_id: impl Into<String>) -> Self {
        self.metadata(keys::metadata::TRACE_SESSION, session_id)
    }
    /// The model: metadata `mlflow.modelId`.
    pub fn model_id(self, model_id: impl Into<String>) -> Self {
        self.metadata(keys::metadata::MODEL_ID, model_id)
    }

    fn apply(self, entry: &TraceEntry) -> Result<(), SpanApiError> {
        if let Some(state) = self.state
            && !matches!(state, TraceState::Ok | TraceState::Error)
        {
            return Err(SpanApiError::InvalidState(state.as_str().to_owned()));
        }
        let mut st = entry.lock();
        if st.popped {
            return Err(SpanApiError::TraceNotInProgress(
                entry.mlflow_trace_id.clone(),
            ));
        }
        let info = &mut st.info;
        info.tags.extend(self.tags);
        info.trace_metadata.extend(self.metadata);
        if let Some(id) = self.client_request_id {
            info.client_request_id = Some(id);
        }
        if let Some(p) = self.request_preview.filter(|p| !p.is_empty()) {
            info.request_preview = Some(p);
        }
        if let Some(p) = self.response_preview.filter(|p| !p.is_empty()) {
            info.response_preview = Some(p);
        }
        if let Some(state) = self.state {
            info.state = state;
        }
        Ok(())
    }
}

/// Applies `update` to the trace of the current span.
///
/// # Errors
/// [`SpanApiError::NoActiveSpan`] outside a span, [`SpanApiError::InvalidState`] for a state
/// other than OK/ERROR, [`SpanApiError::TraceNotInProgress`] once the trace has been exported.
/// Inside a span that does not record (sampled out, disabled) it does nothing and succeeds.
pub fn update_current_trace(update: TraceUpdate) -> Result<(), SpanApiError> {
    let span = current_span().ok_or(SpanApiError::NoActiveSpan)?;
    match span.inner.as_ref().and_then(|i| i.entry.as_ref()) {
        Some(entry) => update.apply(entry),
        None => Ok(()),
    }
}

/// Extension for futures: carry the current MLflow span into a spawned task.
///
/// ```
/// use mlflow_tracing_manager::FutureExt as _;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// tokio::spawn(async { /* spans here are children of the caller's span */ }.in_current_span());
/// # }
/// ```
pub trait FutureExt: Future + Sized {
    /// Runs this future with the caller's current span (and tracer) as its context.
    fn in_current_span(self) -> opentelemetry::context::WithContext<Self> {
        opentelemetry::context::FutureExt::with_context(self, Context::current())
    }

    /// Runs this future with `request` added to the context it is polled in: root spans
    /// started in it belong to that model-serving request. Wrap the traced future itself
    /// (`handler().in_serving_request(&r)`, then `.in_current_span()` or `Tracer::scope`
    /// outside it if needed): those two run their future in the context they captured, which
    /// does not hold a request added outside them.
    fn in_serving_request(
        self,
        request: &crate::ServingRequest,
    ) -> crate::destination::InServingRequest<Self> {
        crate::destination::InServingRequest::new(self, request.clone())
    }
}

impl<F: Future> FutureExt for F {}

pub(crate) fn headers_for(span: &LiveSpan) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    if let Some(inner) = &span.inner {
        TraceContextPropagator::new().inject_context(&inner.otel_cx, &mut headers);
    }
    headers
}

/// W3C trace-context headers (`traceparent`) for an outgoing HTTP request, from the current span
/// (MLflow's `get_tracing_context_headers_for_http_request`). Empty outside a span (MLflow warns).
pub fn tracing_context_headers() -> HashMap<String, String> {
    match current_span() {
        Some(span) => headers_for(&span),
        None => {
            tracing::warn!("no active span: no tracing context headers to send");
            HashMap::new()
        }
    }
}

/// A trace continued from a remote caller's `traceparent` (MLflow's
/// `set_tracing_context_from_http_request_headers`).
///
/// While it is attached, spans are children of the remote span and carry the caller's trace id.
/// Unless that trace is already in progress here, a placeholder trace collects them (shared by
/// concurrent requests of the same trace); when the `RemoteTrace` and every context made from
/// it (guards, scoped futures, tasks spawned with `in_current_span`) are gone, the placeholder is
/// exported as a remote [`TraceItem`](crate::TraceItem), and its spans as span items, so a
/// span-logging exporter can stitch them into the caller's trace.
pub struct RemoteTrace {
    parent: RemoteParent,
    trace_id: TraceId,
}

impl fmt::Debug for RemoteTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTrace")
            .field("trace_id", &self.trace_id())
            .finish_non_exhaustive()
    }
}

impl RemoteTrace {
    /// The MLflow trace id (`tr-<caller's trace id>`).
    pub fn trace_id(&self) -> String {
        MlflowTraceId::v3(self.trace_id).to_string()
    }

    fn context(&self) -> Context {
        Context::current().with_value(ActiveSpan::Remote(self.parent.clone()))
    }

    /// Makes the remote span the parent of new spans on this thread until the guard drops.
    pub fn attach(&self) -> RemoteTraceGuard {
        RemoteTraceGuard {
            _guard: self.context().attach(),
        }
    }

    /// Runs `future` with the remote span as the parent of its spans.
    pub fn scope<F: Future>(&self, future: F) -> opentelemetry::context::WithContext<F> {
        opentelemetry::context::FutureExt::with_context(future, self.context())
    }
}

/// Keeps a remote parent attached (see [`RemoteTrace::attach`]).
#[must_use = "the remote parent is detached when the guard drops"]
pub struct RemoteTraceGuard {
    _guard: ContextGuard,
}

impl fmt::Debug for RemoteTraceGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RemoteTraceGuard")
    }
}

/// Continues a trace from incoming request headers (`traceparent`, any letter case, parsed as
/// the W3C Trace Context specification says; `tracestate` is kept when valid) with the current
/// tracer (scoped, else global).
///
/// # Errors
/// [`SpanApiError::MissingTraceparent`] without the header, [`SpanApiError::InvalidTraceparent`]
/// when it does not parse, [`SpanApiError::NoActiveSpan`] when no tracer is installed.
pub fn continue_trace<I, K, V>(headers: I) -> Result<RemoteTrace, SpanApiError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let tracer = current_tracer().ok_or(SpanApiError::NoActiveSpan)?;
    continue_trace_with(&tracer, headers)
}

/// [`continue_trace`] with an explicit tracer.
///
/// # Errors
/// As for [`continue_trace`].
pub fn continue_trace_with<I, K, V>(
    tracer: &Tracer,
    headers: I,
) -> Result<RemoteTrace, SpanApiError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let map: HashMap<String, String> = headers
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_owned()))
        .collect();
    let Some(raw) = map.get("traceparent") else {
        return Err(SpanApiError::MissingTraceparent);
    };
    let Some(sc) = crate::traceparent::parse(raw, map.get("tracestate").map(String::as_str)) else {
        return Err(SpanApiError::InvalidTraceparent(raw.clone()));
    };
    let trace_id = TraceId::from(sc.trace_id());
    let placeholder = if sc.is_sampled() && tracer.is_enabled() {
        tracer.shared().start_remote_trace(trace_id)
    } else {
        None
    };
    Ok(RemoteTrace {
        parent: RemoteParent {
            otel_cx: Context::new().with_remote_span_context(sc),
            tracer: tracer.clone(),
            _scope: Arc::new(RemoteScope {
                tracer: tracer.clone(),
                placeholder,
            }),
        },
        trace_id,
    })
}
