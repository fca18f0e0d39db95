//! Helpers shared by the integration tests.

use std::path::PathBuf;

use base64::Engine as _;
use mlflow_tracing::entities::opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as Any,
};
use mlflow_tracing::entities::opentelemetry_proto::tonic::trace::v1 as proto;
use serde_json::Value;

/// Path of a copied MLflow 3.17.2 fixture.
pub(crate) fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/fixtures")
        .join(rel)
}

/// Text of a fixture.
pub(crate) fn fixture(rel: &str) -> String {
    std::fs::read_to_string(fixture_path(rel)).unwrap_or_else(|e| panic!("read fixture {rel}: {e}"))
}

/// The five recorded trace scenarios.
pub(crate) const SCENARIOS: [&str; 5] = [
    "agent_retriever_llm",
    "long_inputs",
    "non_ascii",
    "tool_exception",
    "update_current_trace",
];

fn b64(v: &Value) -> Vec<u8> {
    v.as_str()
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .expect("base64 id")
        })
        .unwrap_or_default()
}

fn num(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().expect("int64 string"),
        Value::Number(n) => n.as_u64().expect("u64"),
        _ => 0,
    }
}

fn any_value(v: &Value) -> AnyValue {
    let obj = v.as_object().expect("AnyValue object");
    let value = obj.iter().next().map(|(k, v)| match k.as_str() {
        "stringValue" => Any::StringValue(v.as_str().unwrap().to_owned()),
        "intValue" => Any::IntValue(match v {
            Value::String(s) => s.parse().unwrap(),
            other => other.as_i64().unwrap(),
        }),
        "doubleValue" => Any::DoubleValue(v.as_f64().unwrap()),
        "boolValue" => Any::BoolValue(v.as_bool().unwrap()),
        "bytesValue" => Any::BytesValue(b64(v)),
        "arrayValue" => Any::ArrayValue(ArrayValue {
            values: v
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(any_value).collect())
                .unwrap_or_default(),
        }),
        "kvlistValue" => Any::KvlistValue(KeyValueList {
            values: key_values(v.get("values")),
        }),
        other => panic!("unknown AnyValue field {other}"),
    });
    AnyValue { value }
}

fn key_values(v: Option<&Value>) -> Vec<KeyValue> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|kv| KeyValue {
                    key: kv["key"].as_str().unwrap().to_owned(),
                    value: Some(kv.get("value").map(any_value).unwrap_or_default()),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn status_code(s: &str) -> i32 {
    match s {
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        _ => 0,
    }
}

/// Spans of an OTLP request printed by protobuf's `MessageToJson` (camelCase, base64 ids,
/// int64 as strings), as prost messages.
pub(crate) fn otlp_spans_from_message_json(text: &str) -> Vec<proto::Span> {
    let doc: Value = serde_json::from_str(text).unwrap();
    let mut out = Vec::new();
    for rs in doc["resourceSpans"].as_array().unwrap() {
        for ss in rs["scopeSpans"].as_array().unwrap() {
            for s in ss["spans"].as_array().unwrap() {
                out.push(proto::Span {
                    trace_id: b64(&s["traceId"]),
                    span_id: b64(&s["spanId"]),
                    parent_span_id: s.get("parentSpanId").map(b64).unwrap_or_default(),
                    name: s["name"].as_str().unwrap().to_owned(),
                    start_time_unix_nano: num(&s["startTimeUnixNano"]),
                    end_time_unix_nano: s.get("endTimeUnixNano").map(num).unwrap_or(0),
                    attributes: key_values(s.get("attributes")),
                    events: s
                        .get("events")
                        .and_then(Value::as_array)
                        .map(|evs| {
                            evs.iter()
                                .map(|e| proto::span::Event {
                                    time_unix_nano: num(&e["timeUnixNano"]),
                                    name: e["name"].as_str().unwrap().to_owned(),
                                    attributes: key_values(e.get("attributes")),
                                    dropped_attributes_count: 0,
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    status: Some(proto::Status {
                        message: s
                            .pointer("/status/message")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        code: s
                            .pointer("/status/code")
                            .and_then(Value::as_str)
                            .map_or(0, status_code),
                    }),
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// Attributes the MLflow server derives on read-back; a client never sends them.
pub(crate) const SERVER_SPAN_ATTRIBUTES: [&str; 2] = ["mlflow.llm.model", "mlflow.llm.cost"];
