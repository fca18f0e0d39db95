//! `Span.to_dict()` / `Span.from_dict()`: the span JSON of `Trace.to_json()` and `traces.json`.
//!
//! Writing always produces the current layout. Reading accepts the three layouts MLflow 3.17.2's
//! `Span.from_dict` reads: current (base64 ids), 3.5.0 (hex ids, `tr-`/`trace:/` trace id, status
//! `OK`/`ERROR`) and V2 (a `context` object, `parent_id`, `start_time`, `status_code`, events
//! with `timestamp`). Like MLflow it requires a non-empty `mlflow.traceRequestId` attribute.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::EntityError;
use crate::ids::{MlflowTraceId, SpanId, TraceId};
use crate::keys;
use crate::span::Span;
use crate::span_kinds::{Link, SpanEvent, SpanStatus};

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Span", 10)?;
        st.serialize_field("trace_id", &self.trace_id.to_base64())?;
        st.serialize_field("span_id", &self.span_id.to_base64())?;
        st.serialize_field("parent_span_id", &self.parent_id.map(SpanId::to_base64))?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("start_time_unix_nano", &self.start_time_ns)?;
        st.serialize_field("end_time_unix_nano", &self.end_time_ns)?;
        st.serialize_field("events", &self.events)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("attributes", &self.attributes)?;
        st.serialize_field("links", &self.links)?;
        st.end()
    }
}

/// Accepts an integer or a decimal string (`int(x)` in Python).
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        U(u64),
        F(f64),
        S(String),
    }
    match Option::<Num>::deserialize(d)? {
        None => Ok(None),
        Some(Num::U(v)) => Ok(Some(v)),
        Some(Num::F(v)) if v >= 0.0 && v.fract() == 0.0 && v < 1.9e19 => Ok(Some(v as u64)),
        Some(Num::F(v)) => Err(serde::de::Error::custom(format!(
            "{v} is not a non-negative integer"
        ))),
        Some(Num::S(s)) => s.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "{:?} is not a non-negative integer",
                crate::error::short(&s)
            ))
        }),
    }
}

#[derive(Deserialize)]
struct AnyEvent {
    name: String,
    #[serde(default, deserialize_with = "lenient_u64")]
    time_unix_nano: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    timestamp: Option<u64>,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct AnyStatus {
    code: String,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct V2Context {
    trace_id: String,
    span_id: String,
}

/// The union of the three layouts.
#[derive(Deserialize)]
struct AnySpan {
    name: String,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    events: Vec<AnyEvent>,
    #[serde(default)]
    links: Option<Vec<Link>>,
    // current and 3.5.0
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    span_id: Option<String>,
    #[serde(default)]
    parent_span_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    start_time_unix_nano: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    end_time_unix_nano: Option<u64>,
    #[serde(default)]
    status: Option<AnyStatus>,
    // V2
    #[serde(default)]
    context: Option<V2Context>,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    start_time: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    end_time: Option<u64>,
    #[serde(default)]
    status_code: Option<String>,
    #[serde(default)]
    status_message: Option<String>,
}

/// Python truthiness, as `Span.from_dict`'s `if not request_id` applies it.
fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn missing(field: &str) -> EntityError {
    EntityError::InvalidSpan(format!("missing field `{field}`"))
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

impl TryFrom<AnySpan> for Span {
    type Error = EntityError;

    fn try_from(raw: AnySpan) -> Result<Self, EntityError> {
        if !raw
            .attributes
            .get(keys::span::REQUEST_ID)
            .is_some_and(is_truthy)
        {
            return Err(EntityError::InvalidSpan(format!(
                "the {} attribute is empty or missing",
                keys::span::REQUEST_ID
            )));
        }
        let (trace_id, span_id, parent_id, start, end, status);
        if let Some(ctx) = raw.context {
            // V2 layout: hex ids (optionally 0x), µs event timestamps kept as is.
            trace_id = TraceId::from_hex(&ctx.trace_id)?;
            span_id = SpanId::from_hex(&ctx.span_id)?;
            parent_id = non_empty(raw.parent_id)
                .map(|p| SpanId::from_hex(&p))
                .transpose()?;
            start = raw.start_time.ok_or_else(|| missing("start_time"))?;
            end = raw.end_time.filter(|t| *t != 0);
            status = SpanStatus {
                code: raw.status_code.as_deref().unwrap_or("UNSET").parse()?,
                message: raw.status_message.unwrap_or_default(),
            };
        } else {
            let tid = raw.trace_id.ok_or_else(|| missing("trace_id"))?;
            let sid = raw.span_id.ok_or_else(|| missing("span_id"))?;
            let parent = non_empty(raw.parent_span_id);
            if let Ok(t) = TraceId::from_base64(&tid) {
                trace_id = t;
                span_id = SpanId::from_base64(&sid)?;
                parent_id = parent.map(|p| SpanId::from_base64(&p)).transpose()?;
            } else {
                // 3.5.0 layout: `tr-<hex>`, `trace:/<loc>/<hex>` or bare hex, and hex span ids.
                trace_id = match tid.parse::<MlflowTraceId>() {
                    Ok(id) => id.otel_trace_id(),
                    Err(_) => TraceId::from_hex(&tid)?,
                };
                span_id = SpanId::from_hex(&sid)?;
                parent_id = parent.map(|p| SpanId::from_hex(&p)).transpose()?;
            }
            start = raw
                .start_time_unix_nano
                .ok_or_else(|| missing("start_time_unix_nano"))?;
            end = raw.end_time_unix_nano.filter(|t| *t != 0);
            let st = raw.status.ok_or_else(|| missing("status"))?;
            status = SpanStatus {
                code: st.code.parse()?,
                message: st.message.unwrap_or_default(),
            };
        }
        let events = raw
            .events
            .into_iter()
            .map(|e| {
                let time = e
                    .time_unix_nano
                    .or(e.timestamp)
                    .ok_or_else(|| missing("events[].time_unix_nano"))?;
                Ok(SpanEvent {
                    name: e.name,
                    time_unix_nano: time,
                    attributes: e.attributes.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, EntityError>>()?;
        Ok(Span {
            trace_id,
            span_id,
            parent_id,
            name: raw.name,
            start_time_ns: start,
            end_time_ns: end,
            status,
            events,
            links: raw.links.unwrap_or_default(),
            attributes: raw.attributes.into(),
        })
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Span::try_from(AnySpan::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Span {
    /// `json.dumps(span.to_dict())`: the exact text Python writes (ASCII escapes).
    ///
    /// # Errors
    /// Only for attribute values nested deeper than [`crate::json::MAX_NESTING_DEPTH`] that were
    /// stored raw (values set through the SDK are already JSON text).
    pub fn to_json(&self) -> crate::Result<String> {
        crate::json::to_python_json(self)
    }

    /// Parses any of the three span layouts (see the module docs).
    ///
    /// # Errors
    /// [`EntityError`] naming what is missing or malformed.
    pub fn from_json(text: &str) -> crate::Result<Span> {
        let raw: AnySpan = crate::json::parse_json(text)?;
        Span::try_from(raw)
    }
}
