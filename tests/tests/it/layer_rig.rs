//! The tracing layer on a real LLM framework: rig (`rig-core`/`rig-agent` 0.44 from crates.io)
//! runs an agent with one tool against a local OpenAI-compatible fake LLM (one tool call, then
//! the final answer, both with `usage`), traced into the real MLflow 3.17.2 server two ways:
//!
//! - this SDK: the `rig_agent` example of the facade, run as its own process, set up with only
//!   `init()` and `MlflowLayer::genai()`;
//! - what a user would do without it: `tracing-opentelemetry` and an OTLP exporter to the
//!   server's `/v1/traces` with the experiment header (this binary again, as a child process).
//!
//! Python's `mlflow.get_trace` reads both back. The SDK path's fields are asserted; both are
//! written side by side to `target/test-artifacts/layer/rig_comparison.md` (the README's table).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlflow_tracing_tests::http;
use mlflow_tracing_tests::service::Service;
use serde_json::{Value, json};

use crate::live::{experiment, server};

// The example's module, compiled here for the OTLP side.
#[path = "../../../crates/mlflow-tracing/examples/rig_agent/agent.rs"]
mod rig_app;

use crate::rerun::{self, CHILD};
const QUESTION: &str = "What is 2 + 3?";
const ANSWER: &str = "2 + 3 = 5.";

/// The fake LLM's first answer: a call of the `add` tool.
const TOOL_CALL: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1764590000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_add_1","type":"function","function":{"name":"add","arguments":"{\"x\":2,\"y\":3}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":52,"completion_tokens":17,"total_tokens":69}}"#;

/// Its second answer (the request carries the tool's result): the final text.
const FINAL: &str = r#"{"id":"chatcmpl-2","object":"chat.completion","created":1764590001,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"2 + 3 = 5."},"finish_reason":"stop"}],"usage":{"prompt_tokens":80,"completion_tokens":9,"total_tokens":89}}"#;

/// The fake OpenAI-compatible LLM on 127.0.0.1: its base URL (`…/v1`) and the paths it saw.
fn fake_llm() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        http::serve(&listener, |request| {
            log.lock().unwrap().push(request.path.clone());
            if !request.path.ends_with("/chat/completions") {
                return Some((404, r#"{"error":{"message":"not found"}}"#.to_owned()));
            }
            let body = if request.body.contains(r#""role":"tool""#) {
                FINAL
            } else {
                TOOL_CALL
            };
            Some((200, body.to_owned()))
        })
    });
    (url, seen)
}

/// The `rig_agent` example's binary, built if this run did not build it.
fn example_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/rig_agent");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "mlflow-tracing",
                "--features",
                "tracing-layer",
            ])
            .args(["--example", "rig_agent"])
            .status()
            .unwrap();
        assert!(status.success(), "building the rig_agent example failed");
    }
    path
}

/// Reads a trace back with Python: its spans (name, type, parent name, inputs, outputs, the
/// MLflow LLM attributes, status), previews, token usage, metadata and tags. With `search`,
/// the one trace of the experiment `argv[2]`.
const PY_READ_BACK: &str = r#"
import json, sys, mlflow
from mlflow.tracing.constant import SpanAttributeKey as K
if sys.argv[1] == "search":
    found = mlflow.search_traces(experiment_ids=[sys.argv[2]], return_type="list")
    assert len(found) == 1, f"{len(found)} traces"
    trace_id = found[0].info.trace_id
else:
    trace_id = sys.argv[1]
t = mlflow.get_trace(trace_id)
names = {s.span_id: s.name for s in t.data.spans}
print(json.dumps({
    "trace_id": t.info.trace_id,
    "spans": [{"name": s.name, "type": s.span_type, "parent": names.get(s.parent_id),
               "inputs": s.inputs, "outputs": s.outputs,
               "usage": s.attributes.get(K.CHAT_USAGE), "model": s.attributes.get(K.MODEL),
               "provider": s.attributes.get(K.MODEL_PROVIDER),
               "message_format": s.attributes.get(K.MESSAGE_FORMAT),
               "tools": s.attributes.get(K.CHAT_TOOLS),
               "status": str(s.status.status_code)} for s in t.data.spans],
    "request_preview": t.info.request_preview,
    "response_preview": t.info.response_preview,
    "token_usage": t.info.token_usage,
    "metadata": t.info.trace_metadata,
    "tags": t.info.tags,
}))
"#;

fn read_back(args: &[&str]) -> Value {
    let out = server().run_python(PY_READ_BACK, args).unwrap();
    serde_json::from_str(out.trim().lines().last().unwrap()).unwrap()
}

fn span<'a>(trace: &'a Value, name: &str) -> Vec<&'a Value> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == name)
        .collect()
}

#[expect(
    clippy::print_stdout,
    reason = "the child reports to the parent on stdout"
)]
/// The OTLP side (a child process): rig's spans through `tracing-opentelemetry` and an OTLP
/// HTTP exporter, the way a user would send them to MLflow without this SDK.
fn otlp_child() {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    use tracing_subscriber::layer::SubscriberExt as _;

    let url = std::env::var("MLFLOW_TRACKING_URI").unwrap();
    let experiment = std::env::var("MLFLOW_EXPERIMENT_ID").unwrap();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{url}/v1/traces"))
        .with_headers(HashMap::from([(
            "x-mlflow-experiment-id".to_owned(),
            experiment,
        )]))
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("rig-app")));
    let answer = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(rig_app::ask(
                &std::env::var("OPENAI_BASE_URL").unwrap(),
                "sk-fake",
                "gpt-4o-mini",
                QUESTION,
            ))
            .unwrap()
    });
    // The first OTLP request to a fresh server can take longer than the default 5 s.
    provider
        .shutdown_with_timeout(Duration::from_secs(60))
        .unwrap();
    println!("answer: {answer}");
}

/// One row of the comparison: what each path gives.
fn row(what: &str, sdk: &str, otlp: &str) -> String {
    format!("| {what} | {sdk} | {otlp} |\n")
}

fn types(trace: &Value) -> String {
    let mut out: Vec<String> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["name"].as_str().unwrap(),
                s["type"].as_str().unwrap_or("-")
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out.join(", ")
}

fn has(v: &Value) -> &'static str {
    if v.is_null() || v == &json!("") || v == &json!({}) {
        "no"
    } else {
        "yes"
    }
}

fn comparison(sdk: &Value, otlp: &Value) -> String {
    let per_span_usage = |t: &Value| {
        let n = t["spans"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s["usage"].is_null())
            .count();
        format!("{n} spans")
    };
    let meta = |t: &Value, key: &str| has(&t["metadata"][key]);
    let preview = |v: &Value| {
        v.as_str().map_or_else(
            || "none".to_owned(),
            |s| format!("`{}`", s.replace('|', "\\|")),
        )
    };
    let root_io = |t: &Value| {
        let root = &span(t, "invoke_agent")[0];
        format!("{} / {}", has(&root["inputs"]), has(&root["outputs"]))
    };
    let statuses = |t: &Value| {
        let mut all: Vec<String> = t["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["status"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("SpanStatusCode.")
                    .to_owned()
            })
            .collect();
        all.dedup();
        all.join(", ")
    };
    let mut out = String::from(
        "| | `MlflowLayer` + `init()` | `tracing-opentelemetry` + OTLP |\n|---|---|---|\n",
    );
    out += &row("span types", &types(sdk), &types(otlp));
    out += &row("agent span inputs / outputs", &root_io(sdk), &root_io(otlp));
    out += &row("span status", &statuses(sdk), &statuses(otlp));
    out += &row(
        "per-span token usage",
        &per_span_usage(sdk),
        &per_span_usage(otlp),
    );
    out += &row(
        "trace token usage",
        &sdk["token_usage"].to_string(),
        &otlp["token_usage"].to_string(),
    );
    out += &row(
        "request preview",
        &preview(&sdk["request_preview"]),
        &preview(&otlp["request_preview"]),
    );
    out += &row(
        "response preview",
        &preview(&sdk["response_preview"]),
        &preview(&otlp["response_preview"]),
    );
    for key in [
        "mlflow.traceInputs",
        "mlflow.traceOutputs",
        "mlflow.trace.sizeStats",
        "mlflow.user",
        "mlflow.source.name",
        "mlflow.source.git.commit",
    ] {
        out += &row(
            &format!("metadata `{key}`"),
            meta(sdk, key),
            meta(otlp, key),
        );
    }
    out += &row(
        "tag `mlflow.traceName`",
        &preview(&sdk["tags"]["mlflow.traceName"]),
        &preview(&otlp["tags"]["mlflow.traceName"]),
    );
    out
}

#[test]
fn a_rig_agent_traced_through_the_layer_and_through_otlp() {
    if std::env::var(CHILD).as_deref() == Ok("rig-otlp") {
        return otlp_child();
    }
    let (llm, seen) = fake_llm();

    // This SDK: the example, as a user runs it.
    let sdk_experiment = experiment("rig-layer");
    let mut command = Command::new(example_binary());
    command
        .env("MLFLOW_TRACKING_URI", server().url())
        .env("MLFLOW_EXPERIMENT_ID", &sdk_experiment)
        .env("OPENAI_BASE_URL", &llm)
        .env("OPENAI_API_KEY", "sk-fake")
        .env("LOGNAME", "rig-tester")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .env_remove(CHILD);
    let (ok, out) = Service::run(command, Duration::from_secs(120)).unwrap();
    assert!(ok, "the rig_agent example failed:\n{out}");
    assert!(out.contains(&format!("answer: {ANSWER}")), "{out}");
    let trace_id = out
        .lines()
        .find_map(|l| l.strip_prefix("trace: "))
        .unwrap_or_else(|| panic!("no trace id printed:\n{out}"))
        .trim()
        .to_owned();
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["/v1/chat/completions", "/v1/chat/completions"],
        "one tool call, then the final answer"
    );

    // Without this SDK: tracing-opentelemetry and OTLP, the same agent.
    let otlp_experiment = experiment("rig-otlp");
    let mut command = rerun::command(
        &test_name!("a_rig_agent_traced_through_the_layer_and_through_otlp"),
        "rig-otlp",
    );
    command
        .env("MLFLOW_TRACKING_URI", server().url())
        .env("MLFLOW_EXPERIMENT_ID", &otlp_experiment)
        .env("OPENAI_BASE_URL", &llm);
    let (ok, out) = Service::run(command, Duration::from_secs(120)).unwrap();
    assert!(ok, "the OTLP run failed:\n{out}");
    assert!(out.contains(&format!("answer: {ANSWER}")), "{out}");

    let sdk = read_back(&[&trace_id]);
    let otlp = read_back(&["search", &otlp_experiment]);
    let table = comparison(&sdk, &otlp);
    println!("{table}");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/layer");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rig_comparison.md"), &table).unwrap();
    println!("SDK trace: {sdk:#}");
    println!("OTLP trace: {otlp:#}");

    assert_sdk_trace(&sdk);
    same_translation_as_the_server(&sdk, &otlp);
}

/// The fields of a span the server derives from GenAI attributes.
const TRANSLATED: [&str; 7] = [
    "type", "parent", "inputs", "outputs", "usage", "model", "provider",
];

/// The chat and tool spans the SDK translated on the client equal those the server translated
/// from raw OTLP (the agent span differs: the SDK also takes rig's plain `gen_ai.prompt` and
/// `gen_ai.completion` as its inputs and outputs, which the server leaves as attributes).
fn same_translation_as_the_server(sdk: &Value, otlp: &Value) {
    for name in ["chat", "execute_tool"] {
        let key = |s: &&Value| s["usage"].to_string();
        let mut ours = span(sdk, name);
        let mut theirs = span(otlp, name);
        ours.sort_by_key(key);
        theirs.sort_by_key(key);
        assert_eq!(ours.len(), theirs.len(), "{name}");
        for (a, b) in ours.iter().zip(&theirs) {
            for field in TRANSLATED {
                assert_eq!(a[field], b[field], "{name}: {field}");
            }
        }
    }
    let (a, b) = (span(sdk, "invoke_agent")[0], span(otlp, "invoke_agent")[0]);
    for field in ["type", "usage"] {
        assert_eq!(a[field], b[field], "invoke_agent: {field}");
    }
}

/// What the SDK path must give: AGENT, CHAT_MODEL and TOOL spans with their messages, usage
/// per span and in total, previews, the trace metadata only a client computes, tags.
fn assert_sdk_trace(sdk: &Value) {
    let agent = span(sdk, "invoke_agent");
    assert_eq!(agent.len(), 1, "{sdk:#}");
    let agent = agent[0];
    assert_eq!(agent["type"], "AGENT");
    assert_eq!(agent["parent"], Value::Null, "the agent span is the root");
    assert_eq!(agent["inputs"], QUESTION);
    assert_eq!(agent["outputs"], ANSWER);

    let chats = span(sdk, "chat");
    assert_eq!(chats.len(), 2, "{sdk:#}");
    let usages: Vec<&Value> = chats.iter().map(|c| &c["usage"]).collect();
    assert!(
        usages.contains(&&json!({"input_tokens": 52, "output_tokens": 17, "total_tokens": 69}))
    );
    assert!(usages.contains(&&json!({"input_tokens": 80, "output_tokens": 9, "total_tokens": 89})));
    for chat in &chats {
        assert_eq!(chat["type"], "CHAT_MODEL");
        assert_eq!(chat["parent"], "invoke_agent");
        assert_eq!(chat["provider"], "openai");
        assert!(chat["model"].as_str().unwrap().starts_with("gpt-4o-mini"));
        assert!(chat["inputs"].is_array(), "{chat:#}");
        assert!(chat["outputs"].is_array(), "{chat:#}");
    }
    let tool = span(sdk, "execute_tool");
    assert_eq!(tool.len(), 1, "{sdk:#}");
    let tool = tool[0];
    assert_eq!(tool["type"], "TOOL");
    assert_eq!(tool["inputs"], json!({"x": 2, "y": 3}));
    // rig records the result as text; the server keeps it so, and so does the SDK.
    assert_eq!(tool["outputs"], json!("5"));

    // The trace info, computed on the client.
    assert_eq!(
        sdk["token_usage"],
        json!({"input_tokens": 132, "output_tokens": 26, "total_tokens": 158})
    );
    // Previews and trace I/O are the root span's inputs and outputs as JSON, as in Python.
    let question = json!(QUESTION).to_string();
    let answer = json!(ANSWER).to_string();
    assert_eq!(sdk["request_preview"], question);
    assert_eq!(sdk["response_preview"], answer);
    assert_eq!(sdk["metadata"]["mlflow.traceInputs"], question);
    assert_eq!(sdk["metadata"]["mlflow.traceOutputs"], answer);
    assert!(sdk["metadata"]["mlflow.trace.sizeStats"].is_string());
    assert_eq!(sdk["metadata"]["mlflow.user"], "rig-tester");
    assert!(
        sdk["metadata"]["mlflow.source.name"]
            .as_str()
            .unwrap()
            .ends_with("rig_agent")
    );
    assert_eq!(sdk["tags"]["mlflow.traceName"], "invoke_agent");
}
