//! Span limits: how many user attributes, events and links a span keeps. MLflow's own
//! attributes are never dropped; what is dropped is counted and reported once per process.

use mlflow_tracing_entities::keys;

use crate::env::EnvLookup;

/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`: user attributes per span (default 128).
pub const OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_ATTRIBUTE_COUNT_LIMIT`: the general attribute limit, used when the span one is unset.
pub const OTEL_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_SPAN_EVENT_COUNT_LIMIT`: events per span (default 128).
pub const OTEL_SPAN_EVENT_COUNT_LIMIT: &str = "OTEL_SPAN_EVENT_COUNT_LIMIT";
/// `OTEL_SPAN_LINK_COUNT_LIMIT`: links per span (default 128).
pub const OTEL_SPAN_LINK_COUNT_LIMIT: &str = "OTEL_SPAN_LINK_COUNT_LIMIT";

/// The OpenTelemetry default of each limit.
const DEFAULT_LIMIT: u32 = 128;

/// How much of what users put on a span is kept.
///
/// - **Attributes**: at most `max_attributes` distinct user attribute keys per span; setting a
///   key again replaces its value and costs nothing. MLflow's own attributes
///   (`mlflow.traceRequestId`, `mlflow.spanType`, `mlflow.spanInputs`, `mlflow.spanOutputs`,
///   `mlflow.chat.tokenUsage` and every other key of MLflow's `SpanAttributeKey`) are never
///   dropped and do not count. OpenTelemetry's SDK refuses every attribute past its limit,
///   MLflow's included, and Python's evicts the oldest, its own included: neither happens here.
/// - **Events**: at most `max_events` per span; `exception` events (errors, panics, timeouts)
///   are always kept and do not count.
/// - **Links**: at most `max_links` per span.
///
/// What is dropped is counted ([`TracerStats`](crate::TracerStats) `attributes_dropped`,
/// `events_dropped`, `links_dropped`) and reported with a warning once per process, naming the
/// setting to raise. Defaults: OpenTelemetry's 128 each, from `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`
/// (else `OTEL_ATTRIBUTE_COUNT_LIMIT`), `OTEL_SPAN_EVENT_COUNT_LIMIT` and
/// `OTEL_SPAN_LINK_COUNT_LIMIT` with [`TracerBuilder::from_env`](crate::TracerBuilder::from_env);
/// [`TracerBuilder::with_span_limits`](crate::TracerBuilder::with_span_limits) wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpanLimits {
    /// Distinct user attribute keys per span.
    pub max_attributes: u32,
    /// Events per span (`exception` events not counted).
    pub max_events: u32,
    /// Links per span.
    pub max_links: u32,
}

impl Default for SpanLimits {
    fn default() -> Self {
        SpanLimits {
            max_attributes: DEFAULT_LIMIT,
            max_events: DEFAULT_LIMIT,
            max_links: DEFAULT_LIMIT,
        }
    }
}

impl SpanLimits {
    /// No limit at all (memory then grows with what the code sets).
    pub fn unlimited() -> Self {
        SpanLimits {
            max_attributes: u32::MAX,
            max_events: u32::MAX,
            max_links: u32::MAX,
        }
    }

    /// Sets the user attribute limit.
    #[must_use]
    pub fn with_max_attributes(mut self, n: u32) -> Self {
        self.max_attributes = n;
        self
    }

    /// Sets the event limit.
    #[must_use]
    pub fn with_max_events(mut self, n: u32) -> Self {
        self.max_events = n;
        self
    }

    /// Sets the link limit.
    #[must_use]
    pub fn with_max_links(mut self, n: u32) -> Self {
        self.max_links = n;
        self
    }

    /// The defaults overridden by the OpenTelemetry variables. As the OpenTelemetry
    /// specification asks, a value that is not a non-negative integer is ignored with a warning.
    pub(crate) fn from_lookup(get: EnvLookup<'_>) -> Self {
        let read = |name: &str| -> Option<u32> {
            let raw = get(name)?;
            match raw.trim().parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    crate::notice::visible(|| {
                        tracing::warn!(
                            "{name}={raw:?} is not a non-negative integer; using the default"
                        )
                    });
                    None
                }
            }
        };
        let d = Self::default();
        SpanLimits {
            max_attributes: read(OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT)
                .or_else(|| read(OTEL_ATTRIBUTE_COUNT_LIMIT))
                .unwrap_or(d.max_attributes),
            max_events: read(OTEL_SPAN_EVENT_COUNT_LIMIT).unwrap_or(d.max_events),
            max_links: read(OTEL_SPAN_LINK_COUNT_LIMIT).unwrap_or(d.max_links),
        }
    }
}

/// MLflow's own span attribute keys (`SpanAttributeKey` in `mlflow/tracing/constant.py`):
/// never dropped by a limit.
const RESERVED: &[&str] = &[
    keys::span::REQUEST_ID,
    keys::span::SPAN_TYPE,
    keys::span::INPUTS,
    keys::span::OUTPUTS,
    keys::span::FUNCTION_NAME,
    keys::span::DESCRIPTION,
    keys::span::LOG_LEVEL,
    keys::span::START_TIME_NS,
    keys::span::EXPERIMENT_ID,
    keys::span::CHAT_TOOLS,
    keys::span::CHAT_USAGE,
    keys::span::LLM_COST,
    keys::span::MODEL,
    keys::span::MODEL_PROVIDER,
    keys::span::MESSAGE_FORMAT,
    keys::span::LINKED_PROMPTS,
    "mlflow.trace.intermediate_outputs",
    "mlflow.gateway.linkedTraceId",
];

/// How many of MLflow's own span attributes there are: with the user's limit, the most
/// attributes a span can hold.
pub(crate) const RESERVED_KEYS: usize = RESERVED.len();

/// Whether `key` is one of MLflow's own span attributes, which limits never drop.
pub(crate) fn is_reserved(key: &str) -> bool {
    key.starts_with("mlflow.") && RESERVED.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults_and_garbage_is_ignored() {
        let env = |n: &str| match n {
            "OTEL_ATTRIBUTE_COUNT_LIMIT" => Some("7".to_owned()),
            "OTEL_SPAN_EVENT_COUNT_LIMIT" => Some(" 3 ".to_owned()),
            "OTEL_SPAN_LINK_COUNT_LIMIT" => Some("many".to_owned()),
            _ => None,
        };
        let l = SpanLimits::from_lookup(&env);
        assert_eq!((l.max_attributes, l.max_events, l.max_links), (7, 3, 128));
        let span_wins = |n: &str| match n {
            "OTEL_ATTRIBUTE_COUNT_LIMIT" => Some("7".to_owned()),
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT" => Some("9".to_owned()),
            _ => None,
        };
        assert_eq!(SpanLimits::from_lookup(&span_wins).max_attributes, 9);
        assert_eq!(SpanLimits::from_lookup(&|_| None), SpanLimits::default());
    }

    #[test]
    fn mlflow_keys_are_reserved_other_keys_are_not() {
        assert!(is_reserved("mlflow.spanOutputs"));
        assert!(is_reserved("mlflow.chat.tokenUsage"));
        assert!(!is_reserved("mlflow.userThing"));
        assert!(!is_reserved("model"));
    }
}
