//! Typed LLM helpers and the `#[trace]` options `log_level`, `description` and
//! `sampling_ratio_override`, against Python: the same spans written by both SDKs into the real
//! server must read back with the same attributes (Python sets them with raw keys, as its users
//! do; Rust users call typed setters).

use mlflow_tracing::entities::{ChatTool, SpanEvent, TokenUsage};
use mlflow_tracing::testing::Capture;
use mlflow_tracing::{SpanType, start_span};
use serde_json::json;

use crate::live::{experiment, python_json, sync_tracer};

const PY_PROGRAM: &str = r#"
import json, sys, mlflow
from mlflow.entities import SpanType
from mlflow.tracing.constant import SpanAttributeKey as K
mlflow.set_experiment(experiment_id=sys.argv[1])

@mlflow.trace(log_level="debug", description="adds numbers", sampling_ratio_override=1.0)
def add(x):
    return x + 1

add(1)
with mlflow.start_span("chat", span_type=SpanType.CHAT_MODEL) as span:
    mlflow.tracing.set_span_chat_tools(span, [
        {"type": "function", "function": {"name": "add", "description": "Add two numbers",
         "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}},
        {"type": "function", "function": {"name": "ping"}},
    ])
    span.set_attribute(K.CHAT_USAGE, {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                                       "cache_read_input_tokens": 3})
    span.set_attribute(K.MODEL, "gpt-4o-mini")
    span.set_attribute(K.MODEL_PROVIDER, "openai")
    span.set_attribute(K.MESSAGE_FORMAT, "openai")
print(json.dumps({"ok": True}))
"#;

/// Per span name: every attribute but the trace id, as Python reads them back.
const PY_READ: &str = r#"
import json, sys, mlflow
out = {}
for t in mlflow.search_traces(locations=[sys.argv[1]], return_type="list"):
    for s in t.data.spans:
        out[s.name] = {k: v for k, v in s.attributes.items() if k != "mlflow.traceRequestId"}
    out[t.data.spans[0].name]["trace_token_usage"] = t.info.token_usage
print(json.dumps(out, sort_keys=True))
"#;

#[mlflow_tracing::trace(
    log_level = "debug",
    description = "adds numbers",
    sampling_ratio_override = 1.0
)]
fn add(x: i64) -> i64 {
    x + 1
}

#[test]
fn typed_setters_and_trace_options_read_back_as_pythons_raw_attributes() {
    let py_experiment = experiment("llm-python");
    python_json(PY_PROGRAM, &[&py_experiment]);
    let rust_experiment = experiment("llm-rust");
    let tracer = sync_tracer(&rust_experiment);
    tracer.in_scope(|| {
        add(1);
        let span = start_span("chat").span_type(SpanType::ChatModel).start();
        span.set_chat_tools(&[
            ChatTool::function("add")
                .description("Add two numbers")
                .parameters(json!({"type": "object", "properties": {"a": {"type": "number"}}})),
            ChatTool::function("ping"),
        ]);
        span.set_token_usage(&TokenUsage::new(10, 5).with_cache_read(3));
        span.set_model("gpt-4o-mini");
        span.set_model_provider("openai");
        span.set_message_format("openai");
    });
    let python = python_json(PY_READ, &[&py_experiment]);
    let rust = python_json(PY_READ, &[&rust_experiment]);
    assert_eq!(rust, python);
    assert_eq!(python["add"]["mlflow.spanLogLevel"], 10);
    assert_eq!(python["add"]["mlflow.spanDescription"], "adds numbers");
    assert_eq!(
        python["chat"]["trace_token_usage"],
        json!({"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "cache_read_input_tokens": 3})
    );
}

#[mlflow_tracing::trace(sampling_ratio_override = 0.0)]
fn never_sampled() -> u32 {
    inner_always()
}

#[mlflow_tracing::trace(sampling_ratio_override = 1.0)]
fn inner_always() -> u32 {
    7
}

#[test]
fn a_sampling_override_decides_roots_and_children_follow_their_parent() {
    let capture = Capture::with(|b| b.with_sampling_ratio(0.0)).unwrap();
    capture.run(|| {
        assert_eq!(never_sampled(), 7);
        // Its own trace: sampled despite the tracer's ratio of 0.
        assert_eq!(inner_always(), 7);
    });
    let traces = capture.traces();
    assert_eq!(
        traces.len(),
        1,
        "the child of a sampled-out root is not recorded"
    );
    assert_eq!(traces[0].data.spans[0].name(), "inner_always");
}

#[test]
fn events_are_built_with_typed_attributes() {
    let capture = Capture::new();
    capture.run(|| {
        let span = start_span("s").start();
        span.add_event(
            SpanEvent::now("retrieved")
                .with_attribute("documents", 3)
                .with_attribute("source", "wiki"),
        );
    });
    let span = &capture.traces()[0].data.spans[0];
    let event = &span.events()[0];
    assert_eq!(event.name, "retrieved");
    assert_eq!(event.attributes["documents"], 3);
    assert_eq!(event.attributes["source"], "wiki");
    assert!(event.time_unix_nano >= span.start_time_ns());
}
