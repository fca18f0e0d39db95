//! Streams and iterators traced as one span, as MLflow traces generators: the span stays open
//! until the stream ends; each item is a chunk event (`mlflow.chunk.item.<i>` with the item's
//! JSON in `mlflow.chunk.value`); the outputs are the list of items, or what an output reducer
//! makes of them; an `Err` item (try-streams) ends the span with that error; a stream dropped
//! before its end ends the span with ERROR (`Cancelled`). The span is current while the inner
//! stream runs, so spans it starts are its children.
//!
//! Chunk events are bounded by the span's event limit (`SpanLimits`, 128 by default): as in
//! Python, where OpenTelemetry keeps a span's newest events, the last 128 chunks are kept (added
//! when the stream ends) and the older ones dropped and counted (`TracerStats::events_dropped`),
//! so a stream of a million items holds 128 events. Every item is still yielded and, without a
//! reducer, in the outputs (as in Python).
//!
//! Beyond MLflow: a `first_item` event records the time from the span's start to the first item
//! (`time_to_first_item_ns`; not counted against the limit), and a stream dropped before its
//! end ends its span (Python's generator span stays open forever and its trace is never sent).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures_core::Stream;
use mlflow_tracing_entities::json::{to_attribute_json, to_python_json};
use mlflow_tracing_entities::{SpanEvent, SpanStatus, keys};
use opentelemetry::Context;
use serde::Serialize;
use serde_json::Value;

use crate::live::{LiveSpan, LiveSpanInner};
use crate::util::now_ns;

/// MLflow's chunk event name (`STREAM_CHUNK_EVENT_NAME_FORMAT`).
const CHUNK_EVENT_PREFIX: &str = "mlflow.chunk.item.";
/// MLflow's chunk value attribute (`STREAM_CHUNK_EVENT_VALUE_KEY`).
const CHUNK_VALUE_KEY: &str = "mlflow.chunk.value";

/// Keeps a copy of each item for the reducer.
type Keep<T> = Box<dyn FnMut(&T) + Send>;
/// Runs the reducer over the kept items: the outputs' JSON.
type Reduce = Box<dyn FnOnce() -> Result<String, String> + Send>;

/// What a traced stream records, shared by the stream and iterator wrappers.
struct Recorder<T> {
    span: LiveSpan,
    cx: Context,
    index: u64,
    /// The outputs list's JSON, built as items arrive (also with a reducer: what the outputs
    /// are when it fails, as in MLflow).
    outputs: String,
    /// With a reducer: keeps the items for it.
    keep: Option<Keep<T>>,
    reduce: Option<Reduce>,
    /// The newest chunk events, at most the event limit.
    chunks: VecDeque<SpanEvent>,
    done: bool,
}

impl<T> Recorder<T> {
    fn new(span: LiveSpan) -> Self {
        Recorder {
            cx: span.context(),
            span,
            index: 0,
            outputs: String::from("["),
            keep: None,
            reduce: None,
            chunks: VecDeque::new(),
            done: false,
        }
    }

    fn inner(&self) -> Option<Arc<LiveSpanInner>> {
        self.span.inner.clone().filter(|i| i.recording)
    }

    fn with_reducer<R: Serialize>(&mut self, reducer: impl FnOnce(Vec<T>) -> R + Send + 'static)
    where
        T: Clone + Send + 'static,
    {
        let kept: Arc<std::sync::Mutex<Vec<T>>> = Arc::default();
        let sink = kept.clone();
        self.keep = Some(Box::new(move |item: &T| {
            crate::util::lock(&sink).push(item.clone());
        }));
        self.reduce = Some(Box::new(move || {
            let items = std::mem::take(&mut *crate::util::lock(&kept));
            let reduced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reducer(items)))
                .map_err(|p| {
                    format!(
                        "the reducer panicked: {}",
                        crate::util::panic_message(p.as_ref())
                    )
                })?;
            to_attribute_json(&reduced).map_err(|e| e.to_string())
        }));
    }

    /// Runs `next` (the wrapped stream's poll or iterator's `next`) with the span current,
    /// while it is recording.
    fn current<R>(&self, next: impl FnOnce() -> R) -> R {
        if self.done {
            return next();
        }
        let _current = self.cx.clone().attach();
        next()
    }

    /// What the wrapped stream or iterator gave: an item, or its end.
    fn saw(&mut self, next: Option<&T>)
    where
        T: Serialize,
    {
        match next {
            _ if self.done => {}
            Some(item) => self.item(item),
            None => self.finish(),
        }
    }

    /// As [`Recorder::saw`], for a stream or iterator of `Result`s: the first `Err` ends it.
    fn saw_result<E: fmt::Display + fmt::Debug>(&mut self, next: Option<&Result<T, E>>)
    where
        T: Serialize,
    {
        match next {
            _ if self.done => {}
            Some(Ok(item)) => self.item(item),
            Some(Err(e)) => self.fail(e),
            None => self.finish(),
        }
    }

    /// One item: its chunk event and its place in the outputs.
    fn item(&mut self, item: &T)
    where
        T: Serialize,
    {
        let Some(inner) = self.inner() else {
            return;
        };
        let index = self.index;
        self.index += 1;
        if index == 0 {
            let elapsed = now_ns().saturating_sub(inner.start_time_ns);
            let mut first = SpanEvent::now("first_item");
            first
                .attributes
                .insert("time_to_first_item_ns".into(), Value::from(elapsed));
            // Not counted against the event limit: the chunk events keep MLflow's 128.
            inner.add_event_limited(first, false);
        }
        // Stored attributes are `json.dumps(.., ensure_ascii=False)`; chunk values are
        // `json.dumps(chunk)` (ASCII escapes), as in MLflow.
        let json = match to_attribute_json(item) {
            Ok(json) => json,
            Err(e) => {
                inner
                    .tracer
                    .manager()
                    .stats
                    .serialization_error("a stream item", &e);
                mlflow_tracing_entities::json::string_attribute_json(&format!(
                    "<unserializable stream item: {e}>"
                ))
            }
        };
        let limit = inner.tracer.manager().limits.max_events as usize;
        if limit > 0 {
            if self.chunks.len() == limit {
                self.chunks.pop_front();
                inner.tracer.manager().stats.events_dropped(1);
            }
            let value = if json.is_ascii() {
                json.clone()
            } else {
                to_python_json(item).unwrap_or_else(|_| json.clone())
            };
            let mut event = SpanEvent::now(format!("{CHUNK_EVENT_PREFIX}{index}"));
            event
                .attributes
                .insert(CHUNK_VALUE_KEY.into(), Value::String(value));
            self.chunks.push_back(event);
        } else {
            inner.tracer.manager().stats.events_dropped(1);
        }
        if let Some(keep) = &mut self.keep {
            keep(item);
        }
        if index > 0 {
            self.outputs.push_str(", ");
        }
        self.outputs.push_str(&json);
    }

    /// The kept chunk events onto the span, in order: the newest that fit next to the span's
    /// other events, the older ones counted as dropped.
    fn flush_chunks(&mut self) {
        if let Some(inner) = self.inner() {
            let room = inner.event_room();
            let extra = self.chunks.len().saturating_sub(room);
            if extra > 0 {
                self.chunks.drain(..extra);
                inner.tracer.manager().stats.events_dropped(extra as u64);
            }
            for event in self.chunks.drain(..) {
                inner.add_event_raw(event);
            }
        }
    }

    /// The stream ended: the outputs (reduced, if asked), then the span's end.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.flush_chunks();
        if let Some(inner) = self.inner() {
            let mut list = std::mem::take(&mut self.outputs);
            list.push(']');
            let outputs = match self.reduce.take().map(|reduce| reduce()) {
                Some(Ok(json)) => json,
                Some(Err(e)) => {
                    // As MLflow: a failing reducer leaves the list of items as the outputs.
                    tracing::debug!("the stream's output reducer failed: {e}");
                    list
                }
                None => list,
            };
            inner.set_json(Cow::Borrowed(keys::span::OUTPUTS), outputs);
        }
        self.span.end();
    }

    /// An `Err` item: the error, then the span's end (no outputs, as MLflow).
    fn fail<E: fmt::Display + fmt::Debug + ?Sized>(&mut self, error: &E) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.flush_chunks();
        if let Some(inner) = self.inner() {
            // As MLflow's generator wrapper: the exception event, status ERROR without a
            // message.
            inner.add_event_raw(SpanEvent::exception(
                crate::live::short_type_name::<E>(),
                error.to_string(),
                format!("{error:?}"),
                now_ns(),
            ));
            inner.set_status_raw(SpanStatus::error(""));
        }
        self.span.end();
    }

    /// Dropped before the end.
    fn cancel(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.flush_chunks();
        self.span
            .record_exception("Cancelled", "the stream was dropped before it ended", "");
        self.span.end();
    }
}

impl<T> Drop for Recorder<T> {
    fn drop(&mut self) {
        self.cancel();
    }
}

pin_project_lite::pin_project! {
    /// A stream traced as one span (see the module docs). Made by
    /// [`TraceStreamExt::traced`] or [`TracedStream::new`].
    #[must_use = "streams do nothing unless polled"]
    pub struct TracedStream<S: Stream> {
        #[pin]
        inner: S,
        recorder: Recorder<S::Item>,
    }
}

impl<S: Stream> TracedStream<S> {
    /// Traces `stream` as `span` (started by the caller, ended by the stream).
    pub fn new(stream: S, span: LiveSpan) -> Self {
        TracedStream {
            inner: stream,
            recorder: Recorder::new(span),
        }
    }
}

impl<S> Stream for TracedStream<S>
where
    S: Stream,
    S::Item: Serialize,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        let inner = this.inner;
        let polled = this.recorder.current(|| inner.poll_next(task));
        if let Poll::Ready(next) = &polled {
            this.recorder.saw(next.as_ref());
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A stream of `Result`s traced as one span: `Ok` items as [`TracedStream`]'s, the first
    /// `Err` ends the span with that error (later items pass through unrecorded).
    #[must_use = "streams do nothing unless polled"]
    pub struct TracedTryStream<S, T> {
        #[pin]
        inner: S,
        recorder: Recorder<T>,
    }
}

impl<S, T, E> TracedTryStream<S, T>
where
    S: Stream<Item = Result<T, E>>,
{
    /// Traces `stream` as `span`.
    pub fn new(stream: S, span: LiveSpan) -> Self {
        TracedTryStream {
            inner: stream,
            recorder: Recorder::new(span),
        }
    }
}

impl<S, T, E> Stream for TracedTryStream<S, T>
where
    S: Stream<Item = Result<T, E>>,
    T: Serialize,
    E: fmt::Display + fmt::Debug,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let inner = this.inner;
        let polled = this.recorder.current(|| inner.poll_next(task));
        if let Poll::Ready(next) = &polled {
            this.recorder.saw_result(next.as_ref());
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// An iterator traced as one span, as [`TracedStream`]: the span is current during each
/// `next`. (For an iterator of `Result`s whose `Err` should end the span, [`TracedTryIter`].)
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct TracedIter<I: Iterator> {
    inner: I,
    recorder: Recorder<I::Item>,
}

impl<I: Iterator> TracedIter<I> {
    /// Traces `iter` as `span`.
    pub fn new(iter: I, span: LiveSpan) -> Self {
        TracedIter {
            inner: iter,
            recorder: Recorder::new(span),
        }
    }
}

impl<I> Iterator for TracedIter<I>
where
    I: Iterator,
    I::Item: Serialize,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let inner = &mut self.inner;
        let next = self.recorder.current(|| inner.next());
        self.recorder.saw(next.as_ref());
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<I> ExactSizeIterator for TracedIter<I>
where
    I: ExactSizeIterator,
    I::Item: Serialize,
{
}

/// An iterator of `Result`s traced as one span: the first `Err` ends it with that error.
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct TracedTryIter<I, T> {
    inner: I,
    recorder: Recorder<T>,
}

impl<I, T, E> TracedTryIter<I, T>
where
    I: Iterator<Item = Result<T, E>>,
{
    /// Traces `iter` as `span`.
    pub fn new(iter: I, span: LiveSpan) -> Self {
        TracedTryIter {
            inner: iter,
            recorder: Recorder::new(span),
        }
    }
}

impl<I, T, E> Iterator for TracedTryIter<I, T>
where
    I: Iterator<Item = Result<T, E>>,
    T: Serialize,
    E: fmt::Display + fmt::Debug,
{
    type Item = Result<T, E>;

    fn next(&mut self) -> Option<Self::Item> {
        let inner = &mut self.inner;
        let next = self.recorder.current(|| inner.next());
        self.recorder.saw_result(next.as_ref());
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<I, T, E> ExactSizeIterator for TracedTryIter<I, T>
where
    I: ExactSizeIterator<Item = Result<T, E>>,
    T: Serialize,
    E: fmt::Display + fmt::Debug,
{
}

/// What every traced wrapper has: `output_reducer` (MLflow's; the items are kept for it, so
/// they must be `Clone`) and a `Debug` that shows the span and the items seen.
macro_rules! traced_common {
    ($ty:ident < $($p:ident),+ >, $item:ty, where $($bounds:tt)*) => {
        impl<$($p),+> $ty<$($p),+> where $($bounds)* {
            /// The span's outputs become `reducer(items)` instead of the list of items (MLflow's
            /// `output_reducer`; if it fails or panics, the list stays, as in MLflow).
            pub fn output_reducer<R: Serialize>(
                mut self,
                reducer: impl FnOnce(Vec<$item>) -> R + Send + 'static,
            ) -> Self
            where
                $item: Clone + Send + 'static,
            {
                self.recorder.with_reducer(reducer);
                self
            }
        }

        impl<$($p),+> fmt::Debug for $ty<$($p),+> where $($bounds)* {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("span", &self.recorder.span)
                    .field("items", &self.recorder.index)
                    .finish_non_exhaustive()
            }
        }
    };
}

traced_common!(TracedStream<S>, S::Item, where S: Stream);
traced_common!(TracedTryStream<S, T>, T, where S: Stream);
traced_common!(TracedIter<I>, I::Item, where I: Iterator);
traced_common!(TracedTryIter<I, T>, T, where I: Iterator);

/// `.traced(span)` for streams and iterators.
pub trait TraceStreamExt: Sized {
    /// What tracing makes of it.
    type Traced;
    /// Traces it as `span` (started by the caller; the stream or iterator ends it).
    fn traced(self, span: LiveSpan) -> Self::Traced;
}

impl<S: Stream> TraceStreamExt for S {
    type Traced = TracedStream<S>;
    fn traced(self, span: LiveSpan) -> TracedStream<S> {
        TracedStream::new(self, span)
    }
}

/// `.traced(span)` for iterators (a separate trait: a type can be both a stream and an
/// iterator).
pub trait TraceIterExt: Iterator + Sized {
    /// Traces it as `span` (started by the caller; the iterator ends it).
    fn traced(self, span: LiveSpan) -> TracedIter<Self> {
        TracedIter::new(self, span)
    }
}

impl<I: Iterator> TraceIterExt for I {}
