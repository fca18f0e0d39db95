//! The spans the server returns from `GetTrace` / `batchGet`: OTLP protobuf JSON with snake_case
//! field names, base64 ids and int64 values as bare JSON numbers (or strings).

use base64::Engine as _;
use mlflow_tracing_entities::opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as Any,
};
use mlflow_tracing_entities::opentelemetry_proto::tonic::trace::v1::{
    Span as OtlpSpan, Status, span::Event, span::Link,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
pub(crate) struct SpanJson {
    #[serde(default, alias = "traceId")]
    trace_id: String,
    #[serde(default, alias = "spanId")]
    span_id: String,
    #[serde(default, alias = "parentSpanId")]
    parent_span_id: String,
    #[serde(default, alias = "traceState")]
    trace_state: String,
    #[serde(default)]
    name: String,
    #[serde(default, alias = "startTimeUnixNano")]
    start_time_unix_nano: Value,
    #[serde(default, alias = "endTimeUnixNano")]
    end_time_unix_nano: Value,
    #[serde(default)]
    attributes: Vec<KeyValueJson>,
    #[serde(default)]
    events: Vec<EventJson>,
    #[serde(default)]
    links: Vec<LinkJson>,
    #[serde(default)]
    status: Option<StatusJson>,
}

#[derive(Deserialize)]
struct KeyValueJson {
    key: String,
    #[serde(default)]
    value: Option<Value>,
}

#[derive(Deserialize)]
struct EventJson {
    #[serde(default, alias = "timeUnixNano")]
    time_unix_nano: Value,
    #[serde(default)]
    name: String,
    #[serde(default)]
    attributes: Vec<KeyValueJson>,
}

#[derive(Deserialize)]
struct LinkJson {
    #[serde(default, alias = "traceId")]
    trace_id: String,
    #[serde(default, alias = "spanId")]
    span_id: String,
    #[serde(default, alias = "traceState")]
    trace_state: String,
    #[serde(default)]
    attributes: Vec<KeyValueJson>,
}

#[derive(Deserialize)]
struct StatusJson {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Value,
}

fn id(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("bad base64 id {text:?}: {e}"))
}

fn u64_of(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn any_value(v: &Value) -> Option<AnyValue> {
    let obj = v.as_object()?;
    let (key, inner) = obj.iter().next()?;
    let value = match key.as_str() {
        "string_value" | "stringValue" => Any::StringValue(inner.as_str()?.to_owned()),
        "bool_value" | "boolValue" => Any::BoolValue(inner.as_bool()?),
        "int_value" | "intValue" => Any::IntValue(match inner {
            Value::Number(n) => n.as_i64()?,
            Value::String(s) => s.parse().ok()?,
            _ => return None,
        }),
        "double_value" | "doubleValue" => Any::DoubleValue(match inner {
            Value::Number(n) => n.as_f64()?,
            Value::String(s) => s.parse().ok()?,
            _ => return None,
        }),
        "bytes_value" | "bytesValue" => Any::BytesValue(id(inner.as_str()?).ok()?),
        "array_value" | "arrayValue" => Any::ArrayValue(ArrayValue {
            values: inner
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .map(|v| any_value(v).unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default(),
        }),
        "kvlist_value" | "kvlistValue" => Any::KvlistValue(KeyValueList {
            values: inner
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter_map(|kv| {
                            Some(KeyValue {
                                key: kv.get("key")?.as_str()?.to_owned(),
                                value: kv.get("value").and_then(any_value),
                                ..Default::default()
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }),
        _ => return None,
    };
    Some(AnyValue { value: Some(value) })
}

fn key_values(kvs: &[KeyValueJson]) -> Vec<KeyValue> {
    kvs.iter()
        .map(|kv| KeyValue {
            key: kv.key.clone(),
            value: kv.value.as_ref().and_then(any_value),
            ..Default::default()
        })
        .collect()
}

fn status_code(v: &Value) -> i32 {
    match v {
        Value::Number(n) => i32::try_from(n.as_i64().unwrap_or(0)).unwrap_or(0),
        Value::String(s) => match s.as_str() {
            "STATUS_CODE_OK" | "OK" => 1,
            "STATUS_CODE_ERROR" | "ERROR" => 2,
            _ => 0,
        },
        _ => 0,
    }
}

impl SpanJson {
    /// The protobuf span.
    pub(crate) fn into_proto(self) -> Result<OtlpSpan, String> {
        Ok(OtlpSpan {
            trace_id: id(&self.trace_id)?,
            span_id: id(&self.span_id)?,
            parent_span_id: id(&self.parent_span_id)?,
            trace_state: self.trace_state,
            name: self.name,
            start_time_unix_nano: u64_of(&self.start_time_unix_nano),
            end_time_unix_nano: u64_of(&self.end_time_unix_nano),
            attributes: key_values(&self.attributes),
            events: self
                .events
                .iter()
                .map(|e| Event {
                    time_unix_nano: u64_of(&e.time_unix_nano),
                    name: e.name.clone(),
                    attributes: key_values(&e.attributes),
                    dropped_attributes_count: 0,
                })
                .collect(),
            links: self
                .links
                .iter()
                .map(|l| {
                    Ok(Link {
                        trace_id: id(&l.trace_id)?,
                        span_id: id(&l.span_id)?,
                        trace_state: l.trace_state.clone(),
                        attributes: key_values(&l.attributes),
                        ..Default::default()
                    })
                })
                .collect::<Result<_, String>>()?,
            status: self.status.map(|s| Status {
                message: s.message,
                code: status_code(&s.code),
            }),
            ..Default::default()
        })
    }
}
