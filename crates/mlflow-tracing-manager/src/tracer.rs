//! The tracer: one isolated OpenTelemetry tracer provider with the MLflow span processor, the
//! trace buffer, the configuration, and the dispatcher that receives finished traces.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mlflow_tracing_entities::{
    MlflowTraceId, Span, SpanEvent, Trace, TraceId, TraceInfo, TraceLocation, TraceState, keys,
};
use opentelemetry::trace::{
    Link as OtelLink, SpanKind, TraceContextExt, TraceId as OtelTraceId, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    RandomIdGenerator, Sampler, SamplingDecision, SamplingResult, SdkTracer, SdkTracerProvider,
    ShouldSample, SpanData,
};

use crate::buffer::{Completed, TraceBuffer, TraceEntry, lock};
use crate::destination::{ServingRequest, TraceDestination};
use crate::env::{self, EnvLookup};
use crate::error::{ConfigError, LifecycleError};
use crate::export::{Dispatch, ExportItem, InlineDispatch, SpanItem, TraceExporter, TraceItem};
use crate::limits::SpanLimits;
use crate::processor::{MlflowSpanProcessor, convert};
use crate::stats::{Stats, TracerStats};
use serde_json::Value;

/// Wraps a tracer's dispatcher (see [`TracerBuilder::with_dispatch_wrapper`]).
pub type DispatchWrapper = Arc<dyn Fn(Arc<dyn Dispatch>) -> Arc<dyn Dispatch> + Send + Sync>;

/// A user span processor: runs on every span as it ends, before export, and may edit it (e.g. to
/// redact inputs). A panic inside is caught, counted and logged; the span is exported as it was.
pub type SpanProcessorFn = Arc<dyn Fn(&mut Span) + Send + Sync>;

/// MLflow's root sampler: a trace is sampled iff the low 64 bits of its trace id are below
/// `round(ratio * 2^64)` (OpenTelemetry Python's `TraceIdRatioBased`, which MLflow uses).
#[derive(Clone, Debug)]
pub(crate) struct MlflowRatioSampler {
    bound: u128,
}

impl MlflowRatioSampler {
    pub(crate) fn new(ratio: f64) -> Self {
        let bound = (ratio.clamp(0.0, 1.0) * 18_446_744_073_709_551_616.0).round() as u128;
        MlflowRatioSampler { bound }
    }

    pub(crate) fn samples(&self, trace_id: TraceId) -> bool {
        u128::from(trace_id.to_int() as u64) < self.bound
    }
}

impl ShouldSample for MlflowRatioSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: OtelTraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[OtelLink],
    ) -> SamplingResult {
        let decision = if self.samples(TraceId::from(trace_id)) {
            SamplingDecision::RecordAndSample
        } else {
            SamplingDecision::Drop
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: parent_context
                .map(|cx| cx.span().span_context().trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

/// Everything the span processor and the span API share.
pub(crate) struct Shared {
    pub(crate) buffer: TraceBuffer,
    pub(crate) stats: Arc<Stats>,
    pub(crate) dispatch: Option<Arc<dyn Dispatch>>,
    pub(crate) wants_spans: bool,
    pub(crate) span_processors: Vec<SpanProcessorFn>,
    pub(crate) limits: SpanLimits,
    pub(crate) experiment_id: String,
    pub(crate) destination: TraceDestination,
    /// Whether the missing-request-id warning was logged (inference tables).
    warned_no_request_id: AtomicBool,
    pub(crate) environment_metadata: bool,
    pub(crate) preview_max_chars: usize,
    pub(crate) trace_timeout: Option<Duration>,
    pub(crate) timeout_check_interval: Duration,
    created: Instant,
    /// ms since `created` of the last timeout check.
    last_timeout_check_ms: AtomicU64,
    pub(crate) last_active_trace_id: Arc<Mutex<Option<String>>>,
    pub(crate) enabled: AtomicBool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("dispatch", &self.dispatch)
            .field("experiment_id", &self.experiment_id)
            .field("trace_timeout", &self.trace_timeout)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Registers a new trace (root span start); `None` when the destination does not track it
    /// (an inference-table trace without a serving request id).
    pub(crate) fn start_trace(
        &self,
        trace_id: TraceId,
        name: &str,
        experiment_id: Option<String>,
    ) -> Option<Arc<TraceEntry>> {
        let request = ServingRequest::current();
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let (mlflow_id, mut info) = match &self.destination {
            TraceDestination::InferenceTable {
                experiment_id: table_experiment,
            } => {
                let Some(request) = &request else {
                    if !self.warned_no_request_id.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "no serving request id (X-Request-Id) for a trace of the inference \
                             table; it is not recorded. Attach a ServingRequest around request \
                             handling"
                        );
                    }
                    return None;
                };
                let mlflow_id = MlflowTraceId::v3(trace_id).to_string();
                // As MLflow: `TraceLocation.from_experiment_id(MLFLOW_EXPERIMENT_ID)`, an
                // experiment location without an id when unset.
                let location = match experiment_id.or_else(|| table_experiment.clone()) {
                    Some(e) => TraceLocation::experiment(e),
                    None => TraceLocation::experiment_unset(),
                };
                let mut info = TraceInfo::new(mlflow_id.clone(), location, now_ms);
                // MLflow's order: schema version, endpoint, model.
                info.trace_metadata
                    .insert(keys::metadata::SCHEMA_VERSION.into(), "3".into());
                info.trace_metadata.insert(
                    keys::metadata::MODEL_SERVING_ENDPOINT_NAME.into(),
                    request.endpoint_name.clone().unwrap_or_default(),
                );
                if let Some(model) = &request.model_id {
                    info.trace_metadata
                        .insert(keys::metadata::MODEL_ID.into(), model.clone());
                }
                (mlflow_id, info)
            }
            TraceDestination::UnityCatalog(location) => {
                let uc = location.uc_location().unwrap_or_default();
                let mlflow_id = match MlflowTraceId::v4(&uc, trace_id) {
                    Ok(id) => id.to_string(),
                    Err(e) => {
                        tracing::warn!("invalid Unity Catalog location {uc:?}: {e}");
                        return None;
                    }
                };
                let mut info = TraceInfo::new(mlflow_id.clone(), location.clone(), now_ms);
                self.add_basic_metadata(&mut info, name);
                info.trace_metadata
                    .insert(keys::metadata::SCHEMA_VERSION.into(), "4".into());
                (mlflow_id, info)
            }
            _ => {
                let mlflow_id = MlflowTraceId::v3(trace_id).to_string();
                let experiment = experiment_id.unwrap_or_else(|| self.experiment_id.clone());
                let mut info = TraceInfo::new(
                    mlflow_id.clone(),
                    TraceLocation::experiment(experiment),
                    now_ms,
                );
                self.add_basic_metadata(&mut info, name);
                info.trace_metadata
                    .insert(keys::metadata::SCHEMA_VERSION.into(), "3".into());
                (mlflow_id, info)
            }
        };
        if let Some(request) = request {
            info.client_request_id = Some(request.request_id);
        }
        let entry = Arc::new(TraceEntry::new(trace_id, mlflow_id, info, false));
        self.buffer.insert(entry.clone());
        self.stats.trace_started();
        Some(entry)
    }

    /// Environment metadata and the `mlflow.traceName` tag.
    fn add_basic_metadata(&self, info: &mut TraceInfo, name: &str) {
        if self.environment_metadata {
            for (k, v) in env::environment_metadata() {
                info.trace_metadata.insert((*k).to_owned(), v.clone());
            }
        }
        info.tags
            .insert(keys::tag::TRACE_NAME.into(), name.to_owned());
    }

    /// Where the spans this process makes in a remote (continued) trace go: MLflow logs them to
    /// the experiment of the process that made them (`get_experiment_id_for_trace`), here the
    /// tracer's experiment (`with_experiment_id`, `MLFLOW_EXPERIMENT_ID`, else `"0"`, which the
    /// MLflow exporter maps to `MLFLOW_EXPERIMENT_NAME`'s experiment); a Unity Catalog
    /// destination's location; an inference table's experiment, if it has one.
    fn remote_trace_location(&self) -> TraceLocation {
        match &self.destination {
            TraceDestination::UnityCatalog(location) => location.clone(),
            TraceDestination::InferenceTable { experiment_id } => experiment_id
                .as_ref()
                .map_or(TraceLocation::Unspecified, TraceLocation::experiment),
            _ => TraceLocation::experiment(self.experiment_id.clone()),
        }
    }

    /// Registers the placeholder trace of a request continued from a remote `traceparent`.
    pub(crate) fn start_remote_trace(&self, trace_id: TraceId) -> Option<Arc<TraceEntry>> {
        let (entry, fresh) = self.buffer.get_or_insert(trace_id, || {
            let mlflow_id = MlflowTraceId::v3(trace_id).to_string();
            let info = TraceInfo::new(mlflow_id.clone(), self.remote_trace_location(), 0);
            Arc::new(TraceEntry::new(trace_id, mlflow_id, info, true))
        });
        if fresh {
            return Some(entry);
        }
        if !entry.remote {
            return None; // the trace is in progress here: its spans join it
        }
        entry.scopes.fetch_add(1, Ordering::AcqRel);
        Some(entry)
    }

    /// The processor's `on_end`.
    pub(crate) fn end_span(&self, data: SpanData) {
        let trace_id = TraceId::from(data.span_context.trace_id());
        let Some(entry) = self.buffer.get_for_span(trace_id) else {
            self.stats.span_dropped(&data.name);
            return;
        };
        let mut span = convert(data, &self.limits, &self.stats);
        if span.parent_id().is_none()
            && matches!(self.destination, TraceDestination::UnityCatalog(_))
        {
            // MLflow's UC processor: the trace's user and session as root span attributes.
            // Only the two values are copied out of the entry (not the whole metadata map).
            let values: Vec<(&str, String)> = {
                let state = entry.lock();
                [
                    (keys::metadata::TRACE_USER, "user.id"),
                    (keys::metadata::TRACE_SESSION, "session.id"),
                ]
                .into_iter()
                .filter_map(|(from, to)| {
                    let value = state.info.trace_metadata.get(from)?;
                    (!value.is_empty()).then(|| (to, value.clone()))
                })
                .collect()
            };
            for (to, value) in values {
                // Set on the OpenTelemetry span as it is (not JSON-encoded), as MLflow does.
                span.set_raw_attribute(to, Value::String(value));
            }
        }
        self.apply_span_processors(&mut span);
        let item = self.wants_spans.then(|| {
            ExportItem::Span(Box::new(SpanItem {
                span: span.clone(),
                trace_id: entry.mlflow_trace_id.clone(),
                location: entry.location.clone(),
            }))
        });
        let completed = match entry.finish_span(span) {
            Ok(completed) => completed,
            Err(span) => {
                self.stats.span_dropped(span.name());
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

    fn apply_span_processors(&self, span: &mut Span) {
        for processor in &self.span_processors {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| processor(span))) {
                self.stats
                    .span_processor_error(&crate::live::panic_message(payload.as_ref()));
            }
        }
    }

    /// Pops a completed trace and hands it to the exporter.
    pub(crate) fn complete(&self, entry: &Arc<TraceEntry>, completed: Completed) {
        self.buffer.remove(entry);
        let Completed {
            info,
            spans,
            halted,
        } = completed;
        if entry.remote && spans.is_empty() {
            // A continued trace in which this process made no span: nothing to export.
            return;
        }
        let mut trace = Trace::new(info, spans);
        if !entry.remote {
            if matches!(self.destination, TraceDestination::InferenceTable { .. }) {
                trace.finalize_inference_table(self.preview_max_chars);
            } else {
                trace.finalize(self.preview_max_chars);
            }
            if halted && trace.info.state == TraceState::InProgress {
                trace.info.state = TraceState::Error;
            }
            *lock(&self.last_active_trace_id) = Some(entry.mlflow_trace_id.clone());
        }
        if !entry.remote {
            self.stats.trace_finished();
        }
        self.send(ExportItem::Trace(Box::new(TraceItem {
            trace,
            remote: entry.remote,
        })));
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
        self.stats.trace_timed_out(&entry.mlflow_trace_id);
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
            Some(root) => {
                root.add_event_raw(SpanEvent::exception(
                    "MlflowTracingException",
                    message,
                    "",
                    crate::live::now_ns(),
                ));
                root.set_status_raw(mlflow_tracing_entities::SpanStatus::error(""));
                // Ending the root pops the (halted) trace. If its owner is ending it right now,
                // the owner's end does the same.
                root.end_raw(None);
            }
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
                    crate::buffer::LIVE,
                    crate::buffer::EVICTED,
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
                    &entry.mlflow_trace_id,
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
}

struct TracerInner {
    shared: Arc<Shared>,
    provider: SdkTracerProvider,
    otel_tracer: SdkTracer,
    /// The lifecycle functions of the copy of this crate that built the tracer (see
    /// [`TracerOps`]).
    ops: &'static TracerOps,
    /// In an evcxr kernel: the settings it was built from, so another cell's copy of this crate
    /// can build its own tracer sharing this one's export path (see `crate::global`).
    recipe: Option<Box<TracerBuilder>>,
}

/// The operations that touch a tracer's buffer from outside the span path, called through
/// function pointers of the copy of this crate that built the tracer. In an evcxr notebook each
/// cell links its own copy of this crate and its dependencies, and the buffer (moka) must only
/// be run by the code of one copy: its memory reclamation keeps per-copy global state, and the
/// export worker of the building copy runs maintenance concurrently. Outside notebooks there is
/// one copy and this is an ordinary indirect call.
struct TracerOps {
    shutdown: fn(&Tracer, Duration) -> Result<(), LifecycleError>,
    run_maintenance: fn(&Tracer),
}

static OPS: TracerOps = TracerOps {
    shutdown: Tracer::shutdown_here,
    run_maintenance: Tracer::run_maintenance_here,
};

/// An MLflow tracer: its own OpenTelemetry tracer provider (isolated from the global one, as in
/// MLflow), the in-memory trace buffer and the exporter.
///
/// Cheap to clone (an `Arc`). Most code uses the global tracer installed by `init` through the
/// span API ([`start_span`](crate::start_span), `#[trace]`); a tracer can also be made current for
/// a scope with [`Tracer::in_scope`] (tests do this to stay parallel).
#[derive(Clone)]
pub struct Tracer {
    inner: Arc<TracerInner>,
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracer")
            .field("shared", &self.inner.shared)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Tracer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Tracer {
    /// A builder with MLflow's defaults (environment variables are not read; see
    /// [`TracerBuilder::from_env`]).
    pub fn builder() -> TracerBuilder {
        TracerBuilder::default()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The OpenTelemetry tracer of this tracer's provider. Spans started on it with
    /// OpenTelemetry's API go through the MLflow span processor too.
    pub fn otel_tracer(&self) -> &SdkTracer {
        &self.inner.otel_tracer
    }

    /// Counters of started, finished, evicted, timed-out and dropped traces and spans.
    pub fn stats(&self) -> TracerStats {
        self.inner.shared.stats.snapshot()
    }

    /// Number of traces in progress.
    pub fn in_progress_traces(&self) -> u64 {
        self.inner.shared.buffer.len()
    }

    /// The MLflow trace id of the last trace whose root span ended.
    pub fn last_active_trace_id(&self) -> Option<String> {
        lock(&self.inner.shared.last_active_trace_id).clone()
    }

    /// Whether spans are recorded. Disabled tracers hand out no-op spans.
    pub fn is_enabled(&self) -> bool {
        self.inner.shared.enabled.load(Ordering::Relaxed)
    }

    /// Stops recording: new spans are no-ops; traces in progress still finish.
    pub fn disable(&self) {
        self.inner.shared.enabled.store(false, Ordering::Relaxed);
    }

    /// Records spans again.
    pub fn enable(&self) {
        self.inner.shared.enabled.store(true, Ordering::Relaxed);
    }

    /// Applies buffer expiry and halts traces older than `MLFLOW_TRACE_TIMEOUT_SECONDS`.
    ///
    /// The span API also does this lazily when a trace starts; the export runtime calls it on a
    /// timer so an idle process still halts and evicts.
    pub fn run_maintenance(&self) {
        (self.inner.ops.run_maintenance)(self);
    }

    fn run_maintenance_here(&self) {
        self.inner.shared.check_timeouts(true);
    }

    pub(crate) fn maybe_run_maintenance(&self) {
        self.inner.shared.check_timeouts(false);
    }

    /// Flushes the exporter. Traces still in progress (including roots that ended while other
    /// spans run in the background) are not cut short; see [`Tracer::shutdown`].
    ///
    /// # Errors
    /// [`LifecycleError`] from the exporter's flush.
    pub fn force_flush(&self, timeout: Duration) -> Result<(), LifecycleError> {
        match &self.inner.shared.dispatch {
            Some(d) => d.force_flush(timeout),
            None => Ok(()),
        }
    }

    /// Halts overdue traces, exports traces whose root ended while background spans still ran
    /// (as they are, as MLflow does at shutdown), counts and logs traces still in progress, then
    /// flushes and shuts the exporter and the OpenTelemetry provider down. Later spans are not
    /// recorded. Idempotent.
    ///
    /// # Errors
    /// [`LifecycleError::AlreadyShutdown`] on a second call; exporter failures otherwise.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), LifecycleError> {
        (self.inner.ops.shutdown)(self, timeout)
    }

    fn shutdown_here(&self, timeout: Duration) -> Result<(), LifecycleError> {
        let shared = &self.inner.shared;
        shared.check_timeouts(true);
        shared.flush_deferred();
        shared.abandon_in_progress();
        self.disable();
        let result = match &self.inner.shared.dispatch {
            Some(d) => d.shutdown(timeout),
            None => Ok(()),
        };
        let _ = self.inner.provider.shutdown_with_timeout(timeout);
        result
    }

    /// Runs `f` with this tracer as the current one: root spans started inside (on this thread)
    /// belong to it.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = Context::current()
            .with_value(crate::context::ScopedTracer(self.clone()))
            .attach();
        f()
    }

    /// Makes this tracer current for a future (across `.await`, on any thread).
    pub fn scope<F: Future>(&self, future: F) -> opentelemetry::context::WithContext<F> {
        use opentelemetry::context::FutureExt as _;
        future
            .with_context(Context::current().with_value(crate::context::ScopedTracer(self.clone())))
    }
}

/// Builds a [`Tracer`]. Code settings win over environment variables.
#[must_use]
#[derive(Clone)]
pub struct TracerBuilder {
    dispatch: Option<Arc<dyn Dispatch>>,
    dispatch_wrapper: Option<DispatchWrapper>,
    exporter: Option<Arc<dyn TraceExporter>>,
    sampling_ratio: f64,
    experiment_id: String,
    buffer_ttl: Duration,
    buffer_max_size: u64,
    trace_timeout: Option<Duration>,
    timeout_check_interval: Duration,
    preview_max_chars: usize,
    span_processors: Vec<SpanProcessorFn>,
    limits: SpanLimits,
    environment_metadata: bool,
    enabled: bool,
    destination: TraceDestination,
}

impl fmt::Debug for TracerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracerBuilder")
            .field("sampling_ratio", &self.sampling_ratio)
            .field("experiment_id", &self.experiment_id)
            .field("buffer_ttl", &self.buffer_ttl)
            .field("buffer_max_size", &self.buffer_max_size)
            .field("trace_timeout", &self.trace_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for TracerBuilder {
    fn default() -> Self {
        TracerBuilder {
            dispatch: None,
            dispatch_wrapper: None,
            exporter: None,
            sampling_ratio: 1.0,
            experiment_id: "0".to_owned(),
            buffer_ttl: Duration::from_secs(3600),
            buffer_max_size: 1000,
            trace_timeout: None,
            timeout_check_interval: Duration::from_secs(1),
            preview_max_chars: keys::PREVIEW_MAX_LENGTH_OSS,
            span_processors: Vec::new(),
            limits: SpanLimits::default(),
            environment_metadata: true,
            enabled: true,
            destination: TraceDestination::Experiment,
        }
    }
}

impl TracerBuilder {
    /// MLflow's defaults overridden by the environment: `MLFLOW_EXPERIMENT_ID`,
    /// `MLFLOW_TRACE_SAMPLING_RATIO`, `MLFLOW_TRACE_BUFFER_TTL_SECONDS`,
    /// `MLFLOW_TRACE_BUFFER_MAX_SIZE`, `MLFLOW_TRACE_TIMEOUT_SECONDS`,
    /// `MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS`, `MLFLOW_TRACING_DESTINATION`, and the span
    /// limits `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` (else `OTEL_ATTRIBUTE_COUNT_LIMIT`),
    /// `OTEL_SPAN_EVENT_COUNT_LIMIT`, `OTEL_SPAN_LINK_COUNT_LIMIT` (see [`SpanLimits`]).
    ///
    /// # Errors
    /// [`ConfigError::InvalidEnv`] when a variable does not parse (MLflow raises too). A sampling
    /// ratio outside `[0, 1]` is not an error: as in MLflow it logs a warning and samples
    /// everything.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env::process_env)
    }

    pub(crate) fn from_lookup(get: EnvLookup<'_>) -> Result<Self, ConfigError> {
        let mut b = Self {
            limits: SpanLimits::from_lookup(get),
            ..Self::default()
        };
        if let Some(id) = get(env::MLFLOW_EXPERIMENT_ID).filter(|s| !s.is_empty()) {
            b.experiment_id = id;
        }
        if let Some(ratio) = env::env_f64(get, env::MLFLOW_TRACE_SAMPLING_RATIO)? {
            if (0.0..=1.0).contains(&ratio) {
                b.sampling_ratio = ratio;
            } else {
                tracing::warn!(
                    "MLFLOW_TRACE_SAMPLING_RATIO={ratio} is outside [0, 1]; sampling every trace"
                );
            }
        }
        if let Some(s) = env::env_u64(get, env::MLFLOW_TRACE_BUFFER_TTL_SECONDS)? {
            b.buffer_ttl = Duration::from_secs(s);
        }
        if let Some(n) = env::env_u64(get, env::MLFLOW_TRACE_BUFFER_MAX_SIZE)? {
            b.buffer_max_size = n;
        }
        // 0 means "no timeout", as in MLflow.
        if let Some(s) = env::env_u64(get, env::MLFLOW_TRACE_TIMEOUT_SECONDS)?
            && s > 0
        {
            b.trace_timeout = Some(Duration::from_secs(s));
        }
        if let Some(s) = env::env_u64(get, env::MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS)? {
            b.timeout_check_interval = Duration::from_secs(s);
        }
        if let Some(d) =
            get(crate::destination::MLFLOW_TRACING_DESTINATION).filter(|s| !s.is_empty())
        {
            b.destination = TraceDestination::parse_uc_schema(&d)?;
        }
        Ok(b)
    }

    /// Exports through `exporter`, called inline on the thread that finishes a trace (see
    /// [`InlineDispatch`]); the export runtime offers a non-blocking worker instead.
    pub fn with_exporter(mut self, exporter: impl TraceExporter) -> Self {
        self.exporter = Some(Arc::new(exporter));
        self.dispatch = None;
        self
    }

    /// Where traces go (default: an MLflow experiment); see [`TraceDestination`].
    pub fn with_destination(mut self, destination: TraceDestination) -> Self {
        self.destination = destination;
        self
    }

    /// The destination set so far.
    pub fn destination(&self) -> &TraceDestination {
        &self.destination
    }

    /// Whether an exporter or a dispatcher was given (the facade's `init` picks the MLflow
    /// server exporter from `MLFLOW_TRACKING_URI` only when not).
    pub fn has_export(&self) -> bool {
        self.exporter.is_some() || self.dispatch.is_some()
    }

    /// Hands finished traces to `dispatch` (e.g. the export runtime's bounded queue).
    pub fn with_dispatch(mut self, dispatch: Arc<dyn Dispatch>) -> Self {
        self.dispatch = Some(dispatch);
        self.exporter = None;
        self
    }

    /// Replaces the exporter given to [`TracerBuilder::with_exporter`] by a dispatcher made from
    /// it (the facade's `init` puts it behind the export runtime's worker). Without an exporter,
    /// nothing changes.
    ///
    /// # Errors
    /// Whatever `make` returns.
    pub fn map_exporter<E>(
        mut self,
        make: impl FnOnce(Arc<dyn TraceExporter>) -> Result<Arc<dyn Dispatch>, E>,
    ) -> Result<Self, E> {
        if self.dispatch.is_none()
            && let Some(exporter) = self.exporter.take()
        {
            self.dispatch = Some(make(exporter)?);
        }
        Ok(self)
    }

    /// Replaces the dispatcher (given, or made from the exporter by
    /// [`TracerBuilder::map_exporter`]) by a wrapper made from it, e.g. notebook display in
    /// front of the export worker. Without one, nothing changes.
    pub fn map_dispatch(
        mut self,
        wrap: impl FnOnce(Arc<dyn Dispatch>) -> Arc<dyn Dispatch>,
    ) -> Self {
        if let Some(dispatch) = self.dispatch.take() {
            self.dispatch = Some(wrap(dispatch));
        }
        self
    }

    /// Wraps the dispatcher (given, or made from the exporter) each time a tracer is built from
    /// these settings: once for [`TracerBuilder::build`], and in an evcxr notebook once more
    /// for each cell's copy of an installed tracer (each cell links its own copy of this
    /// crate), so a wrapper can keep per-cell state (the notebook display collects the traces
    /// one cell finished). Replaces an earlier wrapper.
    pub fn with_dispatch_wrapper(
        mut self,
        wrap: impl Fn(Arc<dyn Dispatch>) -> Arc<dyn Dispatch> + Send + Sync + 'static,
    ) -> Self {
        self.dispatch_wrapper = Some(Arc::new(wrap));
        self
    }

    /// Fraction of traces to record, in `[0, 1]` (MLflow's `MLFLOW_TRACE_SAMPLING_RATIO`).
    pub fn with_sampling_ratio(mut self, ratio: f64) -> Self {
        self.sampling_ratio = ratio;
        self
    }

    /// The experiment new traces belong to (default `"0"`).
    pub fn with_experiment_id(mut self, experiment_id: impl Into<String>) -> Self {
        self.experiment_id = experiment_id.into();
        self
    }

    /// How long an in-progress trace may stay buffered before it is evicted (default 1 h).
    pub fn with_buffer_ttl(mut self, ttl: Duration) -> Self {
        self.buffer_ttl = ttl;
        self
    }

    /// How many traces may be in progress at once; the oldest is evicted beyond (default 1000).
    pub fn with_buffer_max_size(mut self, max_size: u64) -> Self {
        self.buffer_max_size = max_size;
        self
    }

    /// Halts traces older than `timeout`: the root ends with ERROR and the trace is exported.
    pub fn with_trace_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.trace_timeout = timeout;
        self
    }

    /// How often the timeout is checked (default 1 s).
    pub fn with_timeout_check_interval(mut self, interval: Duration) -> Self {
        self.timeout_check_interval = interval;
        self
    }

    /// Preview length in characters (1000 for OSS MLflow, 10 000 for Databricks).
    pub fn with_preview_max_chars(mut self, chars: usize) -> Self {
        self.preview_max_chars = chars;
        self
    }

    /// Adds a user span processor (MLflow's `configure(span_processors=[...])`).
    pub fn with_span_processor(
        mut self,
        processor: impl Fn(&mut Span) + Send + Sync + 'static,
    ) -> Self {
        self.span_processors.push(Arc::new(processor));
        self
    }

    /// How many user attributes, events and links a span keeps (MLflow's own attributes are
    /// always kept); see [`SpanLimits`].
    pub fn with_span_limits(mut self, limits: SpanLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether to add the environment metadata (user, source, git) to every trace (default on).
    pub fn with_environment_metadata(mut self, on: bool) -> Self {
        self.environment_metadata = on;
        self
    }

    /// Starts disabled (see [`Tracer::enable`]).
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Builds the tracer.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] for a sampling ratio outside `[0, 1]` or a zero buffer size.
    pub fn build(self) -> Result<Tracer, ConfigError> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(ConfigError::OutOfRange {
                setting: "sampling ratio",
                allowed: "within [0, 1]",
                value: self.sampling_ratio.to_string(),
            });
        }
        if self.buffer_max_size == 0 {
            return Err(ConfigError::OutOfRange {
                setting: "trace buffer size",
                allowed: "at least 1",
                value: "0".into(),
            });
        }
        Ok(self.build_valid())
    }

    /// Builds from settings known to be valid (the defaults, or checked by `build`).
    pub(crate) fn build_valid(self) -> Tracer {
        self.build_sharing(Arc::default(), Arc::default())
    }

    /// Builds with these counters and last-active trace id (shared with the tracers other evcxr
    /// cells build from the same settings).
    pub(crate) fn build_sharing(
        self,
        stats: Arc<Stats>,
        last_active_trace_id: Arc<Mutex<Option<String>>>,
    ) -> Tracer {
        let recipe = crate::process_global::in_evcxr().then(|| Box::new(self.clone()));
        let dispatch: Option<Arc<dyn Dispatch>> = match (self.dispatch, self.exporter) {
            (Some(d), _) => Some(d),
            (None, Some(e)) => Some(Arc::new(
                InlineDispatch::from_arc(e).with_stats(stats.clone()),
            )),
            (None, None) => None,
        };
        let dispatch = match (dispatch, &self.dispatch_wrapper) {
            (Some(d), Some(wrap)) => Some(wrap(d)),
            (d, _) => d,
        };
        if self.environment_metadata {
            // Resolve once now, off the span path.
            let _ = env::environment_metadata();
        }
        let shared = Arc::new(Shared {
            buffer: TraceBuffer::new(
                self.trace_timeout.is_none().then_some(self.buffer_ttl),
                self.buffer_max_size,
                stats.clone(),
            ),
            stats,
            wants_spans: dispatch.as_ref().is_some_and(|d| d.wants_spans()),
            dispatch,
            span_processors: self.span_processors,
            limits: self.limits,
            experiment_id: self.experiment_id,
            destination: self.destination,
            warned_no_request_id: AtomicBool::new(false),
            environment_metadata: self.environment_metadata,
            preview_max_chars: self.preview_max_chars,
            trace_timeout: self.trace_timeout,
            timeout_check_interval: self.timeout_check_interval,
            created: Instant::now(),
            last_timeout_check_ms: AtomicU64::new(0),
            last_active_trace_id,
            enabled: AtomicBool::new(self.enabled),
        });
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(MlflowRatioSampler::new(
                self.sampling_ratio,
            ))))
            .with_id_generator(RandomIdGenerator::default())
            // The SDK keeps everything; `SpanLimits` applies MLflow-aware limits instead.
            .with_span_limits(opentelemetry_sdk::trace::SpanLimits {
                max_events_per_span: u32::MAX,
                max_attributes_per_span: u32::MAX,
                max_links_per_span: u32::MAX,
                max_attributes_per_event: u32::MAX,
                max_attributes_per_link: u32::MAX,
            })
            .with_span_processor(MlflowSpanProcessor {
                shared: shared.clone(),
            })
            .build();
        let otel_tracer = provider.tracer("mlflow-tracing");
        Tracer {
            inner: Arc::new(TracerInner {
                shared,
                provider,
                otel_tracer,
                ops: &OPS,
                recipe,
            }),
        }
    }
}

/// What another evcxr cell needs to build its own copy of a tracer.
pub(crate) struct NotebookRecipe {
    /// The settings, with the tracer's dispatch.
    pub(crate) builder: TracerBuilder,
    /// The counters, shared.
    pub(crate) stats: Arc<Stats>,
    /// The last-active trace id, shared.
    pub(crate) last_active_trace_id: Arc<Mutex<Option<String>>>,
}

impl Tracer {
    /// This tracer's [`NotebookRecipe`]; `None` outside evcxr.
    pub(crate) fn notebook_recipe(&self) -> Option<NotebookRecipe> {
        let builder = self.inner.recipe.as_deref()?.clone();
        let shared = &self.inner.shared;
        Some(NotebookRecipe {
            builder,
            stats: shared.stats.clone(),
            last_active_trace_id: shared.last_active_trace_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_sampler_follows_mlflow_rule() {
        let half = MlflowRatioSampler::new(0.5);
        // Only the low 64 bits count.
        assert!(half.samples(TraceId::from_int(0xffff_0000_0000_0000_7fff_ffff_ffff_ffff)));
        assert!(!half.samples(TraceId::from_int(0x8000_0000_0000_0000)));
        assert!(MlflowRatioSampler::new(1.0).samples(TraceId::from_int(u128::MAX)));
        assert!(!MlflowRatioSampler::new(0.0).samples(TraceId::from_int(0)));
    }

    #[test]
    fn env_settings_are_read_and_checked() {
        let env = |n: &str| match n {
            "MLFLOW_EXPERIMENT_ID" => Some("42".to_owned()),
            "MLFLOW_TRACE_SAMPLING_RATIO" => Some("0.25".to_owned()),
            "MLFLOW_TRACE_TIMEOUT_SECONDS" => Some("7".to_owned()),
            "MLFLOW_TRACE_BUFFER_MAX_SIZE" => Some("5".to_owned()),
            _ => None,
        };
        let b = TracerBuilder::from_lookup(&env).unwrap();
        assert_eq!(b.experiment_id, "42");
        assert_eq!(b.sampling_ratio, 0.25);
        assert_eq!(b.trace_timeout, Some(Duration::from_secs(7)));
        assert_eq!(b.buffer_max_size, 5);
        assert_eq!(b.buffer_ttl, Duration::from_secs(3600));

        let out_of_range = |n: &str| (n == "MLFLOW_TRACE_SAMPLING_RATIO").then(|| "2".to_owned());
        assert_eq!(
            TracerBuilder::from_lookup(&out_of_range)
                .unwrap()
                .sampling_ratio,
            1.0
        );
        let garbage = |n: &str| (n == "MLFLOW_TRACE_BUFFER_TTL_SECONDS").then(|| "soon".to_owned());
        assert!(matches!(
            TracerBuilder::from_lookup(&garbage),
            Err(ConfigError::InvalidEnv {
                name: "MLFLOW_TRACE_BUFFER_TTL_SECONDS",
                ..
            })
        ));
        assert!(Tracer::builder().with_sampling_ratio(1.5).build().is_err());
    }
}
