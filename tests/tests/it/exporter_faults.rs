//! The MLflow exporter against answers a real 3.17.2 server does not give: a server older than
//! 3.4, a 501 from a file-store server, refused credentials. Scripted local server; the normal
//! path runs against a real server in `tracking_server.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

use std::sync::Arc;
use std::time::Duration;

use mlflow_tracing::export::{Dispatch, SyncDispatch};
use mlflow_tracing::server::{ClientConfig, MlflowExporter, TrackingClient};
use mlflow_tracing::{Tracer, start_span};
use mlflow_tracing_tests::fake_server::{Answer, Seen, answer, routed};
use serde_json::json;

/// StartTraceV3's answer: the info back, with the artifact location the server adds.
fn start_trace_answer(seen: &Seen, spans_in_store: bool) -> Answer {
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    let mut info = body["trace"]["trace_info"].clone();
    let id = info["trace_id"].as_str().unwrap().to_owned();
    info["tags"]["mlflow.artifactLocation"] =
        json!(format!("mlflow-artifacts:/0/traces/{id}/artifacts"));
    if spans_in_store {
        info["tags"]["mlflow.trace.spansLocation"] = json!("TRACKING_STORE");
    }
    answer(200, &json!({"trace": {"trace_info": info}}).to_string())
}

fn run(url: &str, traces: usize) -> Arc<MlflowExporter> {
    let exporter = Arc::new(MlflowExporter::new(
        TrackingClient::new(ClientConfig::new(url).with_retries(0, 0.0, 0.0)).unwrap(),
    ));
    let dispatch = Arc::new(SyncDispatch::new(exporter.clone(), Duration::from_secs(10)).unwrap());
    let tracer = Tracer::builder()
        .with_environment_metadata(false)
        .with_dispatch(dispatch.clone())
        .build()
        .unwrap();
    for _ in 0..traces {
        tracer.in_scope(|| {
            let root = start_span("root").inputs(&json!({"q": 1})).start();
            drop(start_span("child").start());
            drop(root);
        });
    }
    dispatch.shutdown(Duration::from_secs(10)).unwrap();
    exporter
}

fn paths(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| {
            format!(
                "{} {}",
                s.method,
                s.path.split('?').next().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_501_from_otlp_turns_span_logging_off_and_traces_go_as_traces_json() {
    let (url, seen) = routed(|s, _| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/version") => answer(200, "3.17.2"),
        ("POST", "/v1/traces") => answer(
            501,
            r#"{"detail": "REST OTLP span logging is not supported by FileStore"}"#,
        ),
        ("POST", "/api/3.0/mlflow/traces") => start_trace_answer(s, false),
        ("PUT", _) => answer(200, ""),
        _ => answer(404, "{}"),
    })
    .await;
    let exporter = tokio::task::spawn_blocking(move || run(&url, 2))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    let paths = paths(&seen);
    assert_eq!(paths[0], "GET /version");
    assert_eq!(paths[1], "POST /v1/traces");
    assert_eq!(paths[2], "POST /api/3.0/mlflow/traces");
    assert!(
        paths[3].starts_with("PUT /api/2.0/mlflow-artifacts/artifacts/0/traces/tr-"),
        "{paths:?}"
    );
    assert!(paths[3].ends_with("/artifacts/traces.json"), "{paths:?}");
    // The second trace: no more OTLP, no more version probe.
    assert_eq!(
        &paths[4..],
        ["POST /api/3.0/mlflow/traces", paths[4 + 1].as_str()]
    );
    assert_eq!(paths.len(), 6, "{paths:?}");
    let upload = &seen[3];
    assert_eq!(upload.header("content-type"), Some("text/plain"));
    let data: serde_json::Value = serde_json::from_slice(&upload.body).unwrap();
    assert_eq!(data["spans"].as_array().unwrap().len(), 2);
    let otlp = &seen[1];
    assert_eq!(otlp.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(otlp.header("x-mlflow-experiment-id"), Some("0"));
    let stats = exporter.stats();
    assert!(!stats.span_logging);
    assert_eq!(
        (
            stats.traces_logged,
            stats.artifact_uploads,
            stats.otlp_requests
        ),
        (2, 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_older_than_3_4_gets_no_otlp_at_all() {
    let (url, seen) = routed(|s, _| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/version") => answer(200, "3.3.2"),
        ("POST", "/api/3.0/mlflow/traces") => start_trace_answer(s, false),
        ("PUT", _) => answer(200, ""),
        _ => answer(404, "{}"),
    })
    .await;
    let exporter = tokio::task::spawn_blocking(move || run(&url, 1))
        .await
        .unwrap();
    let paths = paths(&seen.lock().unwrap());
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert_eq!(paths[0], "GET /version");
    assert_eq!(paths[1], "POST /api/3.0/mlflow/traces");
    assert!(paths[2].starts_with("PUT "));
    assert_eq!(exporter.stats().otlp_requests, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_fail_the_trace_and_are_counted() {
    let (url, _) = routed(|s, _| match s.path.as_str() {
        "/version" => answer(200, "3.17.2"),
        _ => answer(
            403,
            r#"{"error_code": "PERMISSION_DENIED", "message": "Permission denied"}"#,
        ),
    })
    .await;
    let exporter = tokio::task::spawn_blocking(move || run(&url, 2))
        .await
        .unwrap();
    let stats = exporter.stats();
    assert_eq!(
        (
            stats.traces_logged,
            stats.traces_failed,
            stats.otlp_failures
        ),
        (0, 2, 2)
    );
}
