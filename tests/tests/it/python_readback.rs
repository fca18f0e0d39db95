//! What the SDK writes, the pinned Python `mlflow` reads back: `Trace.from_json` then
//! `to_json` gives the same JSON of the same length (maps may come back reordered), and Python's `add_size_stats_to_trace_metadata` computes the
//! same size statistics as ours. Runs the real `mlflow` package (see the harness crate).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

use crate::common::{SCENARIOS, fixture};
use mlflow_tracing::entities::keys;
use mlflow_tracing::entities::{
    Link, MlflowTraceId, SpanEvent, SpanId, SpanStatus, TraceId, TraceInfo, TraceLocation,
};
use mlflow_tracing::{Span, SpanType, Trace};
use mlflow_tracing_tests::python::run_script;
use serde_json::{Value, json};

const SCRIPT: &str = r#"
import json, sys
from mlflow.entities import Trace
from mlflow.tracing.utils import add_size_stats_to_trace_metadata
results = []
for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read()
    t = Trace.from_json(text)
    again = t.to_json()
    for k in ("mlflow.trace.sizeStats", "mlflow.trace.sizeBytes"):
        t.info.trace_metadata.pop(k, None)
    add_size_stats_to_trace_metadata(t)
    # Protobuf map fields (metadata, tags) come back in hash order, so compare as values and
    # by length (the size statistics depend on the length only).
    same = json.loads(again) == json.loads(text) and len(again) == len(text)
    results.append({
        "same": same,
        "python": None if same else again[:2000],
        "size_stats": t.info.trace_metadata.get("mlflow.trace.sizeStats"),
        "spans": [s.name for s in t.data.spans],
        "inputs": t.data.spans[0].inputs if t.data.spans else None,
    })
print(json.dumps(results))
"#;

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| json!([v]))
}

fn hostile_trace() -> Trace {
    let trace_id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let root_id = SpanId::from_hex("b7ad6b7169203331").unwrap();
    let inputs = json!({
        "question": "北京今天的天气怎么样？☀️🌧️ \u{1}\u{7f} \"quoted\" back\\slash </script>",
        "big": u64::MAX,
        "neg": i64::MIN,
        "tiny": 1e-7,
        "huge": 1.5e300,
        "deep": nested(97),
        "long": "x".repeat(5000),
    });
    let nan_inputs = vec![f64::NAN, f64::INFINITY, 2.5];
    let root = Span::builder(trace_id, root_id, "agent 🚀")
        .times(1_700_000_000_000_000_000, Some(1_700_000_001_234_000_000))
        .span_type(&SpanType::Agent)
        .attribute(keys::span::INPUTS, &inputs)
        .unwrap()
        .attribute(
            keys::span::OUTPUTS,
            &json!({"choices": [{"message": {"role": "assistant", "content": "晴"}}]}),
        )
        .unwrap()
        .attribute("custom.floats", &nan_inputs)
        .unwrap()
        .attribute(keys::span::LOG_LEVEL, &20)
        .unwrap()
        .status(SpanStatus::ok())
        .build();
    let child = Span::builder(
        trace_id,
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        "tool\u{0}call",
    )
    .parent(Some(root_id))
    .times(1_700_000_000_100_000_000, Some(1_700_000_000_200_000_000))
    .span_type(&SpanType::Custom("MY_TYPE".into()))
    .attribute(
        keys::span::CHAT_USAGE,
        &json!({"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}),
    )
    .unwrap()
    .event(SpanEvent::exception(
        "ValueError",
        "bad \u{2028} input",
        "Traceback...\n  line 1",
        1_700_000_000_150_000_000,
    ))
    .link(Link {
        trace_id: MlflowTraceId::v3(trace_id).to_string(),
        span_id: root_id,
        attributes: Some(json!({"k": "v", "n": 1}).as_object().unwrap().clone()),
    })
    .status(SpanStatus::error("ValueError: bad input"))
    .build();
    let mut info = TraceInfo::new(
        MlflowTraceId::v3(trace_id).to_string(),
        TraceLocation::experiment("7"),
        0,
    );
    info.client_request_id = Some("req-\u{e9}-1".into());
    info.trace_metadata.insert("k".repeat(300), "v".repeat(300));
    info.tags.insert("team".into(), "t".repeat(5000));
    info.tags
        .insert(keys::tag::TRACE_NAME.into(), "agent 🚀".into());
    let mut trace = Trace::new(info, vec![root, child]);
    trace.finalize(keys::PREVIEW_MAX_LENGTH_OSS);
    trace.add_size_stats().unwrap();
    trace
}

fn uc_trace() -> Trace {
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let v4 = MlflowTraceId::v4("cat.sch", trace_id).unwrap();
    let span = Span::builder(trace_id, SpanId::from_int(1), "uc root")
        .request_id(&v4)
        .times(1_700_000_000_000_000_000, Some(1_700_000_000_000_500_000))
        .attribute(keys::span::INPUTS, "hi")
        .unwrap()
        .status(SpanStatus::ok())
        .build();
    let info = TraceInfo::new(
        v4.to_string(),
        TraceLocation::UcSchema(mlflow_tracing::entities::UcSchemaLocation::new(
            "cat", "sch",
        )),
        0,
    );
    let mut trace = Trace::new(info, vec![span]);
    trace.finalize(keys::PREVIEW_MAX_LENGTH_DATABRICKS);
    trace.add_size_stats().unwrap();
    trace
}

#[derive(Debug)]
struct ToolError;

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tool \"search\" failed: timeout")
    }
}

#[mlflow_tracing::trace(span_type = "TOOL")]
fn search(query: &str) -> Result<Vec<String>, ToolError> {
    if query.is_empty() {
        return Err(ToolError);
    }
    Ok(vec![format!("doc about {query}")])
}

#[mlflow_tracing::trace(span_type = "AGENT", attributes(model = "gpt-x"))]
fn answer(question: &str) -> String {
    let _ = search("");
    let docs = search(question).unwrap_or_default();
    let llm = mlflow_tracing::start_span("llm")
        .span_type(SpanType::ChatModel)
        .inputs(&json!({"messages": [{"role": "user", "content": question}]}))
        .start();
    llm.set_attribute(
        keys::span::CHAT_USAGE,
        &json!({"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}),
    );
    llm.add_event(SpanEvent::new("first_token", 1_700_000_000_000_000_000));
    llm.set_outputs(&json!({"choices": [{"message": {"role": "assistant", "content": "42 ✓"}}]}));
    format!("42 ({} docs)", docs.len())
}

/// A trace made by the span API (`#[trace]`, `start_span`, errors, events, token usage).
fn span_api_trace() -> Trace {
    let capture =
        mlflow_tracing::testing::Capture::with(|b| b.with_environment_metadata(true)).unwrap();
    capture.run(|| answer("meaning of life?"));
    let mut trace = capture.traces().remove(0);
    trace.add_size_stats().unwrap();
    trace
}

#[test]
fn python_mlflow_reads_back_what_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut traces: Vec<(String, Trace)> = vec![
        ("hostile".into(), hostile_trace()),
        ("uc".into(), uc_trace()),
        ("span_api".into(), span_api_trace()),
    ];
    for name in SCENARIOS {
        traces.push((
            name.into(),
            Trace::from_json(&fixture(&format!("traces/{name}.json"))).unwrap(),
        ));
    }
    let mut paths = Vec::new();
    for (name, trace) in &traces {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, trace.to_json().unwrap()).unwrap();
        paths.push(path.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let out = run_script(SCRIPT, &args).unwrap_or_else(|e| panic!("{e}"));
    let results: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(results.len(), traces.len());
    for ((name, trace), result) in traces.iter().zip(&results) {
        assert_eq!(
            result["same"], true,
            "{name}: Python re-serialised differently; Python wrote: {}",
            result["python"]
        );
        let mut ours = trace.clone();
        ours.add_size_stats().unwrap();
        assert_eq!(
            result["size_stats"].as_str(),
            Some(ours.info.trace_metadata[keys::metadata::SIZE_STATS].as_str()),
            "{name}: size stats"
        );
        let names: Vec<&str> = trace.data.spans.iter().map(Span::name).collect();
        assert_eq!(result["spans"], json!(names), "{name}");
    }
    // The hostile values as Python sees them: non-finite floats are null, big ints exact,
    // text intact, nesting kept.
    let inputs = &results[0]["inputs"];
    assert_eq!(inputs["big"], json!(u64::MAX));
    assert_eq!(inputs["neg"], json!(i64::MIN));
    assert!(
        inputs["question"]
            .as_str()
            .unwrap()
            .starts_with("北京今天的天气怎么样？☀️🌧️ \u{1}\u{7f}")
    );
    assert_eq!(inputs["deep"], nested(97));
    // Truncation happened on write, as MLflow's to_proto does.
    let hostile = Trace::from_json(&hostile_trace().to_json().unwrap()).unwrap();
    assert!(
        hostile
            .info
            .trace_metadata
            .keys()
            .all(|k| k.chars().count() <= 250)
    );
    assert_eq!(hostile.info.tags["team"].len(), 4096);
}
