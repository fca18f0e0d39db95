//! Token usage of LLM calls and its aggregation over a trace (`aggregate_usage_from_spans`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Token counts of one LLM call (`mlflow.chat.tokenUsage`) or of a whole trace
/// (`mlflow.trace.tokenUsage`). Field order matches the JSON MLflow writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: i64,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: i64,
    /// Total tokens.
    #[serde(default)]
    pub total_tokens: i64,
    /// Tokens read from a prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<i64>,
    /// Tokens written to a prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<i64>,
    /// Tokens written to a prompt cache with a TTL above one hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens_above_1hr: Option<i64>,
}

impl TokenUsage {
    /// `input` and `output` tokens, their sum as the total.
    pub fn new(input_tokens: i64, output_tokens: i64) -> Self {
        TokenUsage {
            input_tokens,
            output_tokens,
            total_tokens: input_tokens.saturating_add(output_tokens),
            ..TokenUsage::default()
        }
    }

    /// With tokens read from a prompt cache (`cache_read_input_tokens`).
    #[must_use]
    pub fn with_cache_read(mut self, tokens: i64) -> Self {
        self.cache_read_input_tokens = Some(tokens);
        self
    }

    /// With tokens written to a prompt cache (`cache_creation_input_tokens`).
    #[must_use]
    pub fn with_cache_creation(mut self, tokens: i64) -> Self {
        self.cache_creation_input_tokens = Some(tokens);
        self
    }

    /// Reads a decoded `mlflow.chat.tokenUsage` value; `None` if it is not an object of integers.
    pub fn from_value(value: &Value) -> Option<TokenUsage> {
        if !value.is_object() {
            return None;
        }
        TokenUsage::deserialize(value).ok()
    }

    pub(crate) fn add(&mut self, other: &TokenUsage) {
        fn add_opt(a: &mut Option<i64>, b: Option<i64>) {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0).saturating_add(b));
            }
        }
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        add_opt(
            &mut self.cache_read_input_tokens,
            other.cache_read_input_tokens,
        );
        add_opt(
            &mut self.cache_creation_input_tokens,
            other.cache_creation_input_tokens,
        );
        add_opt(
            &mut self.cache_creation_input_tokens_above_1hr,
            other.cache_creation_input_tokens_above_1hr,
        );
    }
}
