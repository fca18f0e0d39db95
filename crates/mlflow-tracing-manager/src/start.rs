//! Starting spans: [`start_span`] and its options, and how a new span finds its parent, its
//! trace and its sampling decision.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use mlflow_tracing_entities::json::{string_attribute_json, to_attribute_json};
use mlflow_tracing_entities::{SpanLogLevel, SpanType, keys};
use opentelemetry::Context;
use serde::Serialize;

use crate::global::global_tracer;
use crate::in_progress::HaltRoot;
use crate::live::{ActiveSpan, LiveSpan, LiveSpanInner, LiveState, SpanGuard};
use crate::parent::RemoteParent;
use crate::sampler::MlflowRatioSampler;
use crate::scope::TraceContext;
use crate::tracer::{ScopedTracer, Tracer};
use crate::util::now_ns;

/// Starts a span named `name`: configure it, then [`StartSpan::start`] (current until dropped)
/// or [`StartSpan::start_detached`] (MLflow's `start_span_no_context`).
///
/// The parent is, in order: [`StartSpan::parent`], the current span, a remote parent continued
/// from `traceparent` headers; otherwise the span is the root of a new trace of the current
/// tracer ([`Tracer::in_scope`], else the global one).
pub fn start_span(name: impl Into<Cow<'static, str>>) -> StartSpan {
    StartSpan {
        name: name.into(),
        span_type: None,
        inputs: None,
        attributes: Vec::new(),
        parent: None,
        tracer: None,
        experiment_id: None,
        start_time_ns: None,
        function_name: None,
        description: None,
        log_level: None,
        sampling_ratio: None,
        serialization_errors: Vec::new(),
        attribute_capacity: 0,
    }
}

/// Options of a span to start (see [`start_span`]).
#[must_use = "call .start() or .start_detached()"]
pub struct StartSpan {
    name: Cow<'static, str>,
    span_type: Option<SpanType>,
    inputs: Option<String>,
    attributes: Vec<(String, String)>,
    parent: Option<LiveSpan>,
    tracer: Option<Tracer>,
    experiment_id: Option<String>,
    start_time_ns: Option<u64>,
    pub(crate) function_name: Option<&'static str>,
    description: Option<String>,
    log_level: Option<SpanLogLevel>,
    sampling_ratio: Option<f64>,
    serialization_errors: Vec<String>,
    attribute_capacity: usize,
}

impl fmt::Debug for StartSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartSpan")
            .field("name", &self.name)
            .field("span_type", &self.span_type)
            .finish_non_exhaustive()
    }
}

impl StartSpan {
    fn encode<T: Serialize + ?Sized>(&mut self, what: &str, value: &T) -> String {
        match to_attribute_json(value) {
            Ok(json) => json,
            Err(err) => {
                let text = format!("<unserializable {what}: {err}>");
                self.serialization_errors.push(text.clone());
                string_attribute_json(&text)
            }
        }
    }

    /// A human-readable description (`mlflow.spanDescription`).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The log level (`mlflow.spanLogLevel`; otherwise the span type's default at end).
    pub fn log_level(mut self, level: SpanLogLevel) -> Self {
        self.log_level = Some(level);
        self
    }

    /// When this span starts a trace, the sampling ratio for that decision instead of the
    /// tracer's (MLflow's `sampling_ratio_override`); a child follows its parent as always. A
    /// ratio outside 0..=1 (or NaN) is ignored with a warning, the tracer's used.
    pub fn sampling_ratio(mut self, ratio: f64) -> Self {
        if (0.0..=1.0).contains(&ratio) {
            self.sampling_ratio = Some(ratio);
        } else {
            crate::notice::visible(|| {
                tracing::warn!(ratio, "sampling_ratio must be between 0.0 and 1.0; ignored")
            });
        }
        self
    }

    /// The span type (default `UNKNOWN`).
    pub fn span_type(mut self, span_type: impl Into<SpanType>) -> Self {
        self.span_type = Some(span_type.into());
        self
    }

    /// The inputs.
    pub fn inputs<T: Serialize + ?Sized>(mut self, inputs: &T) -> Self {
        let json = self.encode("inputs", inputs);
        self.inputs = Some(json);
        self
    }

    /// An attribute, stored as `json.dumps(value)`.
    pub fn attribute<T: Serialize + ?Sized>(mut self, key: impl Into<String>, value: &T) -> Self {
        let key = key.into();
        let json = self.encode(&key, value);
        self.attributes.push((key, json));
        self
    }

    /// Room for `n` attributes to be set after the start, inputs and outputs included,
    /// reserved at once (a span that sets many, such as a `tracing` span with its fields, does
    /// not grow its storage one by one). By default: room for inputs and outputs.
    pub fn attribute_capacity(mut self, n: usize) -> Self {
        self.attribute_capacity = n;
        self
    }

    /// An explicit parent (instead of the current span).
    pub fn parent(mut self, parent: &LiveSpan) -> Self {
        self.parent = Some(parent.clone());
        self
    }

    /// The tracer for a root span (instead of the current one).
    pub fn tracer(mut self, tracer: &Tracer) -> Self {
        self.tracer = Some(tracer.clone());
        self
    }

    /// The experiment of a new trace (root spans only; MLflow's `trace_destination`).
    pub fn experiment_id(mut self, experiment_id: impl Into<String>) -> Self {
        self.experiment_id = Some(experiment_id.into());
        self
    }

    /// An explicit start time (ns since the Unix epoch), recorded as
    /// `mlflow.spanStartTimeNs` too.
    pub fn start_time_ns(mut self, start_time_ns: u64) -> Self {
        self.start_time_ns = Some(start_time_ns);
        self
    }

    /// Starts the span and makes it current until the guard drops; the guard ends it.
    pub fn start(self) -> SpanGuard {
        let span = self.start_detached();
        let entered = span.inner.is_some().then(|| span.enter());
        SpanGuard {
            span,
            _entered: entered,
        }
    }

    /// The attributes the span starts with, within the limits.
    fn initial_state(mut self, tracer: &Tracer, is_root: bool) -> LiveState {
        let manager = tracer.manager();
        for e in &self.serialization_errors {
            manager.stats.serialization_error("a span value", e);
        }
        let max_user = manager.limits.max_attributes;
        let span_type = self.span_type.as_ref().unwrap_or(&SpanType::Unknown);
        // Exactly the room for what is known now and what is set later: the caller's room
        // when it says (a `tracing` span's fields), else inputs and outputs. Each slot is 48
        // bytes a queued span keeps; no more than the attribute limit allows.
        let known = self.attributes.len()
            + usize::from(self.description.is_some())
            + usize::from(self.log_level.is_some())
            + usize::from(self.function_name.is_some())
            + usize::from(is_root && self.experiment_id.is_some())
            + usize::from(self.start_time_ns.is_some());
        let later = if self.attribute_capacity > 0 {
            self.attribute_capacity
        } else {
            2
        };
        let most = usize::try_from(max_user)
            .unwrap_or(usize::MAX)
            .saturating_add(crate::limits::RESERVED_KEYS);
        let room = known.saturating_add(later).min(most);
        let mut state = LiveState::starting(span_type.attribute_json().into(), room);
        let mut dropped = 0;
        let mut set = |key: Cow<'static, str>, json: String| {
            if !state.set(key, json.into(), max_user) {
                dropped += 1;
            }
        };
        // MLflow's order: the attributes given at start right after the type, then the
        // description and log level, then (`#[trace]`) the function name and inputs.
        for (k, v) in std::mem::take(&mut self.attributes) {
            set(Cow::Owned(k), v);
        }
        if let Some(d) = &self.description {
            set(
                Cow::Borrowed(keys::span::DESCRIPTION),
                string_attribute_json(d),
            );
        }
        if let Some(level) = self.log_level {
            set(
                Cow::Borrowed(keys::span::LOG_LEVEL),
                level.as_i64().to_string(),
            );
        }
        if let Some(f) = self.function_name {
            set(
                Cow::Borrowed(keys::span::FUNCTION_NAME),
                string_attribute_json(f),
            );
        }
        if let Some(inputs) = self.inputs {
            set(Cow::Borrowed(keys::span::INPUTS), inputs);
        }
        if is_root && let Some(id) = &self.experiment_id {
            set(
                Cow::Borrowed(keys::span::EXPERIMENT_ID),
                string_attribute_json(id),
            );
        }
        if let Some(ns) = self.start_time_ns {
            set(Cow::Borrowed(keys::span::START_TIME_NS), ns.to_string());
        }
        if dropped > 0 {
            manager.stats.attributes_dropped(dropped);
        }
        state
    }

    /// Starts the span without making it current; call [`LiveSpan::end`].
    pub fn start_detached(self) -> LiveSpan {
        let Some((tracer, parent)) = resolve_parent(self.parent.as_ref(), self.tracer.as_ref())
        else {
            return LiveSpan::noop();
        };
        if !tracer.is_enabled()
            || Context::map_current(Context::is_telemetry_suppressed)
            || TraceContext::disabled_here()
        {
            return LiveSpan::noop();
        }
        let is_root = matches!(parent, Parent::None);
        if is_root {
            tracer.maybe_run_maintenance();
        }
        let start_time_ns = self.start_time_ns.unwrap_or_else(now_ns);
        let span_id = tracer.new_span_id();
        let manager = tracer.manager();
        let (trace_id, parent_id, recording, trace_state, entry) = match &parent {
            Parent::None => {
                let trace_id = tracer.new_trace_id();
                let sampled = match self.sampling_ratio {
                    Some(ratio) => MlflowRatioSampler::new(ratio).samples(trace_id),
                    None => tracer.samples(trace_id),
                };
                let entry = sampled
                    .then(|| {
                        manager.start_trace(
                            trace_id,
                            self.name.clone(),
                            self.experiment_id.clone(),
                            start_time_ns,
                        )
                    })
                    .flatten();
                (trace_id, None, sampled, None, entry)
            }
            Parent::Local(p) => {
                let entry = p
                    .recording
                    .then(|| p.entry.clone().or_else(|| manager.entry(p.trace_id)));
                (
                    p.trace_id,
                    Some(p.span_id),
                    p.recording,
                    p.trace_state.clone(),
                    entry.flatten(),
                )
            }
            Parent::Remote(r) => {
                let remote = &r.remote;
                let entry = remote
                    .sampled
                    .then(|| manager.entry(remote.trace_id))
                    .flatten();
                (
                    remote.trace_id,
                    Some(remote.span_id),
                    remote.sampled,
                    remote.trace_state.as_deref().map(Arc::from),
                    entry,
                )
            }
        };
        if let Some(entry) = &entry {
            entry.span_started(span_id, is_root);
        }
        let name = self.name.clone();
        let state = if recording {
            self.initial_state(&tracer, is_root)
        } else {
            LiveState::default()
        };
        let inner = Arc::new(LiveSpanInner {
            tracer,
            entry,
            trace_id,
            span_id,
            parent_id,
            recording,
            trace_state,
            name,
            start_time_ns,
            ended: AtomicBool::new(false),
            outputs_set: AtomicBool::new(false),
            state: Mutex::new(state),
        });
        if is_root && let Some(entry) = &inner.entry {
            let root: Weak<dyn HaltRoot> = Arc::downgrade(&inner) as Weak<LiveSpanInner>;
            entry.lock().root_span = Some(root);
        }
        LiveSpan { inner: Some(inner) }
    }
}

enum Parent {
    None,
    Local(Arc<LiveSpanInner>),
    Remote(RemoteParent),
}

/// Finds the tracer and parent of a new span; `None` means "record nothing".
fn resolve_parent(
    explicit: Option<&LiveSpan>,
    tracer: Option<&Tracer>,
) -> Option<(Tracer, Parent)> {
    if let Some(p) = explicit {
        let inner = p.inner.clone()?;
        return Some((inner.tracer.clone(), Parent::Local(inner)));
    }
    let (active, scoped) = Context::map_current(|cx| {
        (
            cx.get::<ActiveSpan>().cloned(),
            cx.get::<ScopedTracer>().map(|s| s.0.clone()),
        )
    });
    match active {
        Some(ActiveSpan::Local(active)) => {
            let inner = active.inner?; // children of a no-op span are no-ops
            // An ended parent still is one while its trace is in progress (a task spawned with
            // `in_current_span` may outlive its parent, as in MLflow). Once the trace is gone
            // (the leaked guard of a halted or evicted trace, say), new spans start a new trace.
            let trace_gone = inner.ended.load(Ordering::Acquire)
                && inner
                    .entry
                    .as_ref()
                    .is_some_and(|e| e.is_evicted() || e.lock().popped);
            if !trace_gone {
                return Some((inner.tracer.clone(), Parent::Local(inner)));
            }
        }
        Some(ActiveSpan::Remote(remote)) => {
            return Some((remote.tracer.clone(), Parent::Remote(remote)));
        }
        None => {}
    }
    let tracer = tracer.cloned().or(scoped).or_else(global_tracer)?;
    Some((tracer, Parent::None))
}
