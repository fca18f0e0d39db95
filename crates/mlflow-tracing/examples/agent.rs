//! A small traced agent: plan → retrieve → LLM → tools (one tool call fails), against a
//! deterministic fake LLM, so it needs no network beyond the MLflow server.
//!
//! ```sh
//! cargo xtask demo                      # starts a local MLflow server and runs this
//! MLFLOW_TRACKING_URI=http://127.0.0.1:5000 cargo run --example agent
//! ```
//!
//! Traces go to the experiment named by `MLFLOW_EXPERIMENT_NAME` (default
//! `mlflow-tracing-demo`). The program prints the trace ids and where to see them.
#![expect(clippy::print_stdout, reason = "an example reports on stdout")]

use std::time::Duration;

use mlflow_tracing::entities::TokenUsage;
use mlflow_tracing::server::{ClientError, MlflowExporter, TrackingClient};
use mlflow_tracing::{TraceUpdate, TracerBuilder, start_span, update_current_trace};
use serde::Serialize;
use serde_json::json;

/// A message of the conversation, in OpenAI's chat format (MLflow previews understand it).
#[derive(Clone, Debug, Serialize)]
struct Message {
    role: &'static str,
    content: String,
}

/// The fake LLM: answers from the documents it is given; deterministic.
#[mlflow_tracing::trace(
    span_type = "CHAT_MODEL",
    attributes(model = "fake-gpt-4o", temperature = 0.0)
)]
async fn chat(messages: Vec<Message>) -> Message {
    tokio::time::sleep(Duration::from_millis(30)).await;
    let prompt_tokens = messages
        .iter()
        .map(|m| m.content.split_whitespace().count())
        .sum::<usize>();
    let last = messages
        .last()
        .map(|m| m.content.clone())
        .unwrap_or_default();
    let context = messages
        .iter()
        .find(|m| m.role == "system")
        .map(|m| m.content.clone())
        .unwrap_or_default();
    // The context sentence sharing the most words with the last message.
    let best = context
        .split_inclusive('.')
        .max_by_key(|sentence| {
            last.split_whitespace()
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
                .filter(|w| w.len() > 3 && sentence.contains(w))
                .count()
        })
        .unwrap_or("I do not know.")
        .trim()
        .to_owned();
    let content = if last.starts_with("Tool results") {
        format!("{best} The unit tool failed; 18 °C is about 64 °F.")
    } else {
        best
    };
    if let Some(span) = mlflow_tracing::context::current_span() {
        let completion = content.split_whitespace().count();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        span.set_token_usage(&TokenUsage::new(count(prompt_tokens), count(completion)));
        span.set_model("fake-gpt-4o");
        span.set_model_provider("local");
        span.set_message_format("openai");
    }
    Message {
        role: "assistant",
        content,
    }
}

/// Plans which steps to run.
#[mlflow_tracing::trace(span_type = "CHAIN")]
fn plan(question: &str) -> Vec<&'static str> {
    if question.contains("weather") {
        vec!["retrieve", "llm", "tools"]
    } else {
        vec!["retrieve", "llm"]
    }
}

/// Finds documents (a fixed corpus).
#[mlflow_tracing::trace(span_type = "RETRIEVER")]
async fn retrieve(query: String, k: usize) -> Vec<serde_json::Value> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    let corpus = [
        ("doc-1", "Paris is the capital of France."),
        (
            "doc-2",
            "Paris has a mild climate; autumn days reach 18 °C.",
        ),
        ("doc-3", "The Eiffel Tower is 330 m tall."),
    ];
    corpus
        .iter()
        .filter(|(_, text)| query.split_whitespace().any(|w| text.contains(w)))
        .take(k)
        .map(|(id, text)| json!({"id": id, "page_content": text}))
        .collect()
}

#[derive(Debug)]
struct ToolError(String);

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolError {}

/// A weather tool.
#[mlflow_tracing::trace(span_type = "TOOL")]
fn get_weather(city: &str) -> Result<serde_json::Value, ToolError> {
    Ok(json!({"city": city, "celsius": 18}))
}

/// A unit conversion tool that fails (the demo's failing tool call).
#[mlflow_tracing::trace(span_type = "TOOL")]
fn convert_units(celsius: i64) -> Result<f64, ToolError> {
    Err(ToolError(format!(
        "unit service unavailable for {celsius} °C"
    )))
}

/// The agent: one trace per question.
#[mlflow_tracing::trace(name = "agent", span_type = "AGENT")]
async fn agent(question: String) -> String {
    update_current_trace(
        TraceUpdate::new()
            .tag("app", "mlflow-tracing-demo")
            .user("demo-user")
            .session("demo-session"),
    )
    .ok();
    let steps = plan(&question);
    let docs = retrieve(question.clone(), 2).await;
    let context = docs
        .iter()
        .filter_map(|d| d["page_content"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let mut messages = vec![
        Message {
            role: "system",
            content: context,
        },
        Message {
            role: "user",
            content: question.clone(),
        },
    ];
    let reply = chat(messages.clone()).await;
    if steps.contains(&"tools") {
        let tools = start_span("run_tools").span_type("CHAIN").start();
        let weather = get_weather("Paris")
            .map(|w| w.to_string())
            .unwrap_or_default();
        let converted = convert_units(18);
        tools.set_outputs(&json!({"weather": weather, "fahrenheit": converted.as_ref().ok()}));
        drop(tools);
        messages.push(reply);
        messages.push(Message {
            role: "user",
            content: format!("Tool results: {weather}; conversion failed"),
        });
        return chat(messages).await.content;
    }
    reply.content
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let experiment =
        std::env::var("MLFLOW_EXPERIMENT_NAME").unwrap_or_else(|_| "mlflow-tracing-demo".into());
    let exporter = MlflowExporter::from_env()?.with_experiment_name(&experiment);
    let guard = mlflow_tracing::init(TracerBuilder::from_env()?.with_exporter(exporter))?;

    let mut trace_ids = Vec::new();
    for question in [
        "What is the capital of France?",
        "What is the weather in Paris, in Fahrenheit?",
    ] {
        let answer = agent(question.to_owned()).await;
        let id = mlflow_tracing::context::last_active_trace_id().unwrap_or_default();
        println!("traced  {id}  {question:?} -> {answer:?}");
        trace_ids.push(id);
    }
    drop(guard); // flushes: every trace is on the server when this returns

    let client = TrackingClient::from_env()?;
    let id = client
        .get_experiment_by_name(&experiment)
        .await?
        .map(|e| e.experiment_id)
        .ok_or_else(|| ClientError::Config(format!("experiment {experiment:?} was not created")))?;
    for trace_id in &trace_ids {
        let trace = client.get_trace(trace_id).await?;
        println!(
            "stored  {trace_id}  {} spans, state {}",
            trace.data.spans.len(),
            trace.info.state
        );
    }
    println!("experiment {experiment:?} (id {id})");
    println!(
        "view the traces: {}/#/experiments/{id}/traces",
        client.tracking_uri()
    );
    Ok(())
}
