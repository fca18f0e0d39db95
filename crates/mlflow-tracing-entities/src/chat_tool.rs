//! [`ChatTool`]: a tool an LLM may call, as `mlflow.chat.tools` stores it (MLflow's
//! `ChatTool`, dumped without unset fields).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A function tool offered to a chat model (`{"type": "function", "function": {...}}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatTool {
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub tool_type: String,
    /// The function.
    pub function: FunctionToolDefinition,
}

/// A function tool's definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionToolDefinition {
    /// The function's name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its parameters, as a JSON Schema object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether the model must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl ChatTool {
    /// A function tool named `name`.
    pub fn function(name: impl Into<String>) -> Self {
        ChatTool {
            tool_type: "function".to_owned(),
            function: FunctionToolDefinition {
                name: name.into(),
                description: None,
                parameters: None,
                strict: None,
            },
        }
    }

    /// Sets the description.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.function.description = Some(description.into());
        self
    }

    /// Sets the parameters' JSON Schema.
    #[must_use]
    pub fn parameters(mut self, schema: Value) -> Self {
        self.function.parameters = Some(schema);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::to_attribute_json;

    #[test]
    fn stored_as_mlflow_stores_a_chat_tool() {
        // Verbatim from MLflow 3.17.2's set_span_chat_tools.
        let tools = [
            ChatTool::function("add")
                .description("Add two numbers")
                .parameters(serde_json::json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]})),
            ChatTool::function("ping"),
        ];
        assert_eq!(
            to_attribute_json(&tools).unwrap(),
            r#"[{"type": "function", "function": {"name": "add", "description": "Add two numbers", "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}, {"type": "function", "function": {"name": "ping"}}]"#
        );
    }
}
