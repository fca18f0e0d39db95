//! The inference-table buffer through the facade (feature `inference-table`): traces keyed by
//! serving request id, MLflow's JSON, TTL and cap, concurrent pops, and background export into a
//! real MLflow server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mlflow_tracing::export::{Dispatch, ExportWorker, TraceExporter, WorkerConfig};
use mlflow_tracing::server::{ClientConfig, MlflowExporter, TrackingClient};
use mlflow_tracing::serving::InferenceTableBuffer;
use mlflow_tracing::serving::ServingRequest;
use mlflow_tracing::tracer::TraceDestination;
use mlflow_tracing::{FutureExt as _, Trace, Tracer, entities::keys, start_span};
use mlflow_tracing_tests::server::MlflowServer;
use serde_json::json;

fn tracer(buffer: &InferenceTableBuffer, experiment_id: Option<&str>) -> Tracer {
    Tracer::builder()
        .with_environment_metadata(false)
        .with_destination(TraceDestination::InferenceTable {
            experiment_id: experiment_id.map(str::to_owned),
        })
        .with_dispatch(Arc::new(buffer.clone()))
        .build()
        .unwrap()
}

#[mlflow_tracing::trace(span_type = "CHAT_MODEL")]
fn predict(question: &str) -> String {
    drop(start_span("retrieve").span_type("RETRIEVER").start());
    format!("answer: {question}")
}

#[test]
fn traces_are_kept_by_request_id_in_mlflows_json_and_popped_once() {
    let buffer = InferenceTableBuffer::new(Duration::from_secs(3600), 1000);
    let tracer = tracer(&buffer, None);
    let request = ServingRequest::from_headers([("x-request-id", "req-42")])
        .unwrap()
        .endpoint_name("chat-endpoint")
        .model_id("m-123");
    tracer.in_scope(|| request.in_scope(|| predict("hi")));
    // Root spans without a serving request are not recorded.
    tracer.in_scope(|| predict("no request"));
    assert_eq!(tracer.stats().traces_finished, 1);

    let json = buffer
        .pop_trace("req-42")
        .expect("buffered as soon as the root ended");
    let trace = Trace::from_json(&json).unwrap();
    // Exactly the entities' `Trace.to_json()`: re-serializing gives the same text.
    assert_eq!(trace.to_json().unwrap(), json);
    let info = &trace.info;
    assert_eq!(info.client_request_id.as_deref(), Some("req-42"));
    assert!(info.trace_id.starts_with("tr-"));
    assert_eq!(
        info.trace_metadata
            .get(keys::metadata::MODEL_SERVING_ENDPOINT_NAME)
            .map(String::as_str),
        Some("chat-endpoint")
    );
    assert_eq!(
        info.trace_metadata
            .get(keys::metadata::MODEL_ID)
            .map(String::as_str),
        Some("m-123")
    );
    assert_eq!(
        info.trace_metadata
            .get(keys::metadata::SCHEMA_VERSION)
            .map(String::as_str),
        Some("3")
    );
    assert!(
        !info.tags.contains_key(keys::tag::TRACE_NAME),
        "no trace name tag: {:?}",
        info.tags
    );
    assert_eq!(info.experiment_id(), None);
    assert_eq!(
        info.request_preview.as_deref(),
        Some(r#"{"question": "hi"}"#)
    );
    assert_eq!(trace.data.spans.len(), 2);
    let root = trace.data.root_span().unwrap();
    assert_eq!(root.outputs(), Some(json!("answer: hi")));

    assert!(buffer.pop_trace("req-42").is_none(), "popped once");
    let stats = buffer.stats();
    assert_eq!(
        (stats.buffered, stats.popped, stats.len),
        (1, 1, 0),
        "{stats:?}"
    );
}

#[test]
fn expired_and_evicted_traces_are_counted_and_memory_stays_bounded() {
    let buffer = InferenceTableBuffer::new(Duration::from_millis(300), 5);
    let tracer = tracer(&buffer, None);
    for i in 0..20 {
        ServingRequest::new(format!("r{i}")).in_scope(|| tracer.in_scope(|| predict("x")));
    }
    let stats = buffer.stats();
    assert!(stats.len <= 5, "{stats:?}");
    assert_eq!(stats.evicted + stats.len, 20, "{stats:?}");
    std::thread::sleep(Duration::from_millis(600));
    let left: Vec<String> = (0..20)
        .filter_map(|i| buffer.pop_trace(&format!("r{i}")))
        .collect();
    assert!(left.is_empty(), "expired after the TTL");
    let stats = buffer.stats();
    assert_eq!(stats.expired + stats.evicted, 20, "{stats:?}");
    assert_eq!(stats.popped, 0);
}

#[test]
fn many_threads_pop_while_traces_finish_and_each_trace_is_popped_exactly_once() {
    let buffer = InferenceTableBuffer::new(Duration::from_secs(3600), 10_000);
    let tracer = tracer(&buffer, None);
    let popped = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4 {
            let tracer = tracer.clone();
            s.spawn(move || {
                for i in 0..250 {
                    ServingRequest::new(format!("t{t}-{i}"))
                        .in_scope(|| tracer.in_scope(|| predict("q")));
                }
            });
        }
        for _ in 0..4 {
            let buffer = buffer.clone();
            let popped = &popped;
            s.spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while popped.lock().unwrap().len() < 1000 && std::time::Instant::now() < deadline {
                    for t in 0..4 {
                        for i in 0..250 {
                            let id = format!("t{t}-{i}");
                            if let Some(json) = buffer.pop_trace(&id) {
                                assert!(json.contains(&id));
                                popped.lock().unwrap().push(id);
                            }
                        }
                    }
                }
            });
        }
    });
    let popped = popped.into_inner().unwrap();
    let unique: BTreeSet<_> = popped.iter().collect();
    assert_eq!(popped.len(), 1000, "every trace popped");
    assert_eq!(unique.len(), 1000, "and only once");
}

#[tokio::test(flavor = "multi_thread")]
async fn async_requests_keep_their_request_id_across_awaits() {
    let buffer = InferenceTableBuffer::new(Duration::from_secs(3600), 1000);
    let tracer = tracer(&buffer, None);
    #[mlflow_tracing::trace]
    async fn handle(n: u32) -> u32 {
        tokio::task::yield_now().await;
        n + 1
    }
    let mut tasks = Vec::new();
    for n in 0..50 {
        let request = ServingRequest::new(format!("a{n}"));
        tasks.push(tokio::spawn(
            // The request wraps the traced future itself (`Tracer::scope` and `in_current_span`
            // replace the context with the one they captured).
            tracer.scope(handle(n).in_serving_request(&request)),
        ));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for n in 0..50 {
        let trace = Trace::from_json(&buffer.pop_trace(&format!("a{n}")).unwrap()).unwrap();
        assert_eq!(
            trace.data.root_span().unwrap().inputs(),
            Some(json!({"n": n}))
        );
    }
}

#[test]
fn with_an_experiment_traces_also_reach_the_server_in_the_background() {
    let server = MlflowServer::shared().unwrap_or_else(|e| panic!("{e}"));
    let client =
        TrackingClient::new(ClientConfig::new(server.url()).with_retries(2, 0.1, 0.1)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = format!(
        "inference-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let experiment = rt.block_on(client.create_experiment(&name)).unwrap();
    let worker = ExportWorker::start_arc(
        Arc::new(MlflowExporter::new(client.clone())) as Arc<dyn TraceExporter>,
        // A long interval: pop_trace must not wait for the export.
        WorkerConfig::default().with_batching(100, Duration::from_secs(3600)),
    )
    .unwrap();
    let buffer = InferenceTableBuffer::new(Duration::from_secs(3600), 1000)
        .with_forward(Arc::new(worker.clone()));
    let tracer = tracer(&buffer, Some(&experiment));
    ServingRequest::new("bg-1").in_scope(|| tracer.in_scope(|| predict("hello")));
    let json = buffer
        .pop_trace("bg-1")
        .expect("available before any export");
    let trace_id = Trace::from_json(&json).unwrap().info.trace_id;
    assert_eq!(worker.stats().exported, 0, "not exported yet");
    buffer.force_flush(Duration::from_secs(60)).unwrap();
    let stored = rt.block_on(client.get_trace(&trace_id)).unwrap();
    assert_eq!(stored.info.client_request_id.as_deref(), Some("bg-1"));
    assert_eq!(stored.info.experiment_id(), Some(experiment.as_str()));
    assert_eq!(stored.data.spans.len(), 2);
    assert_eq!(buffer.stats().forwarded, 1);
    buffer.shutdown(Duration::from_secs(10)).unwrap();
}

use crate::rerun::{self, CHILD};

#[test]
fn init_inference_table_buffers_and_exports_from_the_environment() {
    if std::env::var_os(CHILD).is_some() {
        let (guard, buffer) = mlflow_tracing::serving::init_inference_table(
            mlflow_tracing::TracerBuilder::from_env().unwrap(),
        )
        .unwrap();
        ServingRequest::new("env-req").in_scope(|| predict("from env"));
        let json = buffer.pop_trace("env-req").expect("buffered");
        drop(guard); // flushes the background export
        let trace = Trace::from_json(&json).unwrap();
        println!("child-trace-id={}", trace.info.trace_id);
        return;
    }
    let server = MlflowServer::shared().unwrap_or_else(|e| panic!("{e}"));
    let client =
        TrackingClient::new(ClientConfig::new(server.url()).with_retries(2, 0.1, 0.1)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = format!(
        "inference-env-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let experiment = rt.block_on(client.create_experiment(&name)).unwrap();
    let (stdout, _) = rerun::output_ok(
        rerun::command(
            &test_name!("init_inference_table_buffers_and_exports_from_the_environment"),
            "1",
        )
        .env("MLFLOW_TRACKING_URI", server.url())
        .env("MLFLOW_EXPERIMENT_ID", &experiment),
    );
    let id = stdout
        .lines()
        .find_map(|l| l.split_once("child-trace-id=").map(|(_, id)| id.trim()))
        .unwrap_or_else(|| panic!("no trace id in {stdout}"));
    let stored = rt.block_on(client.get_trace(id)).unwrap();
    assert_eq!(stored.info.client_request_id.as_deref(), Some("env-req"));
    assert_eq!(stored.info.experiment_id(), Some(experiment.as_str()));
}

/// The program of `tests/data/recorded/inference_table_pop.py`, span for span.
mod python_twin {
    use mlflow_tracing::start_span;

    #[mlflow_tracing::trace(span_type = "CHAT_MODEL")]
    pub(super) fn predict(question: &str) -> String {
        let s = start_span("retrieve").span_type("RETRIEVER").start();
        s.set_inputs(&serde_json::json!({"q": question}));
        s.set_outputs(&["doc"]);
        drop(s);
        format!("answer: {question}")
    }
}

/// Replaces what differs between runs (ids, times, durations) by placeholders numbered in order
/// of appearance, so two runs of one program compare equal as text.
fn normalize(text: &str) -> String {
    fn walk(v: &mut serde_json::Value, ids: &mut Vec<String>) {
        let placeholder = |s: &str, ids: &mut Vec<String>| {
            let n = ids.iter().position(|x| x == s).unwrap_or_else(|| {
                ids.push(s.to_owned());
                ids.len() - 1
            });
            format!("<id{n}>")
        };
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    match (k.as_str(), &*v) {
                        (
                            "trace_id" | "span_id" | "parent_span_id",
                            serde_json::Value::String(s),
                        ) => {
                            *v = json!(placeholder(s, ids));
                        }
                        ("mlflow.traceRequestId", serde_json::Value::String(s)) => {
                            let id: String = serde_json::from_str(s).unwrap();
                            *v = json!(placeholder(&id, ids));
                        }
                        (
                            "request_time"
                            | "start_time_unix_nano"
                            | "end_time_unix_nano"
                            | "execution_duration_ms",
                            _,
                        ) => *v = json!("<time>"),
                        _ => walk(v, ids),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, ids)),
            _ => {}
        }
    }
    let mut doc: serde_json::Value = serde_json::from_str(text).unwrap();
    walk(&mut doc, &mut Vec::new());
    serde_json::to_string(&doc).unwrap()
}

#[test]
fn the_popped_json_is_pythons_for_the_same_program() {
    let buffer = InferenceTableBuffer::new(Duration::from_secs(3600), 1000);
    let tracer = tracer(&buffer, None);
    let request = ServingRequest::new("req-1")
        .endpoint_name("chat-endpoint")
        .model_id("m-123");
    tracer.in_scope(|| request.in_scope(|| python_twin::predict("hi")));
    let ours = buffer.pop_trace("req-1").expect("buffered");
    let python = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/recorded/inference_table_pop.json"),
    )
    .unwrap();
    assert_eq!(normalize(&ours), normalize(python.trim()));
    // Byte for byte as Python's `json.dumps` writes it, once the run-dependent values are set.
    let reencoded = Trace::from_json(&ours).unwrap().to_json().unwrap();
    assert_eq!(reencoded, ours);
}
