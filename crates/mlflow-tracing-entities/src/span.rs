//! Finished spans (`entities/span.py`): `Span`, its attributes as MLflow stores them, its parts
//! (`SpanParts`) and a builder.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::attributes::SpanAttributes;
use crate::error::Result;
use crate::ids::{MlflowTraceId, SpanId, TraceId};
use crate::json::{decode_attribute, string_attribute_json, to_attribute_json};
use crate::keys;
use crate::span_kinds::{Link, SpanEvent, SpanLogLevel, SpanStatus, SpanType};
use crate::token_usage::TokenUsage;

/// A finished, immutable span.
///
/// Attributes are kept exactly as MLflow stores them: values set through the SDK are JSON text
/// (`"\"LLM\""`, `"1"`, `"{\"a\": 1}"`); values set by foreign OpenTelemetry code keep their raw
/// form. The typed accessors decode them as MLflow's `Span.get_attribute` does.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_id: Option<SpanId>,
    pub(crate) name: String,
    pub(crate) start_time_ns: u64,
    pub(crate) end_time_ns: Option<u64>,
    pub(crate) status: SpanStatus,
    pub(crate) events: Vec<SpanEvent>,
    pub(crate) links: Vec<Link>,
    pub(crate) attributes: SpanAttributes,
}

impl Span {
    /// Starts building a span of trace `trace_id`. The MLflow trace id attribute
    /// (`mlflow.traceRequestId`) is set to `tr-<hex>`; override it with
    /// [`SpanBuilder::request_id`] for Unity Catalog traces.
    pub fn builder(trace_id: TraceId, span_id: SpanId, name: impl Into<String>) -> SpanBuilder {
        let mut attributes = SpanAttributes::new();
        attributes.insert(
            keys::span::REQUEST_ID,
            Value::String(string_attribute_json(
                &MlflowTraceId::v3(trace_id).to_string(),
            )),
        );
        SpanBuilder {
            span: Span {
                trace_id,
                span_id,
                parent_id: None,
                name: name.into(),
                start_time_ns: 0,
                end_time_ns: None,
                status: SpanStatus::default(),
                events: Vec::new(),
                links: Vec::new(),
                attributes,
            },
        }
    }

    /// The OpenTelemetry trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }
    /// The span id.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }
    /// The parent span id; `None` for a root span.
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }
    /// The span name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Start time, ns since the Unix epoch.
    pub fn start_time_ns(&self) -> u64 {
        self.start_time_ns
    }
    /// End time, ns since the Unix epoch; `None` for a span read back unfinished.
    pub fn end_time_ns(&self) -> Option<u64> {
        self.end_time_ns
    }
    /// The status.
    pub fn status(&self) -> &SpanStatus {
        &self.status
    }
    /// The events, in order.
    pub fn events(&self) -> &[SpanEvent] {
        &self.events
    }
    /// The links.
    pub fn links(&self) -> &[Link] {
        &self.links
    }
    /// Attributes as stored (JSON text for MLflow-set values).
    pub fn raw_attributes(&self) -> &SpanAttributes {
        &self.attributes
    }

    /// One attribute, decoded (see [`decode_attribute`]).
    pub fn attribute(&self, key: &str) -> Option<Value> {
        self.attributes.get(key).and_then(decode_attribute)
    }

    /// All attributes, decoded, in insertion order.
    pub fn attributes(&self) -> Map<String, Value> {
        self.attributes
            .iter()
            .map(|(k, v)| (k.to_owned(), decode_attribute(v).unwrap_or(Value::Null)))
            .collect()
    }

    fn string_attribute(&self, key: &str) -> Option<String> {
        match self.attribute(key)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The MLflow trace id from `mlflow.traceRequestId` (what Python's `Span.trace_id` returns).
    pub fn request_id(&self) -> Option<String> {
        self.string_attribute(keys::span::REQUEST_ID)
    }
    /// Decoded `mlflow.spanInputs`.
    pub fn inputs(&self) -> Option<Value> {
        self.attribute(keys::span::INPUTS)
    }
    /// Decoded `mlflow.spanOutputs`.
    pub fn outputs(&self) -> Option<Value> {
        self.attribute(keys::span::OUTPUTS)
    }
    /// Raw JSON text of `mlflow.spanInputs` (what previews and `mlflow.traceInputs` are cut from).
    pub fn raw_inputs(&self) -> Option<&str> {
        self.attributes
            .get(keys::span::INPUTS)
            .and_then(Value::as_str)
    }
    /// Raw JSON text of `mlflow.spanOutputs`.
    pub fn raw_outputs(&self) -> Option<&str> {
        self.attributes
            .get(keys::span::OUTPUTS)
            .and_then(Value::as_str)
    }
    /// The span type; `None` when unset or `null`.
    pub fn span_type(&self) -> Option<SpanType> {
        self.string_attribute(keys::span::SPAN_TYPE)
            .map(SpanType::from)
    }
    /// `mlflow.spanFunctionName`.
    pub fn function_name(&self) -> Option<String> {
        self.string_attribute(keys::span::FUNCTION_NAME)
    }
    /// `mlflow.spanDescription`.
    pub fn description(&self) -> Option<String> {
        self.string_attribute(keys::span::DESCRIPTION)
    }
    /// `mlflow.spanLogLevel`.
    pub fn log_level(&self) -> Option<SpanLogLevel> {
        self.attribute(keys::span::LOG_LEVEL)?
            .as_i64()
            .and_then(SpanLogLevel::from_i64)
    }
    /// `mlflow.chat.tokenUsage`, if present and well formed.
    pub fn token_usage(&self) -> Option<TokenUsage> {
        let stored = self.attributes.get(keys::span::CHAT_USAGE)?;
        // Fast paths: the flat object the SDKs write, read without a parser; else the stored
        // JSON object read straight into the struct (no `Value`).
        if let Value::String(text) = stored
            && text.trim_start().starts_with('{')
        {
            if let Some(usage) = TokenUsage::from_flat_json(text) {
                return Some(usage);
            }
            if let Ok(usage) = serde_json::from_str::<TokenUsage>(text.as_str()) {
                return Some(usage);
            }
        }
        TokenUsage::from_value(&decode_attribute(stored)?)
    }
    /// `mlflow.llm.model`.
    pub fn model_name(&self) -> Option<String> {
        self.string_attribute(keys::span::MODEL)
    }
}

/// Every field of a span, for code that converts spans from another representation (the SDK's
/// span processor) without the per-field builder.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanParts {
    /// The OpenTelemetry trace id.
    pub trace_id: TraceId,
    /// The span id.
    pub span_id: SpanId,
    /// The parent span id; `None` for a root span.
    pub parent_id: Option<SpanId>,
    /// The name.
    pub name: String,
    /// Start time, ns since the Unix epoch.
    pub start_time_ns: u64,
    /// End time, ns since the Unix epoch.
    pub end_time_ns: Option<u64>,
    /// The status.
    pub status: SpanStatus,
    /// Events, in order.
    pub events: Vec<SpanEvent>,
    /// Links.
    pub links: Vec<Link>,
    /// Attributes as stored (JSON text for MLflow-set values), including
    /// `mlflow.traceRequestId`.
    pub attributes: SpanAttributes,
}

impl From<SpanParts> for Span {
    fn from(p: SpanParts) -> Span {
        Span {
            trace_id: p.trace_id,
            span_id: p.span_id,
            parent_id: p.parent_id,
            name: p.name,
            start_time_ns: p.start_time_ns,
            end_time_ns: p.end_time_ns,
            status: p.status,
            events: p.events,
            links: p.links,
            attributes: p.attributes,
        }
    }
}

/// Edits of a finished span, for span processors that redact or enrich spans before export.
impl Span {
    /// Sets an attribute to `json.dumps(value)` (MLflow's stored form).
    ///
    /// # Errors
    /// See [`to_attribute_json`]; the span is unchanged on error.
    pub fn set_attribute<T: Serialize + ?Sized>(
        &mut self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<()> {
        let json = to_attribute_json(value)?;
        self.attributes.insert(key.into(), Value::String(json));
        Ok(())
    }
    /// Stores an attribute value exactly as given (no JSON encoding).
    pub fn set_raw_attribute(&mut self, key: impl Into<Cow<'static, str>>, value: Value) {
        self.attributes.insert(key, value);
    }
    /// Room for `additional` more attributes.
    pub fn reserve_attributes(&mut self, additional: usize) {
        self.attributes.reserve(additional);
    }
    /// Removes an attribute, keeping the order of the others; returns the stored value.
    pub fn remove_attribute(&mut self, key: &str) -> Option<Value> {
        self.attributes.shift_remove(key)
    }
    /// Replaces `mlflow.spanInputs`.
    ///
    /// # Errors
    /// See [`to_attribute_json`].
    pub fn set_inputs<T: Serialize + ?Sized>(&mut self, inputs: &T) -> Result<()> {
        self.set_attribute(keys::span::INPUTS, inputs)
    }
    /// Replaces `mlflow.spanOutputs`.
    ///
    /// # Errors
    /// See [`to_attribute_json`].
    pub fn set_outputs<T: Serialize + ?Sized>(&mut self, outputs: &T) -> Result<()> {
        self.set_attribute(keys::span::OUTPUTS, outputs)
    }
    /// Renames the span.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }
    /// Replaces the status.
    pub fn set_status(&mut self, status: SpanStatus) {
        self.status = status;
    }
    /// The events, for editing (e.g. to scrub an exception message).
    pub fn events_mut(&mut self) -> &mut Vec<SpanEvent> {
        &mut self.events
    }
}

/// Builds a [`Span`]. Typed setters JSON-encode their values as MLflow stores them.
#[derive(Debug, Clone)]
#[must_use]
pub struct SpanBuilder {
    span: Span,
}

impl SpanBuilder {
    /// Sets the parent span.
    pub fn parent(mut self, parent: Option<SpanId>) -> Self {
        self.span.parent_id = parent;
        self
    }
    /// Sets start and end time (ns since the epoch).
    pub fn times(mut self, start_time_ns: u64, end_time_ns: Option<u64>) -> Self {
        self.span.start_time_ns = start_time_ns;
        self.span.end_time_ns = end_time_ns;
        self
    }
    /// Sets the status.
    pub fn status(mut self, status: SpanStatus) -> Self {
        self.span.status = status;
        self
    }
    /// Overrides `mlflow.traceRequestId` (e.g. with a V4 id).
    pub fn request_id(self, id: &MlflowTraceId) -> Self {
        self.raw_attribute(
            keys::span::REQUEST_ID,
            Value::String(string_attribute_json(&id.to_string())),
        )
    }
    /// Sets `mlflow.spanType`.
    pub fn span_type(self, span_type: &SpanType) -> Self {
        self.raw_attribute(
            keys::span::SPAN_TYPE,
            Value::String(string_attribute_json(span_type.as_str())),
        )
    }
    /// Sets any attribute to `json.dumps(value)`.
    ///
    /// # Errors
    /// See [`to_attribute_json`].
    pub fn attribute<T: Serialize + ?Sized>(
        self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<Self> {
        let json = to_attribute_json(value)?;
        Ok(self.raw_attribute(key, Value::String(json)))
    }
    /// Stores an attribute value exactly as given (no JSON encoding).
    pub fn raw_attribute(mut self, key: impl Into<String>, value: Value) -> Self {
        self.span.attributes.insert(key.into(), value);
        self
    }
    /// Appends an event.
    pub fn event(mut self, event: SpanEvent) -> Self {
        self.span.events.push(event);
        self
    }
    /// Appends a link.
    pub fn link(mut self, link: Link) -> Self {
        self.span.links.push(link);
        self
    }
    /// The finished span.
    pub fn build(self) -> Span {
        self.span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_attribute_is_valid_json_for_any_location() {
        let tid = TraceId::from_int(0xabc);
        // A V4 location may hold characters that need escaping; the stored JSON stays valid.
        let id = MlflowTraceId::v4("cat.\"sch\\ema", tid).unwrap();
        let span = Span::builder(tid, SpanId::from_int(1), "s")
            .request_id(&id)
            .span_type(&SpanType::from("MY \"TYPE\""))
            .build();
        assert_eq!(span.request_id(), Some(id.to_string()));
        assert_eq!(
            span.span_type(),
            Some(SpanType::Custom("MY \"TYPE\"".into()))
        );
        let back = Span::from_otlp(&span.to_otlp(), Some("cat.\"sch\\ema")).unwrap();
        assert_eq!(back.request_id(), Some(id.to_string()));
    }
}
