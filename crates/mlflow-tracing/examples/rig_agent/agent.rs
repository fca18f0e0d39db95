//! The rig agent of the `rig_agent` example: one tool (`add`) and a model reached through
//! rig's OpenAI provider on the Chat Completions route. Nothing here knows about MLflow: rig
//! emits its own `tracing` spans (`invoke_agent`, `chat`, `execute_tool`) with the
//! OpenTelemetry GenAI attributes, and whatever layer is installed records them.

use rig_agent::AgentBuilder;
use rig_core::providers::openai::{OpenAIConfig, Route};
use rig_core::tool::PortableTool;
use serde::Deserialize;

/// The tool's arguments.
#[derive(Debug, Deserialize)]
pub(crate) struct AddArgs {
    /// The first addend.
    pub(crate) x: i64,
    /// The second addend.
    pub(crate) y: i64,
}

/// A tool error (adding never fails, but a tool names one).
#[derive(Debug)]
pub(crate) struct AddError;

impl std::fmt::Display for AddError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the sum overflows")
    }
}

impl std::error::Error for AddError {}

/// Adds two integers.
#[derive(Debug)]
pub(crate) struct Add;

impl PortableTool for Add {
    const NAME: &'static str = "add";
    type Args = AddArgs;
    type Output = i64;
    type Error = AddError;

    fn description(&self) -> String {
        "Adds two integers".to_owned()
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "x": {"type": "integer", "description": "The first addend"},
                "y": {"type": "integer", "description": "The second addend"}
            },
            "required": ["x", "y"]
        })
    }

    async fn call(&self, args: AddArgs) -> Result<i64, AddError> {
        args.x.checked_add(args.y).ok_or(AddError)
    }
}

/// Asks the agent `question` with the model `model` at `base_url` (an OpenAI-compatible
/// `…/v1`), returning its answer.
pub(crate) async fn ask(
    base_url: &str,
    api_key: &str,
    model: &str,
    question: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let model = OpenAIConfig::new(api_key.to_owned())
        .with_base_url(base_url)
        .with_route(Route::Chat)
        .client()
        .completion(model);
    let agent = AgentBuilder::new(model)
        .name("calculator")
        .preamble("You are a calculator. Use the add tool for sums.")
        .tool(Add)
        // rig records message contents in its spans only when asked to.
        .record_content_telemetry(true)
        .build();
    let response = agent.prompt(question).max_turns(3).await?;
    Ok(response.output().to_owned())
}
