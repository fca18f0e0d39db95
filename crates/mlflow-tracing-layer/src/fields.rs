//! Field values of `tracing` spans and events, and how MLflow stores them.

use std::fmt;

use mlflow_tracing_entities::json::AttributeJson;
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
    /// A span field's text already as attribute JSON (see [`FieldValue::of_text`]).
    Json(AttributeJson),
}

/// Fields the layer reads as conventions rather than storing (`otel.*`, `error`).
pub(crate) fn is_convention(name: &str) -> bool {
    name.starts_with("otel.") || name == "error"
}

impl FieldValue {
    /// A span field's text: kept as text for the conventions, else encoded once, now, as the
    /// attribute JSON it becomes.
    pub(crate) fn of_text(name: &str, text: &str) -> FieldValue {
        if is_convention(name) {
            FieldValue::Text(text.to_owned())
        } else {
            FieldValue::Json(text_attribute_json(text))
        }
    }

    /// The attribute value as MLflow stores it (JSON text), with the MLflow server's rule for
    /// text: kept as it is when it is JSON for a string, an object or a list (so a GenAI message
    /// list stays a list), JSON-encoded as a string otherwise.
    pub(crate) fn into_attribute_json(self) -> AttributeJson {
        match self {
            FieldValue::I64(i) => i.into(),
            FieldValue::U64(u) => u.into(),
            FieldValue::F64(f) => AttributeJson::float(f),
            FieldValue::Bool(b) => b.into(),
            FieldValue::Text(s) => text_attribute_json(&s),
            FieldValue::Json(json) => json,
        }
    }

    /// The value as an event attribute (MLflow keeps those raw).
    pub(crate) fn raw(&self) -> Value {
        match self {
            FieldValue::I64(i) => Value::from(*i),
            FieldValue::U64(u) => Value::from(*u),
            FieldValue::F64(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            FieldValue::Bool(b) => Value::Bool(*b),
            FieldValue::Text(s) => Value::String(s.clone()),
            FieldValue::Json(json) => serde_json::from_str(json.as_str())
                .unwrap_or_else(|_| Value::String(json.as_str().to_owned())),
        }
    }
}

/// Text as MLflow's server stores it: kept as it is when it is JSON for a string, an object or
/// a list (so a GenAI message list stays a list), JSON-encoded as a string otherwise.
fn text_attribute_json(text: &str) -> AttributeJson {
    let t = text.trim_start();
    if matches!(t.as_bytes().first(), Some(b'"' | b'{' | b'[')) {
        match AttributeJson::parse(text.to_owned()) {
            Ok(json) => json,
            Err((s, _)) => AttributeJson::string(&s),
        }
    } else {
        AttributeJson::string(text)
    }
}

/// An error's message and its `Debug` form followed by its sources (`Caused by: …`).
pub(crate) fn error_chain(value: &(dyn std::error::Error + 'static)) -> (String, String) {
    let mut chain = format!("{value:?}");
    let mut source = value.source();
    while let Some(s) = source {
        chain.push_str("\nCaused by: ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    (value.to_string(), chain)
}

/// Collects the fields of a span or an event, in order; `error` fields (recorded with
/// `record_error`) apart.
#[derive(Default)]
pub(crate) struct Fields {
    pub(crate) values: Vec<(&'static str, FieldValue)>,
    /// `(type, message, chain)` of an error field.
    pub(crate) error: Option<(String, String, String)>,
    /// A span's fields: text is encoded as attribute JSON as it is recorded.
    encode: bool,
}

impl Fields {
    /// A span's fields, with room for `n` values.
    pub(crate) fn of_span(n: usize) -> Self {
        Fields {
            values: Vec::with_capacity(n),
            error: None,
            encode: true,
        }
    }

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
        let value = if self.encode {
            FieldValue::of_text(field.name(), value)
        } else {
            FieldValue::Text(value.to_owned())
        };
        self.push(field, value);
    }
    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        let (message, chain) = error_chain(value);
        if field.name() == "error" || self.error.is_none() {
            self.error = Some(("Error".to_owned(), message.clone(), chain));
        }
        self.push(field, FieldValue::Text(message));
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
        let t = |s: &str| {
            FieldValue::Text(s.to_owned())
                .into_attribute_json()
                .into_string()
        };
        assert_eq!(t("hello"), "\"hello\"");
        assert_eq!(t("[{\"role\":\"user\"}]"), "[{\"role\":\"user\"}]");
        assert_eq!(t("{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(t("\"quoted\""), "\"quoted\"");
        assert_eq!(
            t("26"),
            "\"26\"",
            "a number in text stays text, as the server stores it"
        );
        assert_eq!(t("[not json"), "\"[not json\"");
        let v = |v: FieldValue| v.into_attribute_json().into_string();
        assert_eq!(v(FieldValue::I64(-3)), "-3");
        assert_eq!(v(FieldValue::U64(7)), "7");
        assert_eq!(v(FieldValue::Bool(true)), "true");
        assert_eq!(v(FieldValue::F64(2.0)), "2.0");
        assert_eq!(v(FieldValue::F64(1e-7)), "1e-07");
        assert_eq!(v(FieldValue::F64(f64::NAN)), "null");
    }
}
