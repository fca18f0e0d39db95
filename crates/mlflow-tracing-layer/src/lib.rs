//! The bridge from `tracing` to MLflow Tracing for Rust: [`MlflowLayer`], a
//! `tracing_subscriber::Layer` that records `tracing` spans as MLflow spans, with the
//! OpenTelemetry GenAI conventions translated as MLflow does.
//!
//! Rust services already emit `tracing` spans, and LLM frameworks such as rig emit them with the
//! OpenTelemetry GenAI attributes (`gen_ai.operation.name`, `gen_ai.usage.input_tokens`,
//! `gen_ai.input.messages`, …). With the layer in the subscriber and the tracer installed by
//! `mlflow_tracing::init`, those spans become MLflow traces, with everything the SDK gives its
//! own spans: trace info from the client (previews, `mlflow.traceInputs`, token usage totals,
//! size stats, tags), and the export queue's accounting.
//!
//! ```
//! use mlflow_tracing_layer::MlflowLayer;
//! use mlflow_tracing_manager::testing::Capture;
//! use tracing_subscriber::prelude::*;
//!
//! let capture = Capture::new(); // `mlflow_tracing::init(..)` in an application
//! let subscriber = tracing_subscriber::registry().with(MlflowLayer::genai());
//! tracing::subscriber::with_default(subscriber, || {
//!     capture.run(|| {
//!         let chat = tracing::info_span!(
//!             "chat",
//!             gen_ai.operation.name = "chat",
//!             gen_ai.request.model = "gpt-4o-mini",
//!             gen_ai.usage.input_tokens = tracing::field::Empty,
//!         );
//!         chat.record("gen_ai.usage.input_tokens", 12);
//!     });
//! });
//! let span = &capture.traces()[0].data.spans[0];
//! assert_eq!(span.span_type().unwrap().as_str(), "CHAT_MODEL");
//! assert_eq!(span.token_usage().unwrap().input_tokens, 12);
//! ```
//!
//! - **Nesting works both ways.** A `tracing` span inside a `#[trace]` or `start_span` span is
//!   its child; a `#[trace]` function called inside a recorded `tracing` span is that span's
//!   child (entering a recorded span makes it the current MLflow span, on any thread, so
//!   `Instrument` and spawned tasks follow); a recorded span with no MLflow parent starts a
//!   trace. An explicit `parent:` is followed to its nearest recorded ancestor.
//! - **What is recorded** is chosen with per-layer filters (`Targets`, `EnvFilter`, levels):
//!   [`MlflowLayer::new`] records every span that reaches it; [`MlflowLayer::genai`] records
//!   only spans with `gen_ai.*` fields or inside an MLflow trace.
//! - **Fields** become attributes with their types (integers, floats, bools, strings;
//!   `Debug`/`Display` values as strings; text that is JSON for a string, object or list is
//!   kept as JSON, as MLflow's server keeps it). `otel.name` renames the span, `otel.status_code`
//!   and `otel.status_message` set its status, `otel.kind` is ignored (MLflow spans have no
//!   kind). An `error` field records an `exception` event and ERROR status, as `#[trace]` does
//!   for `Err`.
//! - **Events** inside a recorded span become span events (named by the message, the fields as
//!   attributes, plus `level` and `target`); an ERROR event with an `error` field records an
//!   exception.
//! - **GenAI attributes** are translated when the span closes, as MLflow 3.17.2's server does:
//!   operation → span type, `gen_ai.input.messages` / `gen_ai.tool.call.arguments` (or message
//!   events) → inputs, `gen_ai.output.messages` / `gen_ai.tool.call.result` (or `gen_ai.choice`
//!   events) → outputs, usage → `mlflow.chat.tokenUsage`, model, provider and tool
//!   definitions. Beyond the server, the plain `gen_ai.prompt` / `gen_ai.completion` text that
//!   rig records on its agent span becomes that span's inputs and outputs, so the trace has
//!   previews. Attributes set explicitly (`mlflow.spanInputs = …`) win.
//! - **Edge cases.** A `tracing` span created with `parent: None` has no `tracing` parent but
//!   still nests under the current MLflow span (a `#[trace]` function calling rig). A recorded
//!   span that ends after its trace was exported is counted (`TracerStats::spans_dropped`) and
//!   logged, never attached to another trace. Without an installed (or scoped) tracer the layer
//!   records nothing and warns once. The tracer is looked up when a span is created: create it
//!   inside `Capture::run`/`scope` in tests.
//! - **Cost.** On the caller's thread, a GenAI span (created, entered, two fields recorded,
//!   closed, its trace finalized) costs about 1.5× the same span through `tracing-opentelemetry`
//!   into an in-memory exporter (`cargo xtask bench`, `layer` group): MLflow stores values as
//!   JSON and translates them. Filtered out, it costs nothing beyond tracing-subscriber's own
//!   per-layer filtering.
#![doc(test(attr(deny(warnings))))]

mod fields;
mod genai;
mod layer;

pub use layer::MlflowLayer;
