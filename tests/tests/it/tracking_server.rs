//! The server path against a real MLflow 3.17.2 tracking server (started by the harness, shared
//! by the tests of this binary, stopped when it exits): what the SDK writes, the Rust client and
//! Python's `mlflow.get_trace` / `mlflow.search_traces` read back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlflow_tracing::entities::{SpanEvent, TraceState};
use mlflow_tracing::export::{Dispatch, ExportWorker, SyncDispatch, TraceExporter, WorkerConfig};
use mlflow_tracing::server::{ClientConfig, MlflowExporter, SearchTraces, TrackingClient};
use mlflow_tracing::{
    Trace, TraceUpdate, Tracer, entities::keys, start_span, update_current_trace,
};
use mlflow_tracing_tests::server::MlflowServer;
use serde_json::{Value, json};

/// The server this suite runs against: the shared sqlite server with one worker, or, where
/// this file is compiled again as the module `tracking_server_postgres`, the shared server on
/// PostgreSQL with four workers, so backend differences show up as failures.
fn server() -> &'static MlflowServer {
    let shared = if module_path!().ends_with("_postgres") {
        mlflow_tracing_tests::postgres::shared_postgres_server()
    } else {
        MlflowServer::shared()
    };
    shared.unwrap_or_else(|e| panic!("the MLflow server must run: {e}"))
}

fn config(url: &str) -> ClientConfig {
    ClientConfig::new(url).with_retries(2, 0.1, 0.1)
}

fn client() -> TrackingClient {
    TrackingClient::new(config(server().url())).unwrap()
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A fresh experiment per test, so tests do not see each other's traces.
fn experiment(name: &str) -> String {
    let unique = format!(
        "{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    block_on(client().create_experiment(&unique)).unwrap()
}

/// How traces leave the tracer in a test.
enum Mode {
    Async,
    Sync,
}

/// A tracer exporting to the shared server through `exporter`; the returned dispatch flushes.
fn tracer(
    exporter: Arc<MlflowExporter>,
    mode: Mode,
    experiment: &str,
) -> (Tracer, Arc<dyn Dispatch>) {
    let dispatch: Arc<dyn Dispatch> = match mode {
        Mode::Async => Arc::new(
            ExportWorker::start_arc(
                exporter as Arc<dyn TraceExporter>,
                WorkerConfig::default().with_batching(5, Duration::from_millis(50)),
            )
            .unwrap(),
        ),
        Mode::Sync => Arc::new(SyncDispatch::new(exporter, Duration::from_secs(30)).unwrap()),
    };
    let tracer = Tracer::builder()
        .with_environment_metadata(false)
        .with_experiment_id(experiment)
        .with_dispatch(dispatch.clone())
        .build()
        .unwrap();
    (tracer, dispatch)
}

#[derive(Debug)]
struct ToolError(String);

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolError {}

#[mlflow_tracing::trace(span_type = "LLM", attributes(model = "fake-gpt", temperature = 0.2))]
fn call_llm(prompt: &str) -> String {
    if let Some(span) = mlflow_tracing::context::current_span() {
        span.set_attribute(
            keys::span::CHAT_USAGE,
            &json!({"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}),
        );
    }
    format!("answer to {prompt}")
}

#[mlflow_tracing::trace(span_type = "TOOL")]
fn flaky_tool(x: i64) -> Result<i64, ToolError> {
    Err(ToolError(format!("tool failed for x={x}")))
}

/// A traced agent: AGENT root, RETRIEVER, LLM (token usage), failing TOOL, a user event and
/// trace-level updates. Returns the trace id.
#[mlflow_tracing::trace(name = "agent_run", span_type = "AGENT")]
fn agent(question: &str, n: u32) -> String {
    {
        let retrieve = start_span("retrieve_docs")
            .span_type("RETRIEVER")
            .inputs(&json!({"query": question}))
            .attribute("retriever.k", &2)
            .start();
        retrieve
            .set_outputs(&json!([{"page_content": "Paris is in France", "metadata": {"n": n}}]));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut event = SpanEvent::new("cache_miss", nanos);
        event.attributes.insert("key".into(), json!("q1"));
        retrieve.add_event(event);
    }
    let answer = call_llm(question);
    let _ = flaky_tool(3);
    update_current_trace(
        TraceUpdate::new()
            .tag("team", "rust-port")
            .metadata("custom.meta", "v1")
            .client_request_id(format!("client-req-{n}"))
            .user("alice")
            .session("session-42"),
    )
    .unwrap();
    answer
}

fn run_agent(tracer: &Tracer, n: u32) -> String {
    tracer.in_scope(|| {
        agent("What is the capital of France?", n);
        mlflow_tracing::context::last_active_trace_id().unwrap()
    })
}

/// What Python's `mlflow` reads back for `ids`, and which traces `mlflow.search_traces` finds.
const PY_READBACK: &str = r#"
import json, sys, mlflow
ids, exp = sys.argv[1].split(","), sys.argv[2]
out = {"traces": {}}
for tid in ids:
    t = mlflow.get_trace(tid)
    i = t.info
    out["traces"][tid] = {
        "state": str(i.state), "experiment_id": i.experiment_id,
        "request_preview": i.request_preview, "response_preview": i.response_preview,
        "tags": i.tags, "metadata": i.trace_metadata, "client_request_id": i.client_request_id,
        "token_usage": i.token_usage,
        "spans": [{
            "name": s.name, "type": s.span_type, "span_id": s.span_id, "parent_id": s.parent_id,
            "inputs": s.inputs, "outputs": s.outputs, "status": s.status.status_code.value,
            "status_message": s.status.description, "events": [e.name for e in s.events],
            "attributes": {k: v for k, v in s.attributes.items() if not k.startswith("mlflow.")},
        } for s in t.data.spans],
    }
found = mlflow.search_traces(locations=[exp], return_type="list", max_results=1000)
out["search"] = sorted(t.info.trace_id for t in found)
out["search_spans"] = sum(len(t.data.spans) for t in found)
print(json.dumps(out, default=str))
"#;

fn python_readback(ids: &[String], experiment: &str) -> Value {
    let out = server()
        .run_python(PY_READBACK, &[&ids.join(","), experiment])
        .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&out).unwrap()
}

/// Asserts the agent trace, as Python reads it.
fn assert_python_agent_trace(t: &Value, n: u32, experiment: &str) {
    assert_eq!(t["state"], "OK", "{t}");
    assert_eq!(t["experiment_id"], experiment);
    assert_eq!(
        t["request_preview"],
        r#"{"question": "What is the capital of France?", "n": "#.to_owned() + &n.to_string() + "}"
    );
    assert_eq!(
        t["response_preview"],
        r#""answer to What is the capital of France?""#
    );
    assert_eq!(t["tags"]["team"], "rust-port");
    assert_eq!(t["tags"]["mlflow.traceName"], "agent_run");
    assert_eq!(t["metadata"]["custom.meta"], "v1");
    assert_eq!(t["metadata"]["mlflow.trace.user"], "alice");
    assert_eq!(t["metadata"]["mlflow.trace.session"], "session-42");
    assert_eq!(t["metadata"]["mlflow.trace_schema.version"], "3");
    assert!(
        t["metadata"]["mlflow.trace.sizeStats"]
            .as_str()
            .unwrap()
            .contains("\"num_spans\": 4")
    );
    assert_eq!(t["client_request_id"], format!("client-req-{n}"));
    assert_eq!(
        t["token_usage"],
        json!({"input_tokens": 12, "output_tokens": 5, "total_tokens": 17})
    );
    let spans = t["spans"].as_array().unwrap();
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {t}"))
    };
    let names: BTreeSet<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["agent_run", "retrieve_docs", "call_llm", "flaky_tool"])
    );
    let root = by_name("agent_run");
    assert_eq!(root["type"], "AGENT");
    assert_eq!(root["parent_id"], Value::Null);
    assert_eq!(
        root["inputs"],
        json!({"question": "What is the capital of France?", "n": n})
    );
    assert_eq!(root["outputs"], "answer to What is the capital of France?");
    assert_eq!(root["status"], "OK");
    for child in ["retrieve_docs", "call_llm", "flaky_tool"] {
        assert_eq!(by_name(child)["parent_id"], root["span_id"], "{child}");
    }
    let retrieve = by_name("retrieve_docs");
    assert_eq!(retrieve["type"], "RETRIEVER");
    assert_eq!(
        retrieve["inputs"],
        json!({"query": "What is the capital of France?"})
    );
    assert_eq!(retrieve["outputs"][0]["metadata"]["n"], n);
    assert_eq!(retrieve["events"], json!(["cache_miss"]));
    assert_eq!(retrieve["attributes"]["retriever.k"], 2);
    let llm = by_name("call_llm");
    assert_eq!(llm["type"], "LLM");
    assert_eq!(llm["attributes"]["model"], "fake-gpt");
    assert_eq!(llm["attributes"]["temperature"], 0.2);
    let tool = by_name("flaky_tool");
    assert_eq!(tool["type"], "TOOL");
    assert_eq!(tool["status"], "ERROR");
    assert_eq!(tool["status_message"], "ToolError: tool failed for x=3");
    assert_eq!(tool["events"], json!(["exception"]));
    assert_eq!(tool["inputs"], json!({"x": 3}));
}

/// Asserts the agent trace, as the Rust client reads it.
fn assert_rust_agent_trace(trace: &Trace, n: u32) {
    assert_eq!(trace.info.state, TraceState::Ok);
    assert_eq!(
        trace.info.client_request_id.as_deref(),
        Some(format!("client-req-{n}").as_str())
    );
    assert_eq!(
        trace.info.tags.get("team").map(String::as_str),
        Some("rust-port")
    );
    assert_eq!(trace.data.spans.len(), 4);
    let root = trace.data.root_span().unwrap();
    assert_eq!(root.name(), "agent_run");
    assert_eq!(
        root.inputs(),
        Some(json!({"question": "What is the capital of France?", "n": n}))
    );
    let tool = trace
        .data
        .spans
        .iter()
        .find(|s| s.name() == "flaky_tool")
        .unwrap();
    assert_eq!(tool.status().message, "ToolError: tool failed for x=3");
}

fn check_mode(mode: Mode, name: &str) {
    let experiment = experiment(name);
    let exporter = Arc::new(MlflowExporter::new(
        TrackingClient::new(config(server().url())).unwrap(),
    ));
    let (tracer, dispatch) = tracer(exporter.clone(), mode, &experiment);
    let ids: Vec<String> = (0..3).map(|n| run_agent(&tracer, n)).collect();
    dispatch.force_flush(Duration::from_secs(60)).unwrap();
    let stats = exporter.stats();
    assert_eq!(
        (
            stats.traces_logged,
            stats.traces_failed,
            stats.artifact_uploads
        ),
        (3, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.spans_logged, 12, "{stats:?}");

    let py = python_readback(&ids, &experiment);
    for (n, id) in ids.iter().enumerate() {
        assert_python_agent_trace(&py["traces"][id], n as u32, &experiment);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(py["search"], json!(sorted));
    assert_eq!(py["search_spans"], 12);

    let client = client();
    for (n, id) in ids.iter().enumerate() {
        let trace = block_on(client.get_trace(id)).unwrap();
        assert_rust_agent_trace(&trace, n as u32);
        assert_eq!(
            trace
                .info
                .tags
                .get(keys::tag::SPANS_LOCATION)
                .map(String::as_str),
            Some("TRACKING_STORE")
        );
    }
    dispatch.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn async_export_is_read_back_whole_by_python_and_rust() {
    check_mode(Mode::Async, "async");
}

#[test]
fn sync_export_is_read_back_whole_by_python_and_rust() {
    check_mode(Mode::Sync, "sync");
}

#[test]
fn without_span_logging_traces_go_as_traces_json_and_read_back_whole() {
    let experiment = experiment("fallback");
    let exporter = Arc::new(
        MlflowExporter::new(TrackingClient::new(config(server().url())).unwrap())
            .with_span_logging(false),
    );
    let (tracer, dispatch) = tracer(exporter.clone(), Mode::Async, &experiment);
    let ids: Vec<String> = (0..2).map(|n| run_agent(&tracer, n)).collect();
    dispatch.force_flush(Duration::from_secs(60)).unwrap();
    let stats = exporter.stats();
    assert_eq!(
        (
            stats.traces_logged,
            stats.artifact_uploads,
            stats.otlp_requests
        ),
        (2, 2, 0),
        "{stats:?}"
    );
    let py = python_readback(&ids, &experiment);
    for (n, id) in ids.iter().enumerate() {
        assert_python_agent_trace(&py["traces"][id], n as u32, &experiment);
        assert_ne!(
            py["traces"][id]["tags"][keys::tag::SPANS_LOCATION],
            "TRACKING_STORE"
        );
    }
    let client = client();
    for (n, id) in ids.iter().enumerate() {
        assert_rust_agent_trace(&block_on(client.get_trace(id)).unwrap(), n as u32);
    }
    dispatch.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn a_hundred_traces_from_eight_threads_are_all_stored_and_searchable_page_by_page() {
    let experiment = experiment("threads");
    let exporter = Arc::new(MlflowExporter::new(
        TrackingClient::new(config(server().url())).unwrap(),
    ));
    let (tracer, dispatch) = tracer(exporter.clone(), Mode::Async, &experiment);
    let started = Instant::now();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let tracer = tracer.clone();
                s.spawn(move || {
                    (0..100)
                        .filter(|i| i % 8 == t)
                        .map(|i| {
                            tracer.in_scope(|| {
                                let root = start_span("work").inputs(&json!({"i": i})).start();
                                drop(start_span("step").span_type("TOOL").start());
                                root.set_outputs(&i);
                                // Not `last_active_trace_id`: it is per tracer, not per thread.
                                let id = root.mlflow_trace_id().unwrap();
                                drop(root);
                                id
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let caller_time = started.elapsed();
    assert_eq!(ids.len(), 100);
    dispatch.force_flush(Duration::from_secs(120)).unwrap();
    let stats = exporter.stats();
    assert_eq!(
        (stats.traces_logged, stats.traces_failed, stats.spans_logged),
        (100, 0, 200),
        "{stats:?}"
    );
    assert!(
        stats.otlp_requests <= 25,
        "spans go in batches (5 traces per OTLP request): {stats:?}"
    );
    assert!(
        caller_time < Duration::from_secs(5),
        "callers never wait for the server: {caller_time:?}"
    );

    // Read back through the Rust client, 30 per page, newest first.
    let client = client();
    let mut found = Vec::new();
    let mut search = SearchTraces::in_experiment(&experiment)
        .max_results(30)
        .order_by("timestamp_ms DESC");
    loop {
        let page = block_on(client.search_traces(&search)).unwrap();
        found.extend(page.traces.into_iter().map(|i| i.trace_id));
        match page.next_page_token {
            Some(token) => search = search.page_token(token),
            None => break,
        }
    }
    let found: BTreeSet<_> = found.into_iter().collect();
    assert_eq!(found, ids.iter().cloned().collect::<BTreeSet<_>>());
    let full = block_on(
        client.search_full_traces(
            &SearchTraces::in_experiment(&experiment)
                .filter("trace.status = 'OK'")
                .max_results(20),
        ),
    )
    .unwrap();
    assert_eq!(full.traces.len(), 20);
    assert!(full.traces.iter().all(|t| t.data.spans.len() == 2));
    assert!(full.next_page_token.is_some());
    dispatch.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn experiment_by_name_is_created_once_and_receives_the_default_experiments_traces() {
    let name = format!(
        "by-name-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let exporter = Arc::new(
        MlflowExporter::new(TrackingClient::new(config(server().url())).unwrap())
            .with_experiment_name(&name),
    );
    let (tracer, dispatch) = tracer(exporter.clone(), Mode::Async, "0");
    let ids: Vec<String> = (0..2).map(|n| run_agent(&tracer, n)).collect();
    dispatch.force_flush(Duration::from_secs(60)).unwrap();
    let client = client();
    let experiment = block_on(client.get_experiment_by_name(&name))
        .unwrap()
        .expect("created");
    for id in &ids {
        let info = block_on(client.get_trace_info(id)).unwrap();
        assert_eq!(
            info.experiment_id(),
            Some(experiment.experiment_id.as_str())
        );
    }
    let py = python_readback(&ids, &experiment.experiment_id);
    assert_eq!(py["search"].as_array().unwrap().len(), 2);
    dispatch.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn a_server_that_is_down_blocks_nobody_and_every_loss_is_counted() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let exporter = Arc::new(MlflowExporter::new(
        TrackingClient::new(ClientConfig::new(&url).with_retries(1, 0.05, 0.0)).unwrap(),
    ));
    let worker = ExportWorker::start_arc(
        exporter.clone() as Arc<dyn TraceExporter>,
        WorkerConfig::default()
            .with_max_queue_size(20)
            .with_max_concurrent_exports(2)
            .with_batching(5, Duration::from_millis(20)),
    )
    .unwrap();
    let tracer = Tracer::builder()
        .with_environment_metadata(false)
        .with_dispatch(Arc::new(worker.clone()))
        .build()
        .unwrap();
    let started = Instant::now();
    for n in 0..200 {
        run_agent(&tracer, n);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    worker.force_flush(Duration::from_secs(60)).unwrap();
    let s = worker.stats();
    assert_eq!(s.enqueued + s.dropped_queue_full, 200, "{s:?}");
    assert_eq!((s.exported, s.failed), (0, s.enqueued), "{s:?}");
    assert_eq!(exporter.stats().traces_failed, s.enqueued);
    worker.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn trace_tags_can_be_set_and_deleted_and_errors_name_the_server_answer() {
    let experiment = experiment("tags");
    let exporter = Arc::new(MlflowExporter::new(
        TrackingClient::new(config(server().url())).unwrap(),
    ));
    let (tracer, dispatch) = tracer(exporter, Mode::Sync, &experiment);
    let id = run_agent(&tracer, 0);
    dispatch.force_flush(Duration::from_secs(30)).unwrap();
    let client = client();
    block_on(client.set_trace_tag(&id, "reviewed", "yes")).unwrap();
    let info = block_on(client.get_trace_info(&id)).unwrap();
    assert_eq!(info.tags.get("reviewed").map(String::as_str), Some("yes"));
    let filtered =
        block_on(client.search_traces(
            &SearchTraces::in_experiment(&experiment).filter("tags.reviewed = 'yes'"),
        ))
        .unwrap();
    assert_eq!(filtered.traces.len(), 1);
    block_on(client.delete_trace_tag(&id, "reviewed")).unwrap();
    let info = block_on(client.get_trace_info(&id)).unwrap();
    assert!(!info.tags.contains_key("reviewed"));

    let missing =
        block_on(client.get_trace_info("tr-00000000000000000000000000000000")).unwrap_err();
    assert_eq!(
        (missing.status(), missing.code()),
        (Some(404), Some("RESOURCE_DOES_NOT_EXIST")),
        "{missing}"
    );
    assert!(
        missing.to_string().contains("GET /api/3.0/mlflow/traces/"),
        "{missing}"
    );
    let bad_filter =
        block_on(client.search_traces(
            &SearchTraces::in_experiment(&experiment).filter("this is not a filter"),
        ))
        .unwrap_err();
    assert_eq!(
        (bad_filter.status(), bad_filter.code()),
        (Some(400), Some("INVALID_PARAMETER_VALUE")),
        "{bad_filter}"
    );
    let invalid = block_on(client.get_experiment("1; DROP TABLE")).unwrap_err();
    assert!(
        invalid
            .to_string()
            .contains("experiment ids are decimal digits"),
        "{invalid}"
    );
    assert_eq!(
        block_on(client.version()).unwrap(),
        mlflow_tracing_tests::MLFLOW_VERSION
    );
    dispatch.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn a_trace_for_an_unknown_experiment_fails_alone_within_its_batch() {
    let experiment = experiment("partial");
    let exporter = Arc::new(MlflowExporter::new(
        TrackingClient::new(config(server().url())).unwrap(),
    ));
    let worker = ExportWorker::start_arc(
        exporter.clone() as Arc<dyn TraceExporter>,
        // One batch for both traces.
        WorkerConfig::default().with_batching(2, Duration::from_secs(3600)),
    )
    .unwrap();
    let tracer = Tracer::builder()
        .with_environment_metadata(false)
        .with_experiment_id(&experiment)
        .with_dispatch(Arc::new(worker.clone()))
        .build()
        .unwrap();
    tracer.in_scope(|| {
        drop(start_span("good").start());
        drop(start_span("lost").experiment_id("987654321").start());
    });
    worker.force_flush(Duration::from_secs(60)).unwrap();
    let s = worker.stats();
    assert_eq!((s.enqueued, s.exported, s.failed), (2, 1, 1), "{s:?}");
    let e = exporter.stats();
    assert_eq!((e.traces_logged, e.traces_failed), (1, 1), "{e:?}");
    assert!(
        e.span_logging,
        "an unknown experiment says nothing about the server: {e:?}"
    );
    worker.shutdown(Duration::from_secs(10)).unwrap();
}

use crate::rerun::{self, CHILD};

#[test]
fn init_from_the_environment_sends_traces_to_the_named_experiment() {
    if std::env::var_os(CHILD).is_some() {
        // The child: configured by MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_NAME only.
        let guard =
            mlflow_tracing::init(mlflow_tracing::TracerBuilder::from_env().unwrap()).unwrap();
        agent("What is the capital of France?", 7);
        let id = mlflow_tracing::context::last_active_trace_id().unwrap();
        drop(guard); // flushes
        println!("child-trace-id={id}");
        return;
    }
    let name = format!(
        "from-env-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (stdout, _) = rerun::output_ok(
        rerun::command(
            &test_name!("init_from_the_environment_sends_traces_to_the_named_experiment"),
            "1",
        )
        .env("MLFLOW_TRACKING_URI", server().url())
        .env("MLFLOW_EXPERIMENT_NAME", &name)
        .env_remove("MLFLOW_EXPERIMENT_ID"),
    );
    let id = stdout
        .lines()
        .find_map(|l| l.split_once("child-trace-id=").map(|(_, id)| id.trim()))
        .unwrap_or_else(|| panic!("no trace id in:\n{stdout}"))
        .to_owned();
    let client = client();
    let experiment = block_on(client.get_experiment_by_name(&name))
        .unwrap()
        .expect("created by the child");
    let py = python_readback(std::slice::from_ref(&id), &experiment.experiment_id);
    assert_python_agent_trace(&py["traces"][&id], 7, &experiment.experiment_id);
    // The environment metadata a real process records.
    let metadata = &py["traces"][&id]["metadata"];
    // The program that ran: this test binary, run again as the child.
    assert_eq!(
        metadata["mlflow.source.name"],
        std::env::current_exe().unwrap().display().to_string()
    );
    assert_eq!(metadata["mlflow.source.type"], "LOCAL");
}
