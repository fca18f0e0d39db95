//! What a span is made of besides its attributes: its type, log level, status, events and
//! links.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{EntityError, Result};
use crate::ids::{MlflowTraceId, SpanId, TraceId};

/// The kind of work a span did. MLflow's 15 types plus any custom string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SpanType {
    /// A call to a language model.
    Llm,
    /// A chain of steps.
    Chain,
    /// An agent run.
    Agent,
    /// A tool call.
    Tool,
    /// A chat model call.
    ChatModel,
    /// Document retrieval.
    Retriever,
    /// Output parsing.
    Parser,
    /// Embedding computation.
    Embedding,
    /// Reranking.
    Reranker,
    /// Memory access.
    Memory,
    /// The default.
    #[default]
    Unknown,
    /// A workflow.
    Workflow,
    /// A task.
    Task,
    /// A guardrail check.
    Guardrail,
    /// An evaluator.
    Evaluator,
    /// Any other string.
    Custom(String),
}

impl SpanType {
    /// The known types with their stored JSON (`json.dumps` of the name).
    const KNOWN: [(&'static str, SpanType); 15] = [
        ("\"LLM\"", SpanType::Llm),
        ("\"CHAIN\"", SpanType::Chain),
        ("\"AGENT\"", SpanType::Agent),
        ("\"TOOL\"", SpanType::Tool),
        ("\"CHAT_MODEL\"", SpanType::ChatModel),
        ("\"RETRIEVER\"", SpanType::Retriever),
        ("\"PARSER\"", SpanType::Parser),
        ("\"EMBEDDING\"", SpanType::Embedding),
        ("\"RERANKER\"", SpanType::Reranker),
        ("\"MEMORY\"", SpanType::Memory),
        ("\"UNKNOWN\"", SpanType::Unknown),
        ("\"WORKFLOW\"", SpanType::Workflow),
        ("\"TASK\"", SpanType::Task),
        ("\"GUARDRAIL\"", SpanType::Guardrail),
        ("\"EVALUATOR\"", SpanType::Evaluator),
    ];

    /// The name in a known type's stored JSON.
    fn unquote(json: &'static str) -> &'static str {
        json.get(1..json.len() - 1).unwrap_or_default()
    }

    /// The string MLflow stores (`"LLM"`, `"CHAT_MODEL"`, or the custom string).
    pub fn as_str(&self) -> &str {
        match self {
            SpanType::Custom(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(_, t)| t == known)
                .map_or("UNKNOWN", |(json, _)| Self::unquote(json)),
        }
    }

    /// `mlflow.spanType` as stored: the JSON of [`SpanType::as_str`] (borrowed for a known
    /// type, so setting it allocates nothing).
    pub fn attribute_json(&self) -> Cow<'static, str> {
        match self {
            SpanType::Custom(s) => Cow::Owned(crate::json::string_attribute_json(s)),
            known => Cow::Borrowed(
                Self::KNOWN
                    .iter()
                    .find(|(_, t)| t == known)
                    .map_or("\"UNKNOWN\"", |(json, _)| json),
            ),
        }
    }

    /// The log level a span of this type gets when none was set: INFO for LLM, CHAT_MODEL, TOOL,
    /// RETRIEVER, AGENT and EMBEDDING; DEBUG otherwise.
    pub fn default_log_level(&self) -> SpanLogLevel {
        match self {
            SpanType::Llm
            | SpanType::ChatModel
            | SpanType::Tool
            | SpanType::Retriever
            | SpanType::Agent
            | SpanType::Embedding => SpanLogLevel::Info,
            _ => SpanLogLevel::Debug,
        }
    }
}

impl From<&str> for SpanType {
    /// Exact (case-sensitive, as in MLflow) match of the known names; anything else is custom.
    fn from(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(json, _)| Self::unquote(json) == s)
            .map_or_else(|| SpanType::Custom(s.to_owned()), |(_, t)| t.clone())
    }
}

impl From<String> for SpanType {
    fn from(s: String) -> Self {
        SpanType::from(s.as_str())
    }
}

impl fmt::Display for SpanType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SpanType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SpanType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(SpanType::from(<Cow<'de, str>>::deserialize(d)?.as_ref()))
    }
}

/// Span severity, stored under `mlflow.spanLogLevel` as an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpanLogLevel {
    /// 10
    Debug = 10,
    /// 20
    Info = 20,
    /// 30
    Warning = 30,
    /// 40
    Error = 40,
    /// 50
    Critical = 50,
}

impl SpanLogLevel {
    /// The stored integer.
    pub const fn as_i64(self) -> i64 {
        self as i64
    }

    /// From the stored integer; `None` for anything else.
    pub const fn from_i64(v: i64) -> Option<Self> {
        match v {
            10 => Some(SpanLogLevel::Debug),
            20 => Some(SpanLogLevel::Info),
            30 => Some(SpanLogLevel::Warning),
            40 => Some(SpanLogLevel::Error),
            50 => Some(SpanLogLevel::Critical),
            _ => None,
        }
    }
}

impl FromStr for SpanLogLevel {
    type Err = EntityError;

    /// Case-insensitive names (`"info"`, `"WARNING"`) or the integers.
    fn from_str(s: &str) -> Result<Self> {
        let level = match s.to_ascii_uppercase().as_str() {
            "DEBUG" | "10" => SpanLogLevel::Debug,
            "INFO" | "20" => SpanLogLevel::Info,
            "WARNING" | "30" => SpanLogLevel::Warning,
            "ERROR" | "40" => SpanLogLevel::Error,
            "CRITICAL" | "50" => SpanLogLevel::Critical,
            _ => {
                return Err(EntityError::InvalidField {
                    field: "span log level",
                    reason: format!(
                        "{:?} is not DEBUG, INFO, WARNING, ERROR or CRITICAL",
                        crate::error::short(s)
                    ),
                });
            }
        };
        Ok(level)
    }
}

/// A span status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SpanStatusCode {
    /// Not set (MLflow-created spans never finish UNSET).
    #[default]
    Unset,
    /// Success.
    Ok,
    /// Failure.
    Error,
}

impl SpanStatusCode {
    /// `STATUS_CODE_OK` etc., the form of `Span.to_dict()`.
    pub const fn otel_name(self) -> &'static str {
        match self {
            SpanStatusCode::Unset => "STATUS_CODE_UNSET",
            SpanStatusCode::Ok => "STATUS_CODE_OK",
            SpanStatusCode::Error => "STATUS_CODE_ERROR",
        }
    }

    /// `OK`, `ERROR`, `UNSET`: MLflow's enum value.
    pub const fn as_str(self) -> &'static str {
        match self {
            SpanStatusCode::Unset => "UNSET",
            SpanStatusCode::Ok => "OK",
            SpanStatusCode::Error => "ERROR",
        }
    }
}

impl FromStr for SpanStatusCode {
    type Err = EntityError;

    /// Accepts `STATUS_CODE_OK` (current) and `OK` (3.5.0 and V2 layouts), likewise for the others.
    fn from_str(s: &str) -> Result<Self> {
        match s.strip_prefix("STATUS_CODE_").unwrap_or(s) {
            "OK" => Ok(SpanStatusCode::Ok),
            "ERROR" => Ok(SpanStatusCode::Error),
            "UNSET" => Ok(SpanStatusCode::Unset),
            _ => Err(EntityError::InvalidField {
                field: "status code",
                reason: format!("{:?} is not OK, ERROR or UNSET", crate::error::short(s)),
            }),
        }
    }
}

/// A span status: code and description (`""` when none).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SpanStatus {
    /// The code.
    pub code: SpanStatusCode,
    /// The description; only meaningful with [`SpanStatusCode::Error`].
    pub message: String,
}

impl SpanStatus {
    /// `OK` with no message.
    pub fn ok() -> Self {
        SpanStatus {
            code: SpanStatusCode::Ok,
            message: String::new(),
        }
    }

    /// `ERROR` with a message such as `"ValueError: boom"`.
    pub fn error(message: impl Into<String>) -> Self {
        SpanStatus {
            code: SpanStatusCode::Error,
            message: message.into(),
        }
    }
}

impl Serialize for SpanStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SpanStatus", 2)?;
        st.serialize_field("code", self.code.otel_name())?;
        st.serialize_field("message", &self.message)?;
        st.end()
    }
}

/// An event on a span. Attribute values are raw (not JSON-encoded), unlike span attributes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpanEvent {
    /// Event name, e.g. `exception`.
    pub name: String,
    /// Time in ns since the Unix epoch (older layouts may hold µs; kept as is).
    #[serde(rename = "time_unix_nano")]
    pub time_unix_nano: u64,
    /// Raw attribute values.
    pub attributes: Map<String, Value>,
}

impl SpanEvent {
    /// An event named `name`, stamped now, with no attributes yet.
    pub fn now(name: impl Into<String>) -> Self {
        let ns = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self::new(name, ns)
    }

    /// Adds an attribute (kept as given: MLflow stores event attributes raw).
    #[must_use]
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Name of the event that records an error.
    pub const EXCEPTION: &'static str = "exception";

    /// An event with no attributes.
    pub fn new(name: impl Into<String>, time_unix_nano: u64) -> Self {
        SpanEvent {
            name: name.into(),
            time_unix_nano,
            attributes: Map::new(),
        }
    }

    /// MLflow's `exception` event: `exception.message`, `exception.type`, `exception.stacktrace`.
    pub fn exception(
        error_type: impl Into<String>,
        message: impl Into<String>,
        stacktrace: impl Into<String>,
        time_unix_nano: u64,
    ) -> Self {
        let mut attributes = Map::new();
        attributes.insert("exception.message".into(), Value::String(message.into()));
        attributes.insert("exception.type".into(), Value::String(error_type.into()));
        attributes.insert(
            "exception.stacktrace".into(),
            Value::String(stacktrace.into()),
        );
        SpanEvent {
            name: Self::EXCEPTION.into(),
            time_unix_nano,
            attributes,
        }
    }
}

/// A link to a span of this or another trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// The linked trace's MLflow trace id (`tr-…`, `trace:/…` or bare hex, as MLflow accepts).
    pub trace_id: String,
    /// The linked span id.
    pub span_id: SpanId,
    /// Optional attributes (JSON primitives).
    #[serde(default)]
    pub attributes: Option<Map<String, Value>>,
}

impl Link {
    /// The OpenTelemetry trace id behind [`Link::trace_id`].
    ///
    /// # Errors
    /// [`EntityError::InvalidId`] if it is neither an MLflow trace id nor hex.
    pub fn otel_trace_id(&self) -> Result<TraceId> {
        match self.trace_id.parse::<MlflowTraceId>() {
            Ok(id) => Ok(id.otel_trace_id()),
            Err(_) => TraceId::from_hex(&self.trace_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::string_attribute_json;

    #[test]
    fn span_types_keep_their_names_and_stored_json() {
        for (json, t) in SpanType::KNOWN {
            assert_eq!(SpanType::from(t.as_str()), t);
            assert_eq!(t.attribute_json(), string_attribute_json(t.as_str()));
            assert_eq!(t.attribute_json(), json);
        }
        assert_eq!(SpanType::ChatModel.as_str(), "CHAT_MODEL");
        let custom = SpanType::from("my \"type\"");
        assert_eq!(custom, SpanType::Custom("my \"type\"".into()));
        assert_eq!(custom.attribute_json(), r#""my \"type\"""#);
    }
}
