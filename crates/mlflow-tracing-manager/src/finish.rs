//! Finishing what the caller ended: a span's end rules (MLflow's log level, the destination's
//! root-end attributes, the user's span processors) and a completed trace's finalization
//! (previews, token usage, state). The caller's thread only records; this work runs where the
//! dispatch says ([`Dispatch::dispatch_trace`](crate::Dispatch::dispatch_trace)): on the export
//! worker for the runtime's worker, inline for the other dispatches.

use std::borrow::Cow;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use compact_str::CompactString;
use mlflow_tracing_entities::{
    Link, Span, SpanAttributes, SpanEvent, SpanId, SpanLogLevel, SpanParts, SpanStatus, SpanType,
    Trace, TraceId, TraceInfo, TraceLocation, TraceState, keys,
};
use serde_json::Value;

use crate::items::{ExportItem, TraceItem};
use crate::policy::TracePolicy;
use crate::stats::Stats;
use crate::util::panic_message;

/// A user span processor: runs on every span as it ends, on the thread that ends it, before
/// export, and may edit it (e.g. to redact inputs). A panic inside is caught, counted and
/// logged; the span is exported as it was.
pub type SpanProcessorFn = Arc<dyn Fn(&mut Span) + Send + Sync>;

/// Work a span asks to have done on it where it is finished (see
/// [`LiveSpan::finish_with`](crate::LiveSpan::finish_with)). A panic inside is caught, counted
/// and logged, as for span processors.
pub type FinishHook = fn(&mut Span);

/// A span the span API ended, as recorded: converted to an MLflow [`Span`] when its trace is
/// finalized.
#[derive(Debug)]
pub(crate) struct RawSpan {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_id: Option<SpanId>,
    pub(crate) name: Cow<'static, str>,
    pub(crate) start_time_ns: u64,
    pub(crate) end_time_ns: u64,
    /// An ERROR status, events and links, behind one pointer: most spans have none, and every
    /// ended span waits in its trace's list until the trace is finalized.
    pub(crate) rare: Option<Box<RareParts>>,
    /// Attribute values as MLflow stores them (JSON text), in order, keys distinct. Kept as
    /// text (half the size of a JSON value) while the span waits for its trace.
    pub(crate) attributes: Vec<(Cow<'static, str>, CompactString)>,
    pub(crate) finish_hook: Option<FinishHook>,
}

/// What few spans have ([`RawSpan::rare`]).
#[derive(Debug, Default)]
pub(crate) struct RareParts {
    /// The message of an ERROR status; `None`: the span ends OK.
    pub(crate) error: Option<String>,
    pub(crate) events: Vec<SpanEvent>,
    pub(crate) links: Vec<Link>,
}

impl RareParts {
    /// `None` when there is nothing rare (OK, no events, no links).
    pub(crate) fn boxed(
        error: Option<String>,
        events: Vec<SpanEvent>,
        links: Vec<Link>,
    ) -> Option<Box<RareParts>> {
        (error.is_some() || !events.is_empty() || !links.is_empty()).then(|| {
            Box::new(RareParts {
                error,
                events,
                links,
            })
        })
    }
}

impl RawSpan {
    /// The span, with its trace's id `request_id` as `mlflow.traceRequestId` (first, unless
    /// among its attributes).
    fn into_span(self, request_id: &str) -> Span {
        // Room for the request id and the log level the end rules add.
        let mut attributes = Vec::with_capacity(self.attributes.len() + 2);
        if !self
            .attributes
            .iter()
            .any(|(k, _)| k == keys::span::REQUEST_ID)
        {
            attributes.push((
                Cow::Borrowed(keys::span::REQUEST_ID),
                Value::String(mlflow_tracing_entities::json::string_attribute_json(
                    request_id,
                )),
            ));
        }
        attributes.extend(
            self.attributes
                .into_iter()
                .map(|(k, json)| (k, Value::String(json.into_string()))),
        );
        let attributes = SpanAttributes::from_distinct(attributes);
        let RareParts {
            error,
            events,
            links,
        } = self.rare.map(|rare| *rare).unwrap_or_default();
        Span::from(SpanParts {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_id: self.parent_id,
            name: self.name.into_owned(),
            start_time_ns: self.start_time_ns,
            end_time_ns: Some(self.end_time_ns),
            status: error.map_or_else(SpanStatus::ok, SpanStatus::error),
            events,
            links,
            attributes,
        })
    }
}

/// An ended span waiting in its trace.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Already through the end rules (it was also sent to a span-logging exporter). Boxed, as
    /// the next: the common variant, `Raw`, is smaller, and each ended span waits in a slot.
    Done(Box<Span>),
    /// An MLflow span still to go through the end rules (OpenTelemetry-API spans).
    Span(Box<Span>),
    /// A span API span, still to convert.
    Raw(RawSpan),
}

impl Ended {
    pub(crate) fn span_id(&self) -> SpanId {
        match self {
            Ended::Done(s) | Ended::Span(s) => s.span_id(),
            Ended::Raw(r) => r.span_id,
        }
    }

    pub(crate) fn trace_id(&self) -> TraceId {
        match self {
            Ended::Done(s) | Ended::Span(s) => s.trace_id(),
            Ended::Raw(r) => r.trace_id,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Ended::Done(s) | Ended::Span(s) => s.name(),
            Ended::Raw(r) => &r.name,
        }
    }

    pub(crate) fn is_root(&self) -> bool {
        match self {
            Ended::Done(s) | Ended::Span(s) => s.parent_id().is_none(),
            Ended::Raw(r) => r.parent_id.is_none(),
        }
    }
}

/// What finishing needs from the tracer's settings; shared by the manager and every pending
/// trace.
pub(crate) struct Finisher {
    pub(crate) policy: Arc<dyn TracePolicy>,
    pub(crate) span_processors: Vec<SpanProcessorFn>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) preview_max_chars: usize,
}

impl Finisher {
    /// The span of trace `trace_id`, through MLflow's end rules and the span processors;
    /// `root_info` is the trace info for a root span (its destination may copy values into it).
    pub(crate) fn finish_span(
        &self,
        ended: Ended,
        trace_id: &str,
        root_info: Option<&TraceInfo>,
    ) -> Span {
        let mut span = match ended {
            Ended::Done(span) => return *span,
            Ended::Span(span) => *span,
            Ended::Raw(mut raw) => {
                let hook = raw.finish_hook.take();
                let mut span = raw.into_span(trace_id);
                if let Some(hook) = hook {
                    self.run_guarded(hook, &mut span);
                }
                span
            }
        };
        apply_log_level_rules(&mut span);
        if span.parent_id().is_none()
            && let Some(info) = root_info
        {
            for (key, value) in self.policy.root_end_attributes(info) {
                span.set_raw_attribute(key, Value::String(value));
            }
        }
        for processor in &self.span_processors {
            self.run_guarded(|span| processor(span), &mut span);
        }
        span
    }

    /// Runs `f` on the span; a panic is caught, counted and logged (the span is kept as it is).
    fn run_guarded(&self, f: impl FnOnce(&mut Span), span: &mut Span) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(span))) {
            self.stats
                .span_processor_error(panic_message(payload.as_ref()));
        }
    }
}

/// A completed trace not yet finalized: its spans as the caller ended them and its info. See
/// [`Dispatch::dispatch_trace`](crate::Dispatch::dispatch_trace).
pub struct PendingTrace {
    finisher: Arc<Finisher>,
    info: TraceInfo,
    /// The root span's name when it started (`mlflow.traceName`).
    root_name: Cow<'static, str>,
    /// The spans in the order they started (each with its start sequence number).
    spans: Vec<(u64, Ended)>,
    halted: bool,
    remote: bool,
}

impl fmt::Debug for PendingTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingTrace")
            .field("trace_id", &self.info.trace_id)
            .field("spans", &self.spans.len())
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl PendingTrace {
    pub(crate) fn new(
        finisher: Arc<Finisher>,
        info: TraceInfo,
        root_name: Cow<'static, str>,
        spans: Vec<(u64, Ended)>,
        halted: bool,
        remote: bool,
    ) -> Self {
        PendingTrace {
            finisher,
            info,
            root_name,
            spans,
            halted,
            remote,
        }
    }

    /// The MLflow trace id.
    pub fn mlflow_trace_id(&self) -> &str {
        &self.info.trace_id
    }

    /// Where the trace is stored.
    pub fn location(&self) -> &TraceLocation {
        &self.info.trace_location
    }

    /// Finalizes the trace: every span through the end rules and the span processors, then the
    /// destination's trace rules (previews, `mlflow.traceInputs`/`Outputs`, token usage; the
    /// state of a halted trace).
    pub fn finalize(self) -> ExportItem {
        let PendingTrace {
            finisher,
            mut info,
            root_name,
            spans,
            halted,
            remote,
        } = self;
        if !remote {
            finisher.policy.start_defaults(&mut info, &root_name);
        }
        let spans: Vec<Span> = spans
            .into_iter()
            .map(|(_, ended)| {
                let root = ended.is_root().then_some(&info);
                finisher.finish_span(ended, &info.trace_id, root)
            })
            .collect();
        let mut trace = Trace::new(info, spans);
        if !remote {
            finisher
                .policy
                .finalize(&mut trace, finisher.preview_max_chars);
            if halted && trace.info.state == TraceState::InProgress {
                trace.info.state = TraceState::Error;
            }
        }
        ExportItem::Trace(Box::new(TraceItem { trace, remote }))
    }
}

/// MLflow's log-level rules at span end: the span type's default level when none was set, and
/// ERROR once an `exception` event was added.
fn apply_log_level_rules(span: &mut Span) {
    if !span.raw_attributes().contains_key(keys::span::LOG_LEVEL) {
        // The span type as stored is almost always a plain JSON string: read it without parsing.
        let span_type = match span.raw_attributes().get(keys::span::SPAN_TYPE) {
            Some(Value::String(s))
                if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') && !s.contains('\\') =>
            {
                SpanType::from(&s[1..s.len() - 1])
            }
            _ => span.span_type().unwrap_or(SpanType::Unknown),
        };
        let level = span_type.default_log_level();
        span.set_raw_attribute(
            keys::span::LOG_LEVEL,
            Value::String(itoa::Buffer::new().format(level.as_i64()).to_owned()),
        );
    }
    if span.events().iter().any(|e| e.name == SpanEvent::EXCEPTION) {
        let error = SpanLogLevel::Error.as_i64();
        let current = span
            .raw_attributes()
            .get(keys::span::LOG_LEVEL)
            .and_then(|v| match v {
                Value::String(s) => s.parse::<i64>().ok(),
                other => other.as_i64(),
            });
        if current.is_none_or(|c| c < error) {
            span.set_raw_attribute(keys::span::LOG_LEVEL, Value::String(error.to_string()));
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Every ended span waits in a slot of its trace's list until the trace is finalized (a
    /// burst of 3,000 spans keeps them all): what few spans have stays behind a pointer.
    #[test]
    fn an_ended_span_waits_in_a_small_slot() {
        assert!(size_of::<RawSpan>() <= 128, "{}", size_of::<RawSpan>());
        assert_eq!(size_of::<Ended>(), size_of::<RawSpan>());
        assert!(size_of::<(u64, Ended)>() <= 144);
    }
}
