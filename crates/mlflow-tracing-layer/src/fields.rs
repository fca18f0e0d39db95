//! Field values of `tracing` spans and events, and how MLflow stores them.

use std::fmt;

use mlflow_tracing_entities::json::{string_attribute_json, to_attribute_json};
use serde_json::Value;

/// A field value as `tracing` recorded it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FieldValue {
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    /// `&str`, `Display` and `Debug` values.
    Text(String),
}

impl FieldValue {
    /// The attribute value as MLflow stores it (JSON text), with the MLflow server's rule for
    /// text: kept as it is when it is JSON for a string, an object or a list (so a GenAI message
    /// list stays a list), JSON-encoded as a string otherwise.
    pub(crate) fn attribute_json(&self) -> String {
        match self {
            FieldValue::I64(i) => i.to_string(),
            FieldValue::U64(u) => u.to_string(),
            FieldValue::F64(f) => to_attribute_json(f).unwrap_or_else(|_| "null".to_owned()),
            FieldValue::Bool(b) => b.to_string(),
            FieldValue::Text(s) if is_json_text(s) => s.clone(),
            FieldValue::Text(s) => string_attribute_json(s),
        }
    }

    /// The value as an event attribute (MLflow keeps those raw).
    pub(crate) fn raw(&self) -> Value {
        match self {
            FieldValue::I64(i) => Value::from(*i),
            FieldValue::U64(u) => Value::from(*u),
            FieldValue::F64(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            FieldValue::Bool(b) => Value::Bool(*b),
            FieldValue::Text(s) => Value::String(s.clone()),
        }
    }
}

/// Whether `s` is JSON whose top level is a string, an object or a list.
pub(crate) fn is_json_text(s: &str) -> bool {
    let t = s.trim_start();
    matches!(t.as_bytes().first(), Some(b'"' | b'{' | b'['))
        && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

/// Collects the fields of a span or an event, in order; `error` fields (recorded with
/// `record_error`) apart.
#[derive(Default)]
pub(crate) struct Fields {
    pub(crate) values: Vec<(&'static str, FieldValue)>,
    /// `(type, message, chain)` of an error field.
    pub(crate) error: Option<(String, String, String)>,
}

impl Fields {
    fn push(&mut self, field: &tracing::field::Field, value: FieldValue) {
        self.values.push((field.name(), value));
    }
}

impl tracing::field::Visit for Fields {
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.push(field, FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.push(field, FieldValue::Text(value.to_owned()));
    }
    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        let mut chain = format!("{value:?}");
        let mut source = value.source();
        while let Some(s) = source {
            chain.push_str("\nCaused by: ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        self.push(field, FieldValue::Text(value.to_string()));
        if field.name() == "error" || self.error.is_none() {
            self.error = Some(("Error".to_owned(), value.to_string(), chain));
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.push(field, FieldValue::Text(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_kept_when_it_is_json_for_a_string_object_or_list() {
        let t = |s: &str| FieldValue::Text(s.to_owned()).attribute_json();
        assert_eq!(t("hello"), "\"hello\"");
        assert_eq!(t("[{\"role\":\"user\"}]"), "[{\"role\":\"user\"}]");
        assert_eq!(t("{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(t("\"quoted\""), "\"quoted\"");
        assert_eq!(t("26"), "\"26\"", "a number in text stays text, as the server stores it");
        assert_eq!(t("[not json"), "\"[not json\"");
        assert_eq!(FieldValue::I64(-3).attribute_json(), "-3");
        assert_eq!(FieldValue::F64(2.0).attribute_json(), "2.0");
        assert_eq!(FieldValue::F64(f64::NAN).attribute_json(), "null");
    }
}
