//! Support code for the `#[trace]` macro. Not a public API: names and signatures may change in
//! any release.
#![allow(missing_docs, missing_debug_implementations)]

use std::fmt::{Debug, Display};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use mlflow_tracing_entities::SpanType;
use opentelemetry::Context;
use serde::Serialize;

use crate::live::{LiveSpan, short_type_name};
use crate::start::{StartSpan, start_span};
pub use crate::stream::{TracedIter, TracedStream, TracedTryIter, TracedTryStream};
use crate::util::panic_message;

/// The span of a traced function, to configure (`#[trace]` options) and start detached. A
/// function returning a stream or an iterator has no `function_name`, as MLflow's generator
/// spans.
pub fn fn_span(
    name: &'static str,
    function_name: Option<&'static str>,
    span_type: Option<SpanType>,
) -> StartSpan {
    let mut start = start_span(name);
    if let Some(t) = span_type {
        start = start.span_type(t);
    }
    start.function_name = function_name;
    start
}

/// Collects the arguments of a traced function into MLflow's inputs JSON: `{"a": 1, "b": "x"}`.
pub struct Inputs {
    json: Vec<u8>,
}

impl Default for Inputs {
    fn default() -> Self {
        Self::new()
    }
}

impl Inputs {
    pub fn new() -> Self {
        Inputs {
            // The `{` is written with the first argument, so that one allocation holds it all.
            json: Vec::new(),
        }
    }

    pub fn arg<V: Serialize + ?Sized>(&mut self, span: &LiveSpan, name: &str, value: &V) {
        /// `{"name": ` or `, "name": ` before the value (the name written as JSON, with no
        /// allocation of its own).
        fn key(json: &mut Vec<u8>, name: &str) {
            json.extend_from_slice(if json.is_empty() { &b"{"[..] } else { b", " });
            if serde_json::to_writer(&mut *json, name).is_err() {
                json.extend_from_slice(b"\"\"");
            }
            json.extend_from_slice(b": ");
        }
        let json = &mut self.json;
        let written = mlflow_tracing_entities::json::with_attribute_json(value, |bytes| {
            // One exact growth for the argument (it is written in a reused buffer), with room
            // for the closing brace.
            json.reserve_exact(bytes.len() + name.len() + 7);
            key(json, name);
            json.extend_from_slice(bytes);
        });
        if let Err(err) = written {
            if let Some(i) = &span.inner {
                i.tracer.manager().stats.serialization_error(name, &err);
            }
            key(&mut self.json, name);
            self.json.extend_from_slice(
                mlflow_tracing_entities::json::string_attribute_json(&format!(
                    "<unserializable argument: {err}>"
                ))
                .as_bytes(),
            );
        }
    }

    pub fn finish(mut self, span: &LiveSpan) {
        if self.json.is_empty() {
            self.json.push(b'{');
        }
        self.json.push(b'}');
        if let Some(i) = span.inner.as_ref() {
            // Valid UTF-8: JSON text written by serde_json and string literals.
            let json = String::from_utf8(self.json)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            i.set_json(
                std::borrow::Cow::Borrowed(mlflow_tracing_entities::keys::span::INPUTS),
                json,
            );
        }
    }
}

/// Wraps an argument for the `Serialize` check (autoref specialization).
pub struct Probe<'a, T: ?Sized>(pub &'a T);

/// Chosen when the argument is `Serialize`.
pub trait ArgSerialize<'a, T: ?Sized> {
    fn __mlflow_arg(&self) -> &'a T;
}
impl<'a, T: Serialize + ?Sized> ArgSerialize<'a, T> for Probe<'a, T> {
    fn __mlflow_arg(&self) -> &'a T {
        self.0
    }
}

/// An argument of a `#[trace]` function must be `Serialize` to be recorded as input.
#[diagnostic::on_unimplemented(
    message = "argument of type `{Self}` cannot be recorded as a span input: it does not implement `serde::Serialize`",
    label = "not `Serialize`",
    note = "leave it out of the inputs with `#[trace(skip(<argument name>))]`, or derive `serde::Serialize` for it"
)]
pub trait TraceArgumentMustBeSerialize {}

/// Chosen when the argument is not `Serialize`: fails to compile with the message above.
pub trait ArgFallback<T: ?Sized> {
    fn __mlflow_arg(&self) -> &'static ()
    where
        T: TraceArgumentMustBeSerialize;
}
impl<T: ?Sized> ArgFallback<T> for &Probe<'_, T> {
    fn __mlflow_arg(&self) -> &'static ()
    where
        T: TraceArgumentMustBeSerialize,
    {
        &()
    }
}

/// Records a `Result`: `Ok` as outputs, `Err` as an exception with ERROR status.
pub trait RecordResult {
    fn __mlflow_record(&self, span: &LiveSpan);
}
impl<T: Serialize, E: Display + Debug> RecordResult for &Probe<'_, Result<T, E>> {
    fn __mlflow_record(&self, span: &LiveSpan) {
        match self.0 {
            Ok(v) => {
                if !span.has_outputs() {
                    span.set_outputs(v);
                }
            }
            Err(e) => {
                span.record_exception(&short_type_name::<E>(), &e.to_string(), &format!("{e:?}"));
            }
        }
    }
}

/// Records any other `Serialize` return value as outputs.
pub trait RecordSerialize {
    fn __mlflow_record(&self, span: &LiveSpan);
}
impl<T: Serialize + ?Sized> RecordSerialize for &&Probe<'_, T> {
    fn __mlflow_record(&self, span: &LiveSpan) {
        if !span.has_outputs() {
            span.set_outputs(self.0);
        }
    }
}

/// The return value of a `#[trace]` function must be `Serialize` to be recorded as output.
#[diagnostic::on_unimplemented(
    message = "the return value of type `{Self}` cannot be recorded as span outputs: it does not implement `serde::Serialize`",
    label = "not `Serialize`",
    note = "return a `Serialize` type (a `Result<T, E>` needs `T: Serialize` and `E: Display + Debug`), or leave outputs out with `#[trace(skip_output)]`"
)]
pub trait TraceOutputMustBeSerialize {}

/// Chosen when the return value is neither a recordable `Result` nor `Serialize`.
pub trait RecordOther<T: ?Sized> {
    fn __mlflow_record(&self, span: &LiveSpan)
    where
        T: TraceOutputMustBeSerialize;
}
impl<T: ?Sized> RecordOther<T> for Probe<'_, T> {
    fn __mlflow_record(&self, _span: &LiveSpan)
    where
        T: TraceOutputMustBeSerialize,
    {
    }
}

/// Ends the span of a traced function that panicked with ERROR, then keeps unwinding.
pub fn resume_panic(span: &LiveSpan, payload: Box<dyn std::any::Any + Send>) -> ! {
    record_panic(span, payload.as_ref());
    resume_unwind(payload)
}

fn record_panic(span: &LiveSpan, payload: &(dyn std::any::Any + Send)) {
    span.record_exception("panic", panic_message(payload), "");
    span.end();
}

/// Runs a closure with the span current, catching a panic to record it.
pub fn run_in_span<R>(span: &LiveSpan, f: impl FnOnce() -> R) -> R {
    // A no-op span (no tracer, tracing disabled, a disabled scope) is not made current: every
    // span started inside re-checks the same and is a no-op too, and entering would cost more
    // than the whole call.
    let entered = span.inner.is_some().then(|| span.enter());
    let result = catch_unwind(AssertUnwindSafe(f));
    drop(entered);
    match result {
        Ok(v) => v,
        Err(payload) => resume_panic(span, payload),
    }
}

pin_project_lite::pin_project! {
    /// The body of a traced `async fn`: the span is current while it is polled (on any thread);
    /// a panic ends the span with ERROR; dropping it unfinished ends the span with ERROR
    /// (cancelled).
    pub struct TracedFuture<F> {
        #[pin]
        inner: F,
        span: LiveSpan,
        // For a no-op span, the context of the call (cheap to capture): a disabled scope or a
        // no-op parent must still cover the body wherever it is polled.
        cx: Context,
        done: bool,
    }

    impl<F> PinnedDrop for TracedFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                this.span.record_exception(
                    "Cancelled",
                    "the future was dropped before it completed",
                    "",
                );
                this.span.end();
            }
        }
    }
}

impl<F> TracedFuture<F> {
    pub fn new(inner: F, span: &LiveSpan) -> Self {
        TracedFuture {
            inner,
            cx: if span.inner.is_some() {
                span.context()
            } else {
                Context::current()
            },
            span: span.clone(),
            done: false,
        }
    }
}

impl<F: Future> Future for TracedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _attached = this.cx.clone().attach();
        let mut inner = this.inner;
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(task))) {
            Ok(Poll::Ready(v)) => {
                *this.done = true;
                Poll::Ready(v)
            }
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                *this.done = true;
                resume_panic(this.span, payload)
            }
        }
    }
}
