//! A rig agent traced into MLflow through `tracing`. The setup is a registry with
//! [`MlflowLayer::genai`] and `mlflow_tracing::init` (the `fmt` layer only shows the SDK's own
//! logs); rig's own spans become an AGENT span, CHAT_MODEL spans and a TOOL span with their
//! messages, token usage and the trace's previews.
//!
//! ```text
//! MLFLOW_TRACKING_URI=http://127.0.0.1:5000 OPENAI_API_KEY=sk-… \
//!     cargo run -p mlflow-tracing --features tracing-layer --example rig_agent
//! ```
//!
//! `OPENAI_BASE_URL` points it at any OpenAI-compatible server (the tests use a local fake);
//! `OPENAI_MODEL` picks the model (default `gpt-4o-mini`). Prints the MLflow trace id.

#![expect(clippy::print_stdout, reason = "an example reports on stdout")]

mod agent;

use mlflow_tracing::layer::MlflowLayer;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, fmt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::registry()
        .with(MlflowLayer::genai())
        // Optional: the SDK's own log lines (RUST_LOG, default warnings).
        .with(fmt::layer().with_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        ))
        .init();
    let _guard = mlflow_tracing::init(mlflow_tracing::TracerBuilder::from_env()?)?;

    let base_url =
        std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
    let api_key = std::env::var("OPENAI_API_KEY")?;
    let model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
    let answer = agent::ask(&base_url, &api_key, &model, "What is 2 + 3?").await?;
    println!("answer: {answer}");
    if let Some(trace_id) = mlflow_tracing::context::last_active_trace_id() {
        println!("trace: {trace_id}");
    }
    Ok(())
}
