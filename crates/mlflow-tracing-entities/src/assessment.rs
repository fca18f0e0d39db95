//! Assessments of a trace (MLflow's `Feedback` and `Expectation`), in the REST form the
//! tracking server stores and returns (`/api/3.0/mlflow/traces/{id}/assessments`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{EntityError, Result};
use crate::json::to_python_json;
use crate::trace_info::{TraceInfo, format_request_time, parse_request_time};

/// Who made an assessment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssessmentSourceType {
    /// A person.
    Human,
    /// An LLM judge.
    LlmJudge,
    /// Code (a heuristic, a test).
    Code,
    /// Unknown.
    SourceTypeUnspecified,
}

/// An assessment's source: its kind and an id (a user, a model, a script).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssessmentSource {
    /// The kind of source.
    pub source_type: AssessmentSourceType,
    /// Who or what (`"default"` when not given, as in MLflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
}

impl AssessmentSource {
    /// A source of `source_type` identified by `source_id`.
    pub fn new(source_type: AssessmentSourceType, source_id: impl Into<String>) -> Self {
        AssessmentSource {
            source_type,
            source_id: Some(source_id.into()),
        }
    }
}

/// Why an assessment could not be made (a judge that failed): MLflow's `AssessmentError`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssessmentError {
    /// A code: the exception's type, or `ASSESSMENT_ERROR`.
    pub error_code: String,
    /// The message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The stack trace (cut to its last 10,000 characters, as MLflow does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
}

/// What an assessment holds.
#[derive(Clone, Debug, PartialEq)]
pub enum AssessmentValue {
    /// A judgement of the trace or a span: any JSON value (numbers come back as floats, as the
    /// server keeps them as protobuf values), or an error.
    Feedback {
        /// The value (`null` with an error).
        value: Value,
        /// Why no value could be given.
        error: Option<AssessmentError>,
    },
    /// What the output should have been (ground truth): any JSON value.
    Expectation(Value),
}

/// One assessment of a trace, as the server returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    /// The server's id (`a-…`).
    pub assessment_id: Option<String>,
    /// The name.
    pub name: String,
    /// The trace it is about.
    pub trace_id: String,
    /// The span it is about, if one.
    pub span_id: Option<String>,
    /// Who made it.
    pub source: Option<AssessmentSource>,
    /// When it was made, ms since the epoch.
    pub create_time_ms: Option<i64>,
    /// When it was last changed, ms since the epoch.
    pub last_update_time_ms: Option<i64>,
    /// Its value.
    pub value: AssessmentValue,
    /// Why (feedback).
    pub rationale: Option<String>,
    /// Free-form string metadata.
    pub metadata: Map<String, Value>,
}

/// The REST form.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    assessment_id: Option<String>,
    #[serde(default)]
    assessment_name: String,
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    span_id: Option<String>,
    #[serde(default)]
    source: Option<AssessmentSource>,
    #[serde(default)]
    create_time: Option<String>,
    #[serde(default)]
    last_update_time: Option<String>,
    #[serde(default)]
    feedback: Option<WireFeedback>,
    #[serde(default)]
    expectation: Option<WireExpectation>,
    #[serde(default)]
    rationale: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct WireFeedback {
    #[serde(default)]
    value: Value,
    #[serde(default)]
    error: Option<AssessmentError>,
}

#[derive(Deserialize)]
struct WireExpectation {
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    serialized_value: Option<SerializedValue>,
}

#[derive(Deserialize)]
struct SerializedValue {
    #[serde(default)]
    value: String,
}

impl Assessment {
    /// Reads an assessment as the server returns it.
    ///
    /// # Errors
    /// [`EntityError::InvalidField`] when it is neither feedback nor an expectation or a field
    /// has the wrong shape.
    pub fn from_value(value: &Value) -> Result<Assessment> {
        let wire: Wire =
            serde_json::from_value(value.clone()).map_err(|e| EntityError::InvalidField {
                field: "assessment",
                reason: e.to_string(),
            })?;
        let value = match (wire.feedback, wire.expectation) {
            (Some(f), _) => AssessmentValue::Feedback {
                value: f.value,
                error: f.error,
            },
            (None, Some(e)) => AssessmentValue::Expectation(match (e.value, e.serialized_value) {
                (Some(v), _) => v,
                (None, Some(s)) => serde_json::from_str(&s.value).unwrap_or(Value::String(s.value)),
                (None, None) => Value::Null,
            }),
            (None, None) => {
                return Err(EntityError::InvalidField {
                    field: "assessment",
                    reason: "neither feedback nor expectation".to_owned(),
                });
            }
        };
        let time = |t: Option<String>| t.and_then(|t| parse_request_time(&t).ok());
        Ok(Assessment {
            assessment_id: wire.assessment_id,
            name: wire.assessment_name,
            trace_id: wire.trace_id,
            span_id: wire.span_id.filter(|s| !s.is_empty()),
            source: wire.source,
            create_time_ms: time(wire.create_time),
            last_update_time_ms: time(wire.last_update_time),
            value,
            rationale: wire.rationale,
            metadata: wire.metadata.unwrap_or_default(),
        })
    }

    /// The REST form of this assessment, as MLflow's client sends it (ids, source, times,
    /// value, rationale, metadata; expectations that are not a string, number or bool as
    /// `serialized_value` JSON).
    ///
    /// # Errors
    /// [`EntityError`] when an expectation's value cannot be written as JSON.
    pub fn to_value(&self) -> Result<Value> {
        let mut m = Map::new();
        if let Some(id) = &self.assessment_id {
            m.insert("assessment_id".into(), id.clone().into());
        }
        m.insert("assessment_name".into(), self.name.clone().into());
        m.insert("trace_id".into(), self.trace_id.clone().into());
        if let Some(span) = &self.span_id {
            m.insert("span_id".into(), span.clone().into());
        }
        if let Some(source) = &self.source {
            m.insert("source".into(), serde_json::to_value(source)?);
        }
        if let Some(ms) = self.create_time_ms {
            m.insert("create_time".into(), format_request_time(ms).into());
        }
        if let Some(ms) = self.last_update_time_ms {
            m.insert("last_update_time".into(), format_request_time(ms).into());
        }
        let (key, body) = self.value_body()?;
        m.insert(key.into(), body);
        if let Some(r) = &self.rationale {
            m.insert("rationale".into(), r.clone().into());
        }
        if !self.metadata.is_empty() {
            m.insert("metadata".into(), Value::Object(self.metadata.clone()));
        }
        if matches!(self.value, AssessmentValue::Feedback { .. }) {
            m.insert("valid".into(), true.into());
        }
        Ok(Value::Object(m))
    }

    /// The value's REST form: `("feedback", {...})` or `("expectation", {...})`.
    ///
    /// # Errors
    /// [`EntityError`] when an expectation's value cannot be written as JSON.
    pub fn value_body(&self) -> Result<(&'static str, Value)> {
        Ok(match &self.value {
            AssessmentValue::Feedback { value, error } => {
                let mut f = Map::new();
                f.insert("value".into(), value.clone());
                if let Some(e) = error {
                    let mut e = e.clone();
                    e.stack_trace = e.stack_trace.map(|t| truncate_stack_trace(&t));
                    f.insert("error".into(), serde_json::to_value(e)?);
                }
                ("feedback", Value::Object(f))
            }
            AssessmentValue::Expectation(v) => {
                let body = match v {
                    Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                        serde_json::json!({ "value": v })
                    }
                    other => serde_json::json!({
                        "serialized_value": {
                            "serialization_format": "JSON_FORMAT",
                            "value": to_python_json(other)?,
                        }
                    }),
                };
                ("expectation", body)
            }
        })
    }
}

/// MLflow's cut of a long stack trace: a marker, then its last characters, 10,000 in all
/// (counted in characters, as Python counts them).
fn truncate_stack_trace(trace: &str) -> String {
    const MAX: usize = 10_000;
    const PREFIX: &str = "[Stack trace is truncated]\n...\n";
    let chars = trace.chars().count();
    if chars <= MAX {
        return trace.to_owned();
    }
    let keep = MAX - PREFIX.chars().count();
    let start = trace
        .char_indices()
        .nth(chars - keep)
        .map_or(trace.len(), |(i, _)| i);
    format!("{PREFIX}{}", &trace[start..])
}

impl TraceInfo {
    /// The trace's assessments, as read from the server (unreadable ones left out).
    pub fn assessment_list(&self) -> Vec<Assessment> {
        self.assessments
            .iter()
            .filter_map(|a| Assessment::from_value(a).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_stack_traces_are_cut_as_mlflow_cuts_them() {
        let long = "é".repeat(10_005) + "end";
        let cut = truncate_stack_trace(&long);
        assert_eq!(cut.chars().count(), 10_000);
        assert!(cut.starts_with("[Stack trace is truncated]\n...\n"));
        assert!(cut.ends_with("éend"));
        assert_eq!(truncate_stack_trace("short"), "short");
    }
}
