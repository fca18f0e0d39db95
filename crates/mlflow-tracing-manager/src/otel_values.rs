//! Attribute values between OpenTelemetry's types and the JSON values MLflow stores.

use opentelemetry::Value as OtelValue;
use serde_json::{Number, Value};

/// An OpenTelemetry attribute value in MLflow's stored form: strings as they are (the SDK stores
/// JSON text), other values raw (as MLflow keeps attributes set by foreign OpenTelemetry code).
pub(crate) fn otel_value_to_json(value: OtelValue) -> Value {
    use opentelemetry::Array;
    fn num(f: f64) -> Value {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
    match value {
        OtelValue::String(s) => Value::String(String::from(s)),
        OtelValue::Bool(b) => Value::Bool(b),
        OtelValue::I64(i) => Value::Number(i.into()),
        OtelValue::F64(f) => num(f),
        OtelValue::Array(Array::Bool(v)) => Value::Array(v.into_iter().map(Value::Bool).collect()),
        OtelValue::Array(Array::I64(v)) => {
            Value::Array(v.into_iter().map(|i| Value::Number(i.into())).collect())
        }
        OtelValue::Array(Array::F64(v)) => Value::Array(v.into_iter().map(num).collect()),
        OtelValue::Array(Array::String(v)) => Value::Array(
            v.into_iter()
                .map(|s| Value::String(String::from(s)))
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

/// A raw JSON value as an OpenTelemetry attribute value (for event attributes, which MLflow keeps
/// raw). Objects and mixed arrays become their JSON text.
#[cfg(test)]
pub(crate) fn json_to_otel_value(value: &Value) -> OtelValue {
    match value {
        Value::String(s) => OtelValue::String(s.clone().into()),
        Value::Bool(b) => OtelValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => OtelValue::I64(i),
            None => OtelValue::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Null => OtelValue::String("None".into()),
        other => OtelValue::String(other.to_string().into()),
    }
}

/// A raw event or link attribute value as MLflow stores it after the OpenTelemetry round trip
/// (`otel_value_to_json(json_to_otel_value(v))`: null becomes `"None"`, objects and arrays their
/// JSON text, integers beyond `i64` a float): what a span API event looks like once exported,
/// whichever front door it came through.
pub(crate) fn normalize_raw_value(value: Value) -> Value {
    match value {
        Value::Null => Value::String("None".into()),
        Value::Number(n) if n.as_i64().is_none() => n
            .as_f64()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number),
        v @ (Value::String(_) | Value::Bool(_) | Value::Number(_)) => v,
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalizing_is_the_opentelemetry_round_trip() {
        for v in [
            json!(null),
            json!(true),
            json!(-3),
            json!(u64::MAX),
            json!(1.5),
            json!("s"),
            json!([1, "a"]),
            json!({"k": [null]}),
        ] {
            assert_eq!(
                normalize_raw_value(v.clone()),
                otel_value_to_json(json_to_otel_value(&v)),
                "{v}"
            );
        }
    }
}
