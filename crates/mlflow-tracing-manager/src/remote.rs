//! Continuing a trace from another process: W3C `traceparent` headers in, a remote parent for
//! the spans of the request out.

use std::collections::HashMap;
use std::fmt;

use mlflow_tracing_entities::{MlflowTraceId, TraceId};
use opentelemetry::{Context, ContextGuard};

use crate::context::current_tracer;
use crate::error::SpanApiError;
use crate::instrument::Instrumented;
use crate::live::ActiveSpan;
use crate::parent::RemoteParent;
use crate::tracer::Tracer;

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
            .field("trace_id", &self.mlflow_trace_id())
            .finish_non_exhaustive()
    }
}

impl RemoteTrace {
    /// The MLflow trace id (`tr-<caller's trace id>`).
    pub fn mlflow_trace_id(&self) -> String {
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
    pub fn scope<F: Future>(&self, future: F) -> Instrumented<F> {
        Instrumented::new(future, self.context())
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
    let Some(remote) = crate::traceparent::parse(raw, map.get("tracestate").map(String::as_str))
    else {
        return Err(SpanApiError::InvalidTraceparent(raw.clone()));
    };
    let trace_id = remote.trace_id;
    let placeholder = if remote.sampled && tracer.is_enabled() {
        tracer.manager().start_remote_trace(trace_id)
    } else {
        None
    };
    Ok(RemoteTrace {
        parent: RemoteParent::new(remote, tracer, placeholder),
        trace_id,
    })
}
