//! The trace manager: the one place that decides a trace's lifecycle. A trace starts (its
//! destination's policy says how), spans start and end in it, it completes when its root has
//! ended and no span is open (or it is halted by the timeout), and is handed to the dispatch;
//! or it is evicted. Every front door (the span API, the OpenTelemetry span processor) calls
//! this small API with plain values.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlflow_tracing_entities::{MlflowTraceId, SpanEvent, TraceId, TraceInfo};

use crate::export::Dispatch;
use crate::finish::{Ended, Finisher, PendingTrace, SpanProcessorFn};
use crate::in_progress::{Buffer, Completed, TraceBuffer, TraceEntry};
use crate::items::{ExportItem, SpanItem};
use crate::limits::SpanLimits;
use crate::policy::{RootStart, TracePolicy};
use crate::scope::TraceContext;
use crate::stats::Stats;
use crate::util::{lock, now_ns};

/// What a trace manager is made of (from the tracer's settings).
pub(crate) struct ManagerParts {
    pub(crate) policy: Arc<dyn TracePolicy>,
    pub(crate) dispatch: Option<Arc<dyn Dispatch>>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) span_processors: Vec<SpanProcessorFn>,
    pub(crate) limits: SpanLimits,
    pub(crate) buffer_ttl: Option<Duration>,
    pub(crate) buffer_max_size: u64,
    pub(crate) preview_max_chars: usize,
    pub(crate) trace_timeout: Option<Duration>,
    pub(crate) timeout_check_interval: Duration,
    pub(crate) last_active_trace_id: Arc<Mutex<Option<MlflowTraceId>>>,
    pub(crate) enabled: bool,
}

/// In-progress traces and what happens to them.
pub(crate) struct TraceManager {
    /// A trait object: see [`Buffer`].
    buffer: Box<dyn Buffer>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) dispatch: Option<Arc<dyn Dispatch>>,
    wants_spans: bool,
    policy: Arc<dyn TracePolicy>,
    /// The end rules and trace finalization, shared with pending traces.
    finisher: Arc<Finisher>,
    pub(crate) limits: SpanLimits,
    trace_timeout: Option<Duration>,
    timeout_check_interval: Duration,
    created: Instant,
    /// ms since `created` of the last timeout check.
    last_timeout_check_ms: AtomicU64,
    pub(crate) last_active_trace_id: Arc<Mutex<Option<MlflowTraceId>>>,
    pub(crate) enabled: AtomicBool,
    /// Spans in the last completed trace: room a new trace's span list starts with, so a
    /// service's traces (often alike) do not grow it span by span.
    spans_per_trace: AtomicUsize,
}

/// The most room a new trace's span list starts with (about 30 KB).
const MAX_SPANS_RESERVED: usize = 128;

impl fmt::Debug for TraceManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceManager")
            .field("policy", &self.policy)
            .field("dispatch", &self.dispatch)
            .field("trace_timeout", &self.trace_timeout)
            .finish_non_exhaustive()
    }
}

impl TraceManager {
    pub(crate) fn new(parts: ManagerParts) -> Self {
        TraceManager {
            buffer: TraceBuffer::new_boxed(
                parts.buffer_ttl,
                parts.buffer_max_size,
                parts.stats.clone(),
            ),
            stats: parts.stats.clone(),
            wants_spans: parts.dispatch.as_ref().is_some_and(|d| d.wants_spans()),
            dispatch: parts.dispatch,
            finisher: Arc::new(Finisher {
                policy: parts.policy.clone(),
                span_processors: parts.span_processors,
                stats: parts.stats.clone(),
                preview_max_chars: parts.preview_max_chars,
            }),
            policy: parts.policy,
            limits: parts.limits,
            trace_timeout: parts.trace_timeout,
            timeout_check_interval: parts.timeout_check_interval,
            created: Instant::now(),
            last_timeout_check_ms: AtomicU64::new(0),
            last_active_trace_id: parts.last_active_trace_id,
            enabled: AtomicBool::new(parts.enabled),
            spans_per_trace: AtomicUsize::new(0),
        }
    }

    /// Registers a new trace (a root span named `root_name` starts at `start_time_ns`); `None`
    /// when its destination does not track it. The trace's request time is the root's start,
    /// as in MLflow.
    pub(crate) fn start_trace(
        &self,
        trace_id: TraceId,
        root_name: Cow<'static, str>,
        experiment_id: Option<String>,
        start_time_ns: u64,
    ) -> Option<Arc<TraceEntry>> {
        let (mlflow_id, mut info) = self.policy.start(RootStart {
            trace_id,
            experiment_id,
            now_ms: i64::try_from(start_time_ns / 1_000_000).unwrap_or(i64::MAX),
        })?;
        // `mlflow.tracing.context` scopes: their metadata and tags.
        TraceContext::apply_current(&mut info, self.policy.names_traces());
        let room = self
            .spans_per_trace
            .load(Ordering::Relaxed)
            .min(MAX_SPANS_RESERVED);
        let entry = Arc::new(TraceEntry::new(
            trace_id, mlflow_id, info, root_name, false, room,
        ));
        self.buffer.insert(entry.clone());
        self.stats.trace_started();
        Some(entry)
    }

    /// Registers the placeholder trace of a request continued from a remote `traceparent`
    /// (shared by concurrent continuations); `None` when that trace is in progress here, so its
    /// spans simply join it.
    pub(crate) fn start_remote_trace(&self, trace_id: TraceId) -> Option<Arc<TraceEntry>> {
        let (entry, fresh) = self.buffer.get_or_insert(trace_id, &mut || {
            let mlflow_id = MlflowTraceId::v3(trace_id);
            let info = TraceInfo::new(
                String::from(mlflow_id.clone()),
                self.policy.remote_location(),
                0,
            );
            Arc::new(TraceEntry::new(
                trace_id,
                mlflow_id,
                info,
                Cow::Borrowed(""),
                true,
                0,
            ))
        });
        if fresh {
            return Some(entry);
        }
        if !entry.remote {
            return None;
        }
        entry.scopes.fetch_add(1, Ordering::AcqRel);
        Some(entry)
    }

    /// The trace in progress with this id.
    pub(crate) fn entry(&self, trace_id: TraceId) -> Option<Arc<TraceEntry>> {
        self.buffer.get(trace_id)
    }

    /// A span ended: MLflow's log-level rules, the destination's root-end attributes, user span
    /// processors, the span item, then the trace completes if this was its last open span.
    /// `entry` is the span's trace when the caller knows it (else it is looked up); a span
    /// whose trace is gone is dropped and counted.
    pub(crate) fn end_span(&self, entry: Option<&Arc<TraceEntry>>, ended: Ended) {
        let entry = match entry {
            Some(e) => e.clone(),
            None => match self.buffer.get(ended.trace_id()) {
                Some(e) => e,
                None => {
                    self.stats.span_dropped(ended.name());
                    return;
                }
            },
        };
        // With user span processors (they run as each span ends, on the thread that ends it) or
        // a span-logging exporter (it gets each span now), the span is finished here; otherwise
        // it waits in its trace, finished when the trace is finalized.
        let (ended, item) = if self.wants_spans || !self.finisher.span_processors.is_empty() {
            let (root_info, location) = {
                let st = entry.lock();
                (
                    ended.is_root().then(|| st.info.clone()),
                    self.wants_spans.then(|| st.info.trace_location.clone()),
                )
            };
            let trace_id = String::from(entry.mlflow_trace_id.clone());
            let span = self
                .finisher
                .finish_span(ended, &trace_id, root_info.as_ref());
            let item = location.map(|location| {
                ExportItem::Span(Box::new(SpanItem {
                    span: span.clone(),
                    trace_id,
                    location,
                }))
            });
            (Ended::Done(Box::new(span)), item)
        } else {
            (ended, None)
        };
        let completed = match entry.finish_span(ended) {
            Ok(completed) => completed,
            Err(ended) => {
                self.stats.span_dropped(ended.name());
                return;
            }
        };
        if let Some(item) = item {
            self.send(item);
        }
        if let Some(completed) = completed {
            self.complete(&entry, completed);
        }
    }

    /// Pops a completed trace and hands it to the dispatch, which finalizes it (see
    /// [`Dispatch::dispatch_trace`]).
    pub(crate) fn complete(&self, entry: &Arc<TraceEntry>, completed: Completed) {
        self.buffer.remove(entry);
        let Completed {
            info,
            root_name,
            spans,
            halted,
        } = completed;
        if entry.remote && spans.is_empty() {
            // A continued trace in which this process made no span: nothing to export.
            return;
        }
        if !entry.remote {
            self.spans_per_trace.store(spans.len(), Ordering::Relaxed);
            *lock(&self.last_active_trace_id) = Some(entry.mlflow_trace_id.clone());
            self.stats.trace_finished();
        }
        let pending = PendingTrace::new(
            self.finisher.clone(),
            info,
            root_name,
            spans,
            halted,
            entry.remote,
        );
        match &self.dispatch {
            Some(d) => d.dispatch_trace(pending),
            None => self
                .stats
                .record_export_dropped(1, "no exporter is configured"),
        }
    }

    fn send(&self, item: ExportItem) {
        match &self.dispatch {
            Some(d) => d.dispatch(item),
            None => self
                .stats
                .record_export_dropped(1, "no exporter is configured"),
        }
    }

    /// Applies buffer expiry and halts traces older than the timeout (at most once per check
    /// interval unless `force`).
    pub(crate) fn check_timeouts(&self, force: bool) {
        let now_ms = self.created.elapsed().as_millis() as u64;
        let last = self.last_timeout_check_ms.load(Ordering::Relaxed);
        if !force {
            let interval = self.timeout_check_interval.as_millis() as u64;
            if now_ms.saturating_sub(last) < interval
                || self
                    .last_timeout_check_ms
                    .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
            {
                return; // checked recently, or another thread is checking
            }
        }
        self.buffer.run_pending_tasks();
        let Some(timeout) = self.trace_timeout else {
            return;
        };
        for entry in self.buffer.entries() {
            if entry.remote || entry.registered.elapsed() < timeout {
                continue;
            }
            self.halt(&entry, timeout);
        }
    }

    /// MLflow's halt: root status ERROR, an `exception` event saying the trace timed out, end the
    /// root (which exports the partial trace).
    fn halt(&self, entry: &Arc<TraceEntry>, timeout: Duration) {
        let (root, deferred) = {
            let mut st = entry.lock();
            if st.popped {
                return;
            }
            st.halted = true;
            let root = st.root_span.as_ref().and_then(std::sync::Weak::upgrade);
            (root, st.root_ended)
        };
        self.stats
            .trace_timed_out(&entry.mlflow_trace_id.to_string());
        if deferred {
            // The root ended; a background span hangs: export what there is.
            if let Some(completed) = entry.force_complete() {
                self.complete(entry, completed);
            }
            return;
        }
        let message = format!(
            "Trace {} is timed out after {} seconds. The operation may be stuck or taking too \
             long to complete. To increase the timeout, set the environment variable \
             MLFLOW_TRACE_TIMEOUT_SECONDS to a larger value.",
            entry.mlflow_trace_id,
            timeout.as_secs()
        );
        match root {
            // Ending the root pops the (halted) trace. If its owner is ending it right now, the
            // owner's end does the same.
            Some(root) => root.halt(message),
            None => {
                // The root span is gone (a foreign span dropped unended): export what there is.
                if let Some(completed) = entry.force_complete() {
                    self.complete(entry, completed);
                }
            }
        }
    }

    /// At shutdown: traces still in progress cannot finish any more; count and log them.
    pub(crate) fn abandon_in_progress(&self) {
        for entry in self.buffer.entries() {
            if entry
                .fate
                .compare_exchange(
                    crate::in_progress::LIVE,
                    crate::in_progress::EVICTED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                let spans = entry
                    .state
                    .try_lock()
                    .map_or(0, |st| st.finished.len() + st.open.len());
                self.stats.trace_evicted(
                    &entry.mlflow_trace_id.to_string(),
                    spans,
                    "still in progress at shutdown",
                );
            }
        }
    }

    /// Exports traces whose root ended but whose background spans are still open (MLflow exports
    /// such deferred roots at shutdown).
    pub(crate) fn flush_deferred(&self) {
        for entry in self.buffer.entries() {
            let deferred = {
                let st = entry.lock();
                st.root_ended && !st.popped
            };
            if deferred && let Some(completed) = entry.force_complete() {
                self.complete(&entry, completed);
            }
        }
    }

    /// Number of traces in progress.
    pub(crate) fn in_progress(&self) -> u64 {
        self.buffer.len()
    }
}

/// The exception event MLflow adds to a root it halts on timeout.
pub(crate) fn timeout_event(message: String) -> SpanEvent {
    SpanEvent::exception("MlflowTracingException", message, "", now_ns())
}
