//! Typed setters for what MLflow's LLM spans carry, so user code writes no raw keys: token
//! usage, chat tools, model and provider, message format.

use std::borrow::Cow;

use mlflow_tracing_entities::json::{string_attribute_json, to_attribute_json};
use mlflow_tracing_entities::{ChatTool, TokenUsage, keys};

use crate::live::LiveSpan;

impl LiveSpan {
    /// Sets `mlflow.chat.tokenUsage` (MLflow sums it into the trace's token usage).
    pub fn set_token_usage(&self, usage: &TokenUsage) {
        if let Some(i) = self.recording()
            && let Ok(json) = to_attribute_json(usage)
        {
            i.set_json(Cow::Borrowed(keys::span::CHAT_USAGE), json);
        }
    }

    /// Sets `mlflow.chat.tools`, the tools offered to the model (MLflow's
    /// `set_span_chat_tools`).
    pub fn set_chat_tools(&self, tools: &[ChatTool]) {
        self.set_attribute(keys::span::CHAT_TOOLS, tools);
    }

    /// Sets `mlflow.llm.model`, the model's name.
    pub fn set_model(&self, model: &str) {
        self.set_string(keys::span::MODEL, model);
    }

    /// Sets `mlflow.llm.provider` (`"openai"`, `"anthropic"`, …).
    pub fn set_model_provider(&self, provider: &str) {
        self.set_string(keys::span::MODEL_PROVIDER, provider);
    }

    /// Sets `mlflow.message.format`, the schema of the inputs' and outputs' messages as
    /// MLflow's UI reads them (`"openai"`, `"anthropic"`, `"gemini"`, `"langchain"`, …).
    pub fn set_message_format(&self, format: &str) {
        self.set_string(keys::span::MESSAGE_FORMAT, format);
    }

    fn set_string(&self, key: &'static str, value: &str) {
        if let Some(i) = self.recording() {
            i.set_json(Cow::Borrowed(key), string_attribute_json(value));
        }
    }
}
