//! [`Instrumented`]: a future run inside a context (the current span, tracer or remote parent),
//! on whatever thread polls it.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use opentelemetry::Context;

pin_project_lite::pin_project! {
    /// A future that runs with a context attached while it is polled: returned by
    /// [`FutureExt::in_current_span`](crate::FutureExt::in_current_span),
    /// [`LiveSpan::instrument`](crate::LiveSpan::instrument), [`Tracer::scope`](crate::Tracer::scope)
    /// and [`RemoteTrace::scope`](crate::RemoteTrace::scope).
    #[must_use = "futures do nothing unless polled"]
    pub struct Instrumented<F> {
        #[pin]
        inner: F,
        cx: Context,
    }
}

impl<F> Instrumented<F> {
    pub(crate) fn new(inner: F, cx: Context) -> Self {
        Instrumented { inner, cx }
    }

    /// The wrapped future.
    pub fn into_inner(self) -> F {
        self.inner
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _attached = this.cx.clone().attach();
        this.inner.poll(task)
    }
}

impl<F> fmt::Debug for Instrumented<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrumented").finish_non_exhaustive()
    }
}
