//! The tracer: a trace manager with its settings, the ids and sampling of new spans, and an
//! isolated OpenTelemetry provider whose span processor feeds the same manager.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlflow_tracing_entities::{MlflowTraceId, SpanId, TraceId};
use opentelemetry::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SdkTracer, SdkTracerProvider,
};

use crate::destination::TraceDestination;
use crate::error::LifecycleError;
use crate::export::{Dispatch, InlineDispatch, TraceExporter};
use crate::finish::SpanProcessorFn;
use crate::instrument::Instrumented;
use crate::limits::SpanLimits;
use crate::manager::{ManagerParts, TraceManager};
use crate::processor::MlflowSpanProcessor;
use crate::sampler::MlflowRatioSampler;
use crate::stats::{Stats, TracerStats};
use crate::util::lock;

/// Wraps a tracer's dispatcher (see
/// [`TracerBuilder::with_dispatch_wrapper`](crate::TracerBuilder::with_dispatch_wrapper)).
pub type DispatchWrapper = Arc<dyn Fn(Arc<dyn Dispatch>) -> Arc<dyn Dispatch> + Send + Sync>;

/// The OpenTelemetry SDK's limits for spans started through its API (the span API does not use
/// the SDK): generous, since `SpanLimits` applies the MLflow-aware limits when the span is
/// converted, but finite, since the SDK appends every set of an attribute and every event until
/// the span ends. What the SDK drops is counted too.
fn sdk_limits(limits: &SpanLimits) -> opentelemetry_sdk::trace::SpanLimits {
    let room = |n: u32| n.saturating_mul(4).saturating_add(64);
    opentelemetry_sdk::trace::SpanLimits {
        max_events_per_span: room(limits.max_events),
        max_attributes_per_span: room(limits.max_attributes),
        max_links_per_span: room(limits.max_links),
        max_attributes_per_event: 128,
        max_attributes_per_link: 128,
    }
}

/// Everything a tracer is built from (what `TracerBuilder` collects).
#[derive(Clone)]
pub(crate) struct TracerSettings {
    pub(crate) dispatch: Option<Arc<dyn Dispatch>>,
    pub(crate) dispatch_wrapper: Option<DispatchWrapper>,
    pub(crate) exporter: Option<Arc<dyn TraceExporter>>,
    pub(crate) sampling_ratio: f64,
    pub(crate) experiment_id: String,
    pub(crate) buffer_ttl: Duration,
    pub(crate) buffer_max_size: u64,
    pub(crate) trace_timeout: Option<Duration>,
    pub(crate) timeout_check_interval: Duration,
    pub(crate) preview_max_chars: usize,
    pub(crate) span_processors: Vec<SpanProcessorFn>,
    pub(crate) limits: SpanLimits,
    pub(crate) environment_metadata: bool,
    pub(crate) enabled: bool,
    pub(crate) destination: TraceDestination,
}

struct TracerInner {
    manager: Arc<TraceManager>,
    sampler: MlflowRatioSampler,
    ids: RandomIdGenerator,
    provider: SdkTracerProvider,
    otel_tracer: SdkTracer,
    /// In an evcxr kernel: the settings it was built from, so another cell's copy of this crate
    /// can build its own tracer sharing this one's export path (see `crate::global`).
    recipe: Option<Box<TracerSettings>>,
}

/// An MLflow tracer: the in-memory trace manager, the exporter, and its own OpenTelemetry tracer
/// provider (isolated from the global one, as in MLflow).
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
            .field("manager", &self.inner.manager)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Tracer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Context value: the tracer for root spans started in this scope.
#[derive(Clone)]
pub(crate) struct ScopedTracer(pub(crate) Tracer);

impl Tracer {
    /// Builds a tracer from valid settings, with these counters and last-active trace id
    /// (shared with the tracers other evcxr cells build from the same settings).
    pub(crate) fn from_settings(
        settings: TracerSettings,
        stats: Arc<Stats>,
        last_active_trace_id: Arc<Mutex<Option<MlflowTraceId>>>,
    ) -> Tracer {
        let recipe = crate::process_global::in_evcxr().then(|| Box::new(settings.clone()));
        let dispatch: Option<Arc<dyn Dispatch>> = match (settings.dispatch, settings.exporter) {
            (Some(d), _) => Some(d),
            (None, Some(e)) => Some(Arc::new(
                InlineDispatch::from_arc(e).with_stats(stats.clone()),
            )),
            (None, None) => None,
        };
        let dispatch = match (dispatch, &settings.dispatch_wrapper) {
            (Some(d), Some(wrap)) => Some(wrap(d)),
            (d, _) => d,
        };
        if settings.environment_metadata {
            // Resolve once now, off the span path.
            let _ = crate::env::environment_metadata();
        }
        let manager = Arc::new(TraceManager::new(ManagerParts {
            policy: settings
                .destination
                .policy(settings.experiment_id, settings.environment_metadata)
                .into(),
            dispatch,
            stats,
            span_processors: settings.span_processors,
            limits: settings.limits,
            buffer_ttl: settings
                .trace_timeout
                .is_none()
                .then_some(settings.buffer_ttl),
            buffer_max_size: settings.buffer_max_size,
            preview_max_chars: settings.preview_max_chars,
            trace_timeout: settings.trace_timeout,
            timeout_check_interval: settings.timeout_check_interval,
            last_active_trace_id,
            enabled: settings.enabled,
        }));
        let sampler = MlflowRatioSampler::new(settings.sampling_ratio);
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(sampler)))
            .with_id_generator(RandomIdGenerator::default())
            .with_span_limits(sdk_limits(&settings.limits))
            .with_span_processor(MlflowSpanProcessor {
                manager: manager.clone(),
            })
            .build();
        let otel_tracer = provider.tracer("mlflow-tracing");
        Tracer {
            inner: Arc::new(TracerInner {
                manager,
                sampler,
                ids: RandomIdGenerator::default(),
                provider,
                otel_tracer,
                recipe,
            }),
        }
    }

    pub(crate) fn manager(&self) -> &Arc<TraceManager> {
        &self.inner.manager
    }

    /// A new random trace id.
    pub(crate) fn new_trace_id(&self) -> TraceId {
        TraceId::from(self.inner.ids.new_trace_id())
    }

    /// A new random span id.
    pub(crate) fn new_span_id(&self) -> SpanId {
        SpanId::from(self.inner.ids.new_span_id())
    }

    /// Whether a new trace with this id is recorded (MLflow's sampling ratio).
    pub(crate) fn samples(&self, trace_id: TraceId) -> bool {
        self.inner.sampler.samples(trace_id)
    }

    /// The OpenTelemetry tracer of this tracer's provider. Spans started on it with
    /// OpenTelemetry's API become MLflow spans of this tracer too.
    pub fn otel_tracer(&self) -> &SdkTracer {
        &self.inner.otel_tracer
    }

    /// Counters of started, finished, evicted, timed-out and dropped traces and spans.
    pub fn stats(&self) -> TracerStats {
        self.inner.manager.stats.snapshot()
    }

    /// Number of traces in progress.
    pub fn in_progress_traces(&self) -> u64 {
        self.inner.manager.in_progress()
    }

    /// The MLflow trace id of the last trace whose root span ended.
    pub fn last_active_trace_id(&self) -> Option<String> {
        lock(&self.inner.manager.last_active_trace_id)
            .clone()
            .map(String::from)
    }

    /// Whether spans are recorded. Disabled tracers hand out no-op spans.
    pub fn is_enabled(&self) -> bool {
        self.inner.manager.enabled.load(Ordering::Relaxed)
    }

    /// Stops recording: new spans are no-ops; traces in progress still finish.
    pub fn disable(&self) {
        self.inner.manager.enabled.store(false, Ordering::Relaxed);
    }

    /// Records spans again.
    pub fn enable(&self) {
        self.inner.manager.enabled.store(true, Ordering::Relaxed);
    }

    /// Applies buffer expiry and halts traces older than `MLFLOW_TRACE_TIMEOUT_SECONDS`.
    ///
    /// The span API also does this lazily when a trace starts; the export runtime calls it on a
    /// timer so an idle process still halts and evicts.
    pub fn run_maintenance(&self) {
        self.inner.manager.check_timeouts(true);
    }

    pub(crate) fn maybe_run_maintenance(&self) {
        self.inner.manager.check_timeouts(false);
    }

    /// Flushes the exporter. Traces still in progress (including roots that ended while other
    /// spans run in the background) are not cut short; see [`Tracer::shutdown`].
    ///
    /// # Errors
    /// [`LifecycleError`] from the exporter's flush.
    pub fn force_flush(&self, timeout: Duration) -> Result<(), LifecycleError> {
        match &self.inner.manager.dispatch {
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
        let manager = &self.inner.manager;
        manager.check_timeouts(true);
        manager.flush_deferred();
        manager.abandon_in_progress();
        self.disable();
        let result = match &manager.dispatch {
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
            .with_value(ScopedTracer(self.clone()))
            .attach();
        f()
    }

    /// Makes this tracer current for a future (across `.await`, on any thread).
    pub fn scope<F: Future>(&self, future: F) -> Instrumented<F> {
        Instrumented::new(
            future,
            Context::current().with_value(ScopedTracer(self.clone())),
        )
    }

    /// What another evcxr cell needs to build its own copy of this tracer; `None` outside
    /// evcxr.
    pub(crate) fn notebook_recipe(&self) -> Option<NotebookRecipe> {
        let settings = self.inner.recipe.as_deref()?.clone();
        let manager = &self.inner.manager;
        Some(NotebookRecipe {
            settings,
            stats: manager.stats.clone(),
            last_active_trace_id: manager.last_active_trace_id.clone(),
        })
    }
}

/// What another evcxr cell needs to build its own copy of a tracer.
pub(crate) struct NotebookRecipe {
    /// The settings, with the tracer's dispatch and dispatch wrapper.
    pub(crate) settings: TracerSettings,
    /// The counters, shared.
    pub(crate) stats: Arc<Stats>,
    /// The last-active trace id, shared.
    pub(crate) last_active_trace_id: Arc<Mutex<Option<MlflowTraceId>>>,
}
