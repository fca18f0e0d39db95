//! The current span across threads and `.await`, trace updates, and outgoing `traceparent`
//! headers.

use std::collections::HashMap;

use mlflow_tracing_entities::{TraceState, keys};
use opentelemetry::Context;

use crate::error::SpanApiError;
use crate::global::global_tracer;
use crate::in_progress::TraceEntry;
use crate::instrument::Instrumented;
use crate::live::{ActiveSpan, LiveSpan};
use crate::tracer::{ScopedTracer, Tracer};

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
    current_span().and_then(|s| s.mlflow_trace_id())
}

/// The tracer a span started here would use: the scoped one ([`Tracer::in_scope`],
/// [`Tracer::scope`]), else the global one.
pub fn current_tracer() -> Option<Tracer> {
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
            return Err(SpanApiError::TraceNotInProgress(String::from(
                entry.mlflow_trace_id.clone(),
            )));
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
    fn in_current_span(self) -> Instrumented<Self> {
        Instrumented::new(self, Context::current())
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

/// W3C trace-context headers (`traceparent`) for an outgoing HTTP request, from the current span
/// (MLflow's `get_tracing_context_headers_for_http_request`). Empty outside a span (MLflow warns).
pub fn tracing_context_headers() -> HashMap<String, String> {
    match current_span() {
        Some(span) => span.tracing_context_headers(),
        None => {
            crate::notice::visible(|| {
                tracing::warn!("no active span: no tracing context headers to send")
            });
            HashMap::new()
        }
    }
}
