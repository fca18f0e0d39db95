//! [`TraceContext`]: metadata, tags, user, session and an on/off switch for every trace started
//! in a scope (MLflow's `mlflow.tracing.context`), for sync code (a guard) and async code (a
//! future adapter). It lives in the OpenTelemetry context, so it follows `in_current_span`
//! into spawned tasks.

use std::fmt;
use std::pin::Pin;
use std::task::Poll;

use mlflow_tracing_entities::{TraceInfo, keys};
use opentelemetry::{Context, ContextGuard};

/// What every trace *started* in a scope gets (MLflow's `mlflow.tracing.context`): metadata
/// and tags (the trace name tag still wins), the end user and session (metadata
/// `mlflow.trace.user` / `mlflow.trace.session`), and `enabled(false)` to record nothing in
/// the scope. Scopes nest: the inner one's values win, keys it does not set come from the
/// outer one, and an unset `enabled` is inherited.
///
/// ```
/// use mlflow_tracing_manager::{TraceContext, start_span, testing::Capture};
///
/// let capture = Capture::new();
/// capture.run(|| {
///     let _scope = TraceContext::new().session_id("s-1").tag("tenant", "acme").enter();
///     drop(start_span("handle").start());
///     let _off = TraceContext::new().enabled(false).enter();
///     drop(start_span("not recorded").start());
/// });
/// let traces = capture.traces();
/// assert_eq!(traces.len(), 1);
/// assert_eq!(traces[0].info.trace_metadata["mlflow.trace.session"], "s-1");
/// assert_eq!(traces[0].info.tags["tenant"], "acme");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct TraceContext {
    metadata: Vec<(String, String)>,
    tags: Vec<(String, String)>,
    enabled: Option<bool>,
}

impl TraceContext {
    /// Nothing set (entering it changes nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry (trace `request_metadata`, fixed once the trace starts).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        set(&mut self.metadata, key.into(), value.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        set(&mut self.tags, key.into(), value.into());
        self
    }

    /// The session: metadata `mlflow.trace.session`.
    pub fn session_id(self, session_id: impl Into<String>) -> Self {
        self.metadata(keys::metadata::TRACE_SESSION, session_id)
    }

    /// The application's end user: metadata `mlflow.trace.user`.
    pub fn user(self, user: impl Into<String>) -> Self {
        self.metadata(keys::metadata::TRACE_USER, user)
    }

    /// Whether spans are recorded in the scope (`false`: every span started in it through this
    /// SDK (`start_span`, `#[trace]`, the `tracing` layer) is a no-op, whatever the tracer's
    /// own setting; spans started with OpenTelemetry's API are not affected, as in MLflow;
    /// unset: inherited).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = Some(enabled);
        self
    }

    /// The merged scope current on this thread (or in this task), if any.
    pub fn current() -> Option<TraceContext> {
        Context::map_current(|cx| cx.get::<TraceContext>().cloned())
    }

    /// This scope merged into the current one (its values win).
    fn merged(&self) -> TraceContext {
        let mut merged = TraceContext::current().unwrap_or_default();
        for (k, v) in &self.metadata {
            set(&mut merged.metadata, k.clone(), v.clone());
        }
        for (k, v) in &self.tags {
            set(&mut merged.tags, k.clone(), v.clone());
        }
        if self.enabled.is_some() {
            merged.enabled = self.enabled;
        }
        merged
    }

    /// Makes the scope current (merged into the current one) until the guard drops.
    pub fn enter(&self) -> TraceContextGuard {
        TraceContextGuard {
            _guard: Context::current().with_value(self.merged()).attach(),
        }
    }

    /// Runs `f` in the scope.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.enter();
        f()
    }

    /// Runs `future` in the scope, merged into whatever scope is current each time it is
    /// polled. Spawned tasks keep the scope with `in_current_span`.
    pub fn scope<F: Future>(&self, future: F) -> WithTraceContext<F> {
        WithTraceContext {
            inner: future,
            context: self.clone(),
        }
    }

    /// Whether the current scope turned recording off.
    pub(crate) fn disabled_here() -> bool {
        Context::map_current(|cx| cx.get::<TraceContext>().map(|t| t.enabled == Some(false)))
            .unwrap_or(false)
    }

    /// Applies the current scope to a trace starting now: its metadata over the trace's (as
    /// MLflow's processor lets the caller's values win), its tags except the trace name.
    /// Its metadata and tags into a starting trace's `info`; `names_traces`: the destination
    /// names the trace (`mlflow.traceName` from the root), which the scope's tag does not
    /// replace.
    pub(crate) fn apply_current(info: &mut TraceInfo, names_traces: bool) {
        let Some(scope) = TraceContext::current() else {
            return;
        };
        for (k, v) in scope.metadata {
            info.trace_metadata.insert(k, v);
        }
        for (k, v) in scope.tags {
            if k != keys::tag::TRACE_NAME || !(names_traces || info.tags.contains_key(&k)) {
                info.tags.insert(k, v);
            }
        }
    }
}

fn set(list: &mut Vec<(String, String)>, key: String, value: String) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => *v = value,
        None => list.push((key, value)),
    }
}

/// Keeps a [`TraceContext`] current (see [`TraceContext::enter`]).
#[must_use = "the scope ends when the guard drops"]
pub struct TraceContextGuard {
    _guard: ContextGuard,
}

impl fmt::Debug for TraceContextGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TraceContextGuard")
    }
}

pin_project_lite::pin_project! {
    /// A future run in a [`TraceContext`] (see [`TraceContext::scope`]).
    #[must_use = "futures do nothing unless polled"]
    pub struct WithTraceContext<F> {
        #[pin]
        inner: F,
        context: TraceContext,
    }
}

impl<F: Future> Future for WithTraceContext<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _guard = this.context.enter();
        this.inner.poll(cx)
    }
}

impl<F> fmt::Debug for WithTraceContext<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithTraceContext")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_scopes_merge_inner_wins() {
        let outer = TraceContext::new()
            .metadata("foo", "bar")
            .metadata("baz", "qux")
            .enabled(false);
        let inner = TraceContext::new()
            .metadata("foo", "baz")
            .metadata("qux", "quux");
        outer.in_scope(|| {
            inner.in_scope(|| {
                let now = TraceContext::current().unwrap();
                assert_eq!(
                    now.metadata,
                    [
                        ("foo".to_owned(), "baz".to_owned()),
                        ("baz".to_owned(), "qux".to_owned()),
                        ("qux".to_owned(), "quux".to_owned())
                    ]
                );
                assert_eq!(now.enabled, Some(false), "inherited");
                assert!(TraceContext::disabled_here());
            });
        });
        assert!(TraceContext::current().is_none());
    }
}
