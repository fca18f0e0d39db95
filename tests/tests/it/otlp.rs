//! OTLP export to a collector, configured the way MLflow's Python SDK is (environment
//! variables, `init`), against real receivers: a second MLflow server's `/v1/traces` (the
//! experiment chosen through `OTEL_EXPORTER_OTLP_TRACES_HEADERS`) as the collector, while the
//! shared server gets the full MLflow export (dual export); OTLP alone; and a receiver that is
//! down, which does not keep the tracking server from getting every trace. Jobs are child
//! processes; what each server stored is read back with Python's `mlflow`.
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::Duration;

use mlflow_tracing::TracerBuilder;
use mlflow_tracing::server::{ClientConfig, TrackingClient};
use mlflow_tracing_tests::server::MlflowServer;
use serde_json::{Value, json};

use crate::live::{block_on, experiment, server};
use crate::rerun::{self, CHILD};

/// In the child: 5 traces of 3 spans through `init`; its counters as one JSON line.
#[expect(
    clippy::print_stdout,
    reason = "the child reports to its parent on stdout"
)]
fn child() {
    let guard = mlflow_tracing::init(TracerBuilder::from_env().unwrap()).unwrap();
    for i in 0..5 {
        let root = mlflow_tracing::start_span(format!("otlp-job-{i}"))
            .inputs(&json!({"i": i}))
            .start();
        let _in = root.enter();
        for j in 0..2 {
            let step = mlflow_tracing::start_span(format!("step-{j}")).start();
            step.set_outputs(&j);
        }
        root.set_outputs(&"done");
    }
    guard
        .tracer()
        .force_flush(Duration::from_secs(30))
        .unwrap_or(());
    let otlp = guard.otlp_stats().unwrap();
    let worker = guard.export_stats().unwrap();
    println!(
        "RESULT {}",
        json!({
            "otlp_spans": otlp.spans_exported,
            "otlp_failed": otlp.traces_failed,
            "exported": worker.exported,
            "failed": worker.failed,
        })
    );
    drop(guard);
}

fn run(test: &str, env: &[(&str, &str)]) -> Value {
    let (stdout, stderr) = rerun::output_ok(
        rerun::command(test, "1")
            .env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .envs(env.iter().copied()),
    );
    rerun::result(&format!("{stdout}{stderr}"))
}

/// Per trace in `experiment` of the server at `url`: its name, span count, and the root's
/// inputs as Python's `mlflow` reads them.
fn stored(url: &str, experiment: &str) -> Vec<(String, u64, Value)> {
    let out = mlflow_tracing_tests::python::run_script_with(
        r#"
import json, sys, mlflow
rows = []
for t in mlflow.search_traces(locations=[sys.argv[1]], return_type="list"):
    root = [s for s in t.data.spans if s.parent_id is None][0]
    rows.append([root.name, len(t.data.spans), root.inputs])
print(json.dumps(sorted(rows)))
"#,
        &[experiment],
        &[("MLFLOW_TRACKING_URI", url)],
    )
    .unwrap();
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

fn expected() -> Vec<(String, u64, Value)> {
    (0..5)
        .map(|i| (format!("otlp-job-{i}"), 3, json!({"i": i})))
        .collect()
}

#[test]
fn dual_export_to_a_collector_otlp_alone_and_a_receiver_that_is_down() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let test = test_name!("dual_export_to_a_collector_otlp_alone_and_a_receiver_that_is_down");
    let collector = MlflowServer::start().unwrap();
    let collector_client =
        TrackingClient::new(ClientConfig::new(collector.url()).with_retries(2, 0.1, 0.1)).unwrap();
    let new_collector_experiment = |name: &str| {
        block_on(collector_client.create_experiment(&format!("{name}-{}", std::process::id())))
            .unwrap()
    };
    let endpoint = format!("{}/v1/traces", collector.url());

    // Dual export: the tracking server gets the MLflow export, the collector the spans.
    let (main_exp, otlp_exp) = (experiment("otlp-dual"), new_collector_experiment("dual"));
    let headers = format!("x-mlflow-experiment-id={otlp_exp}");
    let result = run(
        &test,
        &[
            ("MLFLOW_TRACKING_URI", server().url()),
            ("MLFLOW_EXPERIMENT_ID", &main_exp),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", &headers),
            ("MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT", "true"),
        ],
    );
    assert_eq!(result["otlp_spans"], 15, "{result}");
    assert_eq!(stored(server().url(), &main_exp), expected());
    assert_eq!(stored(collector.url(), &otlp_exp), expected());

    // OTLP alone: the tracking server gets nothing, as in MLflow.
    let (main_exp, otlp_exp) = (experiment("otlp-only"), new_collector_experiment("only"));
    let headers = format!("x-mlflow-experiment-id={otlp_exp}");
    let result = run(
        &test,
        &[
            ("MLFLOW_TRACKING_URI", server().url()),
            ("MLFLOW_EXPERIMENT_ID", &main_exp),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()),
            ("OTEL_EXPORTER_OTLP_HEADERS", &headers),
        ],
    );
    assert_eq!(result["otlp_spans"], 15, "{result}");
    assert_eq!(stored(collector.url(), &otlp_exp), expected());
    assert!(stored(server().url(), &main_exp).is_empty());

    // A collector that is down: counted there, and the tracking server still gets everything.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1/traces", listener.local_addr().unwrap())
    };
    let main_exp = experiment("otlp-down");
    let result = run(
        &test,
        &[
            ("MLFLOW_TRACKING_URI", server().url()),
            ("MLFLOW_EXPERIMENT_ID", &main_exp),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &dead),
            ("MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT", "true"),
        ],
    );
    assert_eq!(result["otlp_failed"], 5, "{result}");
    assert_eq!(result["failed"], 0, "{result}");
    assert_eq!(stored(server().url(), &main_exp), expected());
}
