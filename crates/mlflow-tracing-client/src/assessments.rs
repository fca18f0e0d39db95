//! Feedback and expectations on traces: the assessments endpoints MLflow's Python client uses
//! (`mlflow.log_feedback`, `log_expectation`, `get_assessment`, `update_assessment`,
//! `delete_assessment`), `/api/3.0/mlflow/traces/{trace_id}/assessments[/{id}]`.

use std::time::{SystemTime, UNIX_EPOCH};

use mlflow_tracing_entities::{
    Assessment, AssessmentError, AssessmentSource, AssessmentSourceType, AssessmentValue,
};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::client::TrackingClient;
use crate::error::ClientError;
use crate::traces::validate_trace_id;
use crate::transport::{Call, segment};

/// Feedback on a trace or one of its spans (MLflow's `mlflow.log_feedback`): a value (any JSON;
/// numbers come back as floats, as the server keeps protobuf values) or an error, with a
/// source (default: code, `"default"`), a rationale and metadata.
#[derive(Clone, Debug)]
#[must_use]
pub struct Feedback {
    name: String,
    value: Result<Value, String>,
    error: Option<AssessmentError>,
    source: AssessmentSource,
    rationale: Option<String>,
    metadata: Map<String, Value>,
    span_id: Option<String>,
}

impl Feedback {
    /// Feedback `name` with `value` (a value that cannot be written as JSON makes the call
    /// fail before anything is sent).
    pub fn new<T: Serialize + ?Sized>(name: impl Into<String>, value: &T) -> Self {
        Feedback {
            name: name.into(),
            value: serde_json::to_value(value).map_err(|e| e.to_string()),
            error: None,
            source: AssessmentSource::new(AssessmentSourceType::Code, "default"),
            rationale: None,
            metadata: Map::new(),
            span_id: None,
        }
    }

    /// Feedback `name` that could not be given (a judge that failed): the error instead of a
    /// value.
    pub fn error(name: impl Into<String>, error: AssessmentError) -> Self {
        let mut feedback = Feedback::new(name, &Value::Null);
        feedback.error = Some(error);
        feedback
    }

    /// Who gave it.
    pub fn source(mut self, source: AssessmentSource) -> Self {
        self.source = source;
        self
    }

    /// Why.
    pub fn rationale(mut self, rationale: impl Into<String>) -> Self {
        self.rationale = Some(rationale.into());
        self
    }

    /// A metadata entry (stored as a string, as MLflow stores it).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata
            .insert(key.into(), Value::String(value.into()));
        self
    }

    /// The span it is about (16 hex digits).
    pub fn span_id(mut self, span_id: impl Into<String>) -> Self {
        self.span_id = Some(span_id.into());
        self
    }
}

/// What a trace's output should have been (MLflow's `mlflow.log_expectation`), with a source
/// (default: human, `"default"`) and metadata.
#[derive(Clone, Debug)]
#[must_use]
pub struct Expectation {
    name: String,
    value: Result<Value, String>,
    source: AssessmentSource,
    metadata: Map<String, Value>,
    span_id: Option<String>,
}

impl Expectation {
    /// Expectation `name` with `value` (not `null`).
    pub fn new<T: Serialize + ?Sized>(name: impl Into<String>, value: &T) -> Self {
        Expectation {
            name: name.into(),
            value: serde_json::to_value(value).map_err(|e| e.to_string()),
            source: AssessmentSource::new(AssessmentSourceType::Human, "default"),
            metadata: Map::new(),
            span_id: None,
        }
    }

    /// Who set it.
    pub fn source(mut self, source: AssessmentSource) -> Self {
        self.source = source;
        self
    }

    /// A metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata
            .insert(key.into(), Value::String(value.into()));
        self
    }

    /// The span it is about.
    pub fn span_id(mut self, span_id: impl Into<String>) -> Self {
        self.span_id = Some(span_id.into());
        self
    }
}

/// Changes to an assessment (MLflow's `update_assessment`): its name (always sent, as MLflow
/// does), and optionally a new value of the same kind, rationale, metadata (merged with the
/// existing, new keys winning). Source, span and creation time never change.
#[derive(Clone, Debug)]
#[must_use]
pub struct AssessmentUpdate {
    name: String,
    value: Option<Result<AssessmentValue, String>>,
    rationale: Option<String>,
    metadata: Map<String, Value>,
}

impl AssessmentUpdate {
    /// An update that (re)sets the name.
    pub fn new(name: impl Into<String>) -> Self {
        AssessmentUpdate {
            name: name.into(),
            value: None,
            rationale: None,
            metadata: Map::new(),
        }
    }

    /// A new feedback value (the assessment must be feedback).
    pub fn feedback<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.value = Some(
            serde_json::to_value(value)
                .map(|value| AssessmentValue::Feedback { value, error: None })
                .map_err(|e| e.to_string()),
        );
        self
    }

    /// A new expected value (the assessment must be an expectation).
    pub fn expectation<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.value = Some(
            serde_json::to_value(value)
                .map(AssessmentValue::Expectation)
                .map_err(|e| e.to_string()),
        );
        self
    }

    /// A new rationale.
    pub fn rationale(mut self, rationale: impl Into<String>) -> Self {
        self.rationale = Some(rationale.into());
        self
    }

    /// A metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata
            .insert(key.into(), Value::String(value.into()));
        self
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn validate_assessment_name(name: &str) -> Result<(), ClientError> {
    if name.trim().is_empty() || name.len() > 1000 || name.chars().any(char::is_control) {
        return Err(ClientError::InvalidArgument {
            what: "assessment name",
            value: name.to_owned(),
            reason: "must be non-empty, at most 1000 characters, without control characters",
        });
    }
    Ok(())
}

fn validate_assessment_id(id: &str) -> Result<(), ClientError> {
    if id.is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
        return Err(ClientError::InvalidArgument {
            what: "assessment id",
            value: id.to_owned(),
            reason: "must be non-empty, at most 512 characters, without control characters",
        });
    }
    Ok(())
}

fn validate_span_id(id: Option<&str>) -> Result<(), ClientError> {
    match id {
        Some(id) if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Err(ClientError::InvalidArgument {
                what: "span id",
                value: id.to_owned(),
                reason: "must be 16 hexadecimal digits",
            })
        }
        _ => Ok(()),
    }
}

fn value_of(value: &Result<Value, String>, what: &'static str) -> Result<Value, ClientError> {
    value.clone().map_err(|_| ClientError::InvalidArgument {
        what,
        value: "<the value>".to_owned(),
        reason: "cannot be written as JSON",
    })
}

fn encoding_error(e: &mlflow_tracing_entities::EntityError) -> ClientError {
    ClientError::InvalidArgument {
        what: "assessment value",
        value: "<the value>".to_owned(),
        reason: crate::traces::leak_reason(e),
    }
}

/// The `{"assessment": …}` answer.
fn answer(body: &[u8], method: &'static str, endpoint: &str) -> Result<Assessment, ClientError> {
    let decode = |message: String| ClientError::Decode {
        method,
        endpoint: endpoint.to_owned(),
        message,
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| decode(e.to_string()))?;
    Assessment::from_value(&v["assessment"]).map_err(|e| decode(e.to_string()))
}

impl TrackingClient {
    async fn create_assessment(&self, assessment: &Assessment) -> Result<Assessment, ClientError> {
        let body = serde_json::json!({
            "assessment": assessment.to_value().map_err(|e| encoding_error(&e))?,
        });
        let endpoint = format!(
            "/api/3.0/mlflow/traces/{}/assessments",
            segment(&assessment.trace_id)
        );
        let call = Call::new(Method::POST, endpoint.clone()).json(body.to_string());
        let bytes = self.send(call).await?;
        answer(&bytes, "POST", &endpoint)
    }

    /// Logs feedback on a trace (`POST …/traces/{trace_id}/assessments`); the stored
    /// assessment, with its id.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an empty name, a bad trace or span id or a value
    /// that is not JSON (nothing is sent); [`ClientError::Http`] for the server's refusal (404
    /// for an unknown trace).
    pub async fn log_feedback(
        &self,
        trace_id: &str,
        feedback: &Feedback,
    ) -> Result<Assessment, ClientError> {
        validate_trace_id(trace_id)?;
        validate_assessment_name(&feedback.name)?;
        validate_span_id(feedback.span_id.as_deref())?;
        let now = now_ms();
        let assessment = Assessment {
            assessment_id: None,
            name: feedback.name.clone(),
            trace_id: trace_id.to_owned(),
            span_id: feedback.span_id.clone(),
            source: Some(feedback.source.clone()),
            create_time_ms: Some(now),
            last_update_time_ms: Some(now),
            value: AssessmentValue::Feedback {
                value: value_of(&feedback.value, "feedback value")?,
                error: feedback.error.clone(),
            },
            rationale: feedback.rationale.clone(),
            metadata: feedback.metadata.clone(),
        };
        self.create_assessment(&assessment).await
    }

    /// Logs an expectation on a trace; the stored assessment.
    ///
    /// # Errors
    /// As [`TrackingClient::log_feedback`]; a `null` value is refused too.
    pub async fn log_expectation(
        &self,
        trace_id: &str,
        expectation: &Expectation,
    ) -> Result<Assessment, ClientError> {
        validate_trace_id(trace_id)?;
        validate_assessment_name(&expectation.name)?;
        validate_span_id(expectation.span_id.as_deref())?;
        let value = value_of(&expectation.value, "expectation value")?;
        if value.is_null() {
            return Err(ClientError::InvalidArgument {
                what: "expectation value",
                value: "null".to_owned(),
                reason: "an expectation needs a value",
            });
        }
        let now = now_ms();
        let assessment = Assessment {
            assessment_id: None,
            name: expectation.name.clone(),
            trace_id: trace_id.to_owned(),
            span_id: expectation.span_id.clone(),
            source: Some(expectation.source.clone()),
            create_time_ms: Some(now),
            last_update_time_ms: Some(now),
            value: AssessmentValue::Expectation(value),
            rationale: None,
            metadata: expectation.metadata.clone(),
        };
        self.create_assessment(&assessment).await
    }

    /// One assessment of a trace.
    ///
    /// # Errors
    /// [`ClientError`]; 404 for an unknown trace or assessment.
    pub async fn get_assessment(
        &self,
        trace_id: &str,
        assessment_id: &str,
    ) -> Result<Assessment, ClientError> {
        validate_trace_id(trace_id)?;
        validate_assessment_id(assessment_id)?;
        let endpoint = format!(
            "/api/3.0/mlflow/traces/{}/assessments/{}",
            segment(trace_id),
            segment(assessment_id)
        );
        let bytes = self.send(Call::new(Method::GET, endpoint.clone())).await?;
        answer(&bytes, "GET", &endpoint)
    }

    /// Every assessment of a trace, from its info.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn get_assessments(&self, trace_id: &str) -> Result<Vec<Assessment>, ClientError> {
        Ok(self.get_trace_info(trace_id).await?.assessment_list())
    }

    /// Changes an assessment (`PATCH`, with MLflow's update mask); the stored result.
    ///
    /// # Errors
    /// As [`TrackingClient::log_feedback`]; 400 when the new value's kind is not the
    /// assessment's (feedback on an expectation).
    pub async fn update_assessment(
        &self,
        trace_id: &str,
        assessment_id: &str,
        update: &AssessmentUpdate,
    ) -> Result<Assessment, ClientError> {
        validate_trace_id(trace_id)?;
        validate_assessment_id(assessment_id)?;
        validate_assessment_name(&update.name)?;
        let mut assessment = Map::new();
        assessment.insert("assessment_id".into(), assessment_id.into());
        assessment.insert("assessment_name".into(), update.name.clone().into());
        assessment.insert("trace_id".into(), trace_id.into());
        // MLflow's mask order: name, expectation, feedback, rationale, metadata.
        let mut mask = vec!["assessmentName"];
        if let Some(value) = &update.value {
            let value = value.clone().map_err(|_| ClientError::InvalidArgument {
                what: "assessment value",
                value: "<the value>".to_owned(),
                reason: "cannot be written as JSON",
            })?;
            let probe = Assessment {
                assessment_id: None,
                name: String::new(),
                trace_id: String::new(),
                span_id: None,
                source: None,
                create_time_ms: None,
                last_update_time_ms: None,
                value,
                rationale: None,
                metadata: Map::new(),
            };
            let (key, body) = probe.value_body().map_err(|e| encoding_error(&e))?;
            assessment.insert(key.into(), body);
            mask.push(key);
        }
        if let Some(r) = &update.rationale {
            assessment.insert("rationale".into(), r.clone().into());
            mask.push("rationale");
        }
        if !update.metadata.is_empty() {
            assessment.insert("metadata".into(), Value::Object(update.metadata.clone()));
            mask.push("metadata");
        }
        let body = serde_json::json!({
            "assessment": Value::Object(assessment),
            "update_mask": mask.join(","),
        });
        let endpoint = format!(
            "/api/3.0/mlflow/traces/{}/assessments/{}",
            segment(trace_id),
            segment(assessment_id)
        );
        let call = Call::new(Method::PATCH, endpoint.clone()).json(body.to_string());
        let bytes = self.send(call).await?;
        answer(&bytes, "PATCH", &endpoint)
    }

    /// Deletes an assessment (the server answers 200 for unknown ones too).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn delete_assessment(
        &self,
        trace_id: &str,
        assessment_id: &str,
    ) -> Result<(), ClientError> {
        validate_trace_id(trace_id)?;
        validate_assessment_id(assessment_id)?;
        let endpoint = format!(
            "/api/3.0/mlflow/traces/{}/assessments/{}",
            segment(trace_id),
            segment(assessment_id)
        );
        let body = serde_json::json!({"trace_id": trace_id, "assessment_id": assessment_id});
        let call = Call::new(Method::DELETE, endpoint).json(body.to_string());
        self.send(call).await.map(drop)
    }
}
