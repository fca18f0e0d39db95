//! Distributed tracing across real processes and a real MLflow 3.17.2 server: a Python caller
//! and a Rust service, a Rust caller and a Python service, each reading back one trace with
//! every span correctly parented. The Rust service is this test binary run again as a child
//! process (`MLFLOW_TRACING_TEST_CHILD=rust-service`), set up the way the README says (`init`,
//! `continue_trace`, `attach`, `#[trace]` functions), in the SDK's default async mode. The Python
//! side runs with `MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false`: MLflow 3.17.2's own service loses
//! remote spans with async logging on (its header context ends before the batch is exported).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlflow_tracing::distributed::{continue_trace, tracing_context_headers};
use mlflow_tracing::export::{Dispatch, ExportWorker, TraceExporter, WorkerConfig};
use mlflow_tracing::server::{ClientConfig, MlflowExporter, TrackingClient};
use mlflow_tracing::{Tracer, TracerBuilder};
use mlflow_tracing_tests::server::MlflowServer;
use mlflow_tracing_tests::service::{LISTENING, Service};
use mlflow_tracing_tests::{http, python};
use serde_json::Value;

use crate::rerun::{self, CHILD};
/// In the Rust service: an experiment id given to `TracerBuilder::with_experiment_id`.
const BUILDER_EXPERIMENT: &str = "TEST_BUILDER_EXPERIMENT_ID";

fn server() -> &'static MlflowServer {
    MlflowServer::shared().unwrap_or_else(|e| panic!("the MLflow server must run: {e}"))
}

fn client() -> TrackingClient {
    TrackingClient::new(ClientConfig::new(server().url()).with_retries(2, 0.1, 0.1)).unwrap()
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// A fresh experiment; its id and name.
fn experiment(name: &str) -> (String, String) {
    let name = unique(name);
    (block_on(client().create_experiment(&name)).unwrap(), name)
}

/// Reads the trace back with Python's `mlflow.get_trace`: per span name, its span id, parent
/// id and trace id; plus the trace info's request preview and trace name tag.
const PY_READ_BACK: &str = r#"
import json, sys, mlflow
t = mlflow.get_trace(sys.argv[1])
print(json.dumps({
    "spans": {s.name: {"span_id": s.span_id, "parent_id": s.parent_id, "trace_id": s.trace_id,
                       "type": s.span_type, "inputs": s.inputs, "outputs": s.outputs}
              for s in t.data.spans},
    "trace_name": t.info.tags.get("mlflow.traceName"),
    "request_preview": t.info.request_preview,
    "experiment_id": t.info.experiment_id,
}))
"#;

fn read_back(trace_id: &str) -> Value {
    let out = server().run_python(PY_READ_BACK, &[trace_id]).unwrap();
    serde_json::from_str(out.trim()).unwrap()
}

/// Polls the server until the trace holds `spans` spans (at most 30 s); returns the names.
fn wait_for_spans(trace_id: &str, spans: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = client();
    loop {
        let names: Vec<String> = block_on(client.get_trace(trace_id))
            .map(|t| t.data.spans.iter().map(|s| s.name().to_owned()).collect())
            .unwrap_or_default();
        if names.len() >= spans || Instant::now() > deadline {
            return names;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---- The Rust service (run in a child process) ----

#[mlflow_tracing::trace(span_type = "TOOL")]
fn plan(question: &str) -> String {
    format!("look up {question}")
}

#[mlflow_tracing::trace(span_type = "AGENT")]
fn handle(question: String) -> String {
    let plan = plan(&question);
    format!("answer to {question:?} ({plan})")
}

/// The service: `init` from the environment (plus a builder experiment when asked), then one
/// continued trace per request, until `POST /shutdown`; prints the export counters.
#[expect(
    clippy::print_stdout,
    reason = "the service reports to its parent on stdout"
)]
fn rust_service() {
    let mut builder = TracerBuilder::from_env().unwrap();
    if let Ok(id) = std::env::var(BUILDER_EXPERIMENT) {
        builder = builder.with_experiment_id(id);
    }
    let guard = mlflow_tracing::init(builder).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    println!("{LISTENING} {port}");
    http::serve(&listener, |request| {
        if request.path == "/shutdown" {
            return None;
        }
        let remote = continue_trace(request.headers.iter().map(|(k, v)| (k, v))).unwrap();
        let _attached = remote.attach();
        Some((200, handle(request.body.clone())))
    })
    .unwrap();
    let tracer = guard.tracer().clone();
    tracer.force_flush(Duration::from_secs(30)).unwrap();
    let (w, t) = (guard.export_stats().unwrap(), tracer.stats());
    drop(guard);
    println!(
        "SERVICE-STATS enqueued={} exported={} failed={} dropped={} items_failed={}",
        w.enqueued,
        w.exported,
        w.failed,
        w.dropped_queue_full + w.dropped_shutdown + w.dropped_shutdown_timeout,
        t.items_failed
    );
}

fn spawn_rust_service(test: &str, env: &[(&str, &str)]) -> Service {
    let mut command = rerun::command(&test_name!(test), "rust-service");
    command
        .env("MLFLOW_TRACKING_URI", server().url())
        .env_remove("MLFLOW_EXPERIMENT_ID")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .envs(env.iter().copied());
    Service::spawn(command, Duration::from_secs(60)).unwrap()
}

/// The Python caller: a span, its `traceparent` to the Rust service, the answer as outputs.
const PY_CALLER: &str = r#"
import json, sys, urllib.request, mlflow
from mlflow.tracing import get_tracing_context_headers_for_http_request
port = sys.argv[1]
with mlflow.start_span("py_caller", span_type="CHAIN") as span:
    span.set_inputs({"question": "weather in Paris"})
    headers = get_tracing_context_headers_for_http_request()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/agent",
                                     data=b"weather in Paris", headers=headers, method="POST")
    answer = urllib.request.urlopen(request, timeout=60).read().decode()
    span.set_outputs(answer)
print(json.dumps({"trace_id": span.trace_id, "span_id": span.span_id}))
"#;

/// A Python caller calls the Rust service; the trace on the server has the caller's span and
/// both Rust spans, correctly parented, while the service still runs (async export).
fn python_caller_and_rust_service(test: &str, rust_env: &[(&str, &str)], py_env: &[(&str, &str)]) {
    let service = spawn_rust_service(test, rust_env);
    let port = service.port().to_string();
    let mut env = vec![
        ("MLFLOW_TRACKING_URI", server().url()),
        ("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false"),
    ];
    env.extend_from_slice(py_env);
    let out = python::run_script_with(PY_CALLER, &[&port], &env).unwrap();
    let caller: Value = serde_json::from_str(out.trim()).unwrap();
    let trace_id = caller["trace_id"].as_str().unwrap().to_owned();

    // The service is still running: its spans arrive through the export worker.
    let names = wait_for_spans(&trace_id, 3);
    assert_eq!(names.len(), 3, "spans on the server: {names:?}");

    assert!(
        http::post(
            service.port(),
            "/shutdown",
            Vec::<(String, String)>::new(),
            ""
        )
        .is_ok()
    );
    let (ok, output) = service.wait(Duration::from_secs(30));
    assert!(ok, "the service failed:\n{output}");
    assert!(
        output.contains("SERVICE-STATS enqueued=1 exported=1 failed=0 dropped=0 items_failed=0"),
        "one remote trace exported, nothing failed or dropped in the service:\n{output}"
    );

    let back = read_back(&trace_id);
    let spans = &back["spans"];
    let caller_span = caller["span_id"].as_str().unwrap();
    assert_eq!(spans["py_caller"]["span_id"], caller_span);
    assert_eq!(spans["py_caller"]["parent_id"], Value::Null);
    assert_eq!(spans["handle"]["parent_id"], caller_span, "{back}");
    assert_eq!(
        spans["plan"]["parent_id"], spans["handle"]["span_id"],
        "{back}"
    );
    for name in ["py_caller", "handle", "plan"] {
        assert_eq!(spans[name]["trace_id"], trace_id.as_str(), "{name}");
    }
    assert_eq!(spans["handle"]["type"], "AGENT");
    assert_eq!(spans["handle"]["inputs"]["question"], "weather in Paris");
    assert_eq!(spans["plan"]["outputs"], "look up weather in Paris");
    assert_eq!(
        back["trace_name"], "py_caller",
        "the caller owns the trace info"
    );
}

/// How the Rust service is told its experiment.
#[derive(Clone, Copy)]
enum ExperimentSetting {
    Builder,
    EnvId,
    EnvName,
}

/// A Python caller and a Rust service that learns its experiment through `setting` (the Python
/// caller uses the same experiment, by id or by name).
fn python_caller_with(test: &str, setting: ExperimentSetting) {
    if std::env::var_os(CHILD).is_some() {
        return rust_service();
    }
    let (id, name) = experiment("dist-python-caller");
    let (rust_env, py_env) = match setting {
        ExperimentSetting::Builder => (
            (BUILDER_EXPERIMENT, id.as_str()),
            ("MLFLOW_EXPERIMENT_ID", id.as_str()),
        ),
        ExperimentSetting::EnvId => (
            ("MLFLOW_EXPERIMENT_ID", id.as_str()),
            ("MLFLOW_EXPERIMENT_ID", id.as_str()),
        ),
        ExperimentSetting::EnvName => (
            ("MLFLOW_EXPERIMENT_NAME", name.as_str()),
            ("MLFLOW_EXPERIMENT_NAME", name.as_str()),
        ),
    };
    python_caller_and_rust_service(test, &[rust_env], &[py_env]);
}

#[test]
fn python_caller_rust_service_with_the_builders_experiment() {
    python_caller_with(
        "python_caller_rust_service_with_the_builders_experiment",
        ExperimentSetting::Builder,
    );
}

#[test]
fn python_caller_rust_service_with_mlflow_experiment_id() {
    python_caller_with(
        "python_caller_rust_service_with_mlflow_experiment_id",
        ExperimentSetting::EnvId,
    );
}

#[test]
fn python_caller_rust_service_with_mlflow_experiment_name() {
    python_caller_with(
        "python_caller_rust_service_with_mlflow_experiment_name",
        ExperimentSetting::EnvName,
    );
}

// ---- A Rust caller and a Python service ----

/// The Python service: continues the caller's trace around a span, until `POST /shutdown`.
const PY_SERVICE: &str = r#"
import threading, mlflow
from http.server import BaseHTTPRequestHandler, HTTPServer
from mlflow.tracing import set_tracing_context_from_http_request_headers

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if self.path == "/shutdown":
            answer = "bye"
            threading.Thread(target=server.shutdown).start()
        else:
            with set_tracing_context_from_http_request_headers(dict(self.headers)):
                with mlflow.start_span("py_handler", span_type="TOOL") as span:
                    span.set_inputs({"q": body})
                    answer = body.upper()
                    span.set_outputs(answer)
        data = answer.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Handler)
print("LISTENING", server.server_address[1], flush=True)
server.serve_forever()
"#;

#[mlflow_tracing::trace(span_type = "AGENT")]
fn rust_caller(port: u16, question: &str) -> String {
    let (status, answer) = http::post(port, "/agent", tracing_context_headers(), question).unwrap();
    assert_eq!(status, 200);
    answer
}

/// A tracer exporting to the shared server through the export worker (the SDK's default mode).
fn worker_tracer(experiment_id: &str) -> (Tracer, Arc<MlflowExporter>, ExportWorker) {
    let exporter = Arc::new(MlflowExporter::new(client()));
    let worker = ExportWorker::start_arc(
        exporter.clone() as Arc<dyn TraceExporter>,
        WorkerConfig::default().with_batching(5, Duration::from_millis(50)),
    )
    .unwrap();
    let tracer = Tracer::builder()
        .with_environment_metadata(false)
        .with_experiment_id(experiment_id)
        .with_dispatch(Arc::new(worker.clone()) as Arc<dyn Dispatch>)
        .build()
        .unwrap();
    (tracer, exporter, worker)
}

#[test]
fn rust_caller_python_service() {
    let (experiment_id, _) = experiment("dist-rust-caller");
    let python = python::mlflow_python().unwrap();
    let mut command = Command::new(python);
    command
        .arg("-c")
        .arg(PY_SERVICE)
        .env("MLFLOW_TRACKING_URI", server().url())
        .env("MLFLOW_EXPERIMENT_ID", &experiment_id)
        .env("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
        .env("MLFLOW_DISABLE_TELEMETRY", "true");
    let service = Service::spawn(command, Duration::from_secs(60)).unwrap();

    let (tracer, exporter, worker) = worker_tracer(&experiment_id);
    let answer = tracer.in_scope(|| rust_caller(service.port(), "hello"));
    assert_eq!(answer, "HELLO");
    let trace_id = tracer.last_active_trace_id().unwrap();
    worker.force_flush(Duration::from_secs(30)).unwrap();
    let names = wait_for_spans(&trace_id, 2);
    assert_eq!(names.len(), 2, "spans on the server: {names:?}");
    assert!(
        http::post(
            service.port(),
            "/shutdown",
            Vec::<(String, String)>::new(),
            ""
        )
        .is_ok()
    );
    let (ok, output) = service.wait(Duration::from_secs(30));
    assert!(ok, "the Python service failed:\n{output}");

    let back = read_back(&trace_id);
    let spans = &back["spans"];
    assert_eq!(spans["rust_caller"]["parent_id"], Value::Null);
    assert_eq!(
        spans["py_handler"]["parent_id"], spans["rust_caller"]["span_id"],
        "{back}"
    );
    assert_eq!(spans["py_handler"]["trace_id"], trace_id.as_str());
    assert_eq!(spans["py_handler"]["outputs"], "HELLO");
    assert_eq!(back["trace_name"], "rust_caller");
    assert_eq!(back["experiment_id"], experiment_id.as_str());
    assert_eq!(exporter.stats().traces_failed, 0);
    assert_eq!(worker.stats().failed, 0);
}

#[test]
fn a_continued_trace_without_local_spans_sends_nothing_and_fails_nothing() {
    let (experiment_id, _) = experiment("dist-empty");
    let (tracer, exporter, worker) = worker_tracer(&experiment_id);
    let headers: HashMap<String, String> = HashMap::from([(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    )]);
    tracer.in_scope(|| {
        let remote = continue_trace(&headers).unwrap();
        let _attached = remote.attach();
    });
    worker.force_flush(Duration::from_secs(30)).unwrap();
    let stats = exporter.stats();
    assert_eq!(
        (stats.otlp_requests, stats.otlp_failures),
        (0, 0),
        "{stats:?}"
    );
    let w = worker.stats();
    assert_eq!((w.enqueued, w.failed), (0, 0), "{w:?}");
    assert_eq!(tracer.stats().items_failed, 0);
}
