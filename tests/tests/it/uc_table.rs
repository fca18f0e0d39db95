//! The Unity Catalog table exporter (feature `uc-table`) against a local server playing
//! Databricks' endpoints (Databricks is not reachable from here): OTLP protobuf decoded with
//! opentelemetry-proto, headers, batching by size and interval, grouping by table, token and
//! OAuth auth with expiry and refresh, V4 ids and info bodies, the V3 fallback, and 401, 429,
//! 5xx answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mlflow_tracing::entities::opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use mlflow_tracing::entities::opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use mlflow_tracing::entities::opentelemetry_proto::tonic::trace::v1 as proto;
use mlflow_tracing::export::{Dispatch as _, ExportWorker, TraceExporter, WorkerConfig};
use mlflow_tracing::server::{ClientConfig, TrackingClient};
use mlflow_tracing::tracer::TraceDestination;
use mlflow_tracing::uc_table::UcTableExporter;
use mlflow_tracing::{TraceUpdate, Tracer, start_span, update_current_trace};
use mlflow_tracing_tests::fake_server::{Answer, Seen, answer, routed};
use prost::Message as _;
use serde_json::{Value, json};

/// What the fake workspace does on each endpoint.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Seconds each OAuth token lives.
    token_life: u64,
    /// Status of the V4 info endpoint.
    v4_status: u16,
    /// Answer the first span request with this status (then 200).
    first_span_status: u16,
}

fn databricks(b: Behaviour) -> impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static {
    let tokens = Arc::new(AtomicU32::new(0));
    let span_calls = Arc::new(AtomicU32::new(0));
    move |s, _| match (s.method.as_str(), s.path.as_str()) {
        ("POST", "/oidc/v1/token") => {
            let n = tokens.fetch_add(1, Ordering::SeqCst) + 1;
            answer(
                200,
                &json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": b.token_life}).to_string(),
            )
        }
        ("POST", "/api/2.0/otel/v1/traces") => {
            if span_calls.fetch_add(1, Ordering::SeqCst) == 0 && b.first_span_status != 200 {
                return answer(
                    b.first_span_status,
                    r#"{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "try again"}"#,
                );
            }
            answer(200, "")
        }
        ("POST", p) if p.starts_with("/api/4.0/mlflow/traces/") && p.ends_with("/info") => {
            if b.v4_status != 200 {
                return answer(
                    b.v4_status,
                    r#"{"error_code": "INTERNAL_ERROR", "message": "v4 unavailable"}"#,
                );
            }
            answer(200, &String::from_utf8_lossy(&s.body))
        }
        ("POST", "/api/3.0/mlflow/traces") => answer(200, &String::from_utf8_lossy(&s.body)),
        _ => answer(
            404,
            r#"{"error_code": "ENDPOINT_NOT_FOUND", "message": "no"}"#,
        ),
    }
}

const OK: Behaviour = Behaviour {
    token_life: 3600,
    v4_status: 200,
    first_span_status: 200,
};

fn token_client(url: &str) -> TrackingClient {
    TrackingClient::new(
        ClientConfig::new(url)
            .with_token("dapi-secret")
            .with_retries(2, 0.01, 0.0),
    )
    .unwrap()
}

fn oauth_client(url: &str) -> TrackingClient {
    let config = ClientConfig::from_databricks_lookup(|k| match k {
        "DATABRICKS_HOST" => Some(url.to_owned()),
        "DATABRICKS_CLIENT_ID" => Some("sp-id".into()),
        "DATABRICKS_CLIENT_SECRET" => Some("sp-secret".into()),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES" => Some("2".into()),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR" => Some("0.01".into()),
        _ => None,
    })
    .unwrap();
    assert!(!format!("{config:?}").contains("sp-secret"));
    TrackingClient::new(config).unwrap()
}

struct Setup {
    worker: ExportWorker,
    exporter: Arc<UcTableExporter>,
}

impl Setup {
    /// Waits (off the async thread) until everything traced so far is exported or failed.
    async fn flush(&self) {
        let worker = self.worker.clone();
        tokio::task::spawn_blocking(move || worker.force_flush(Duration::from_secs(30)).unwrap())
            .await
            .unwrap();
    }
}

fn setup(
    client: TrackingClient,
    batch: usize,
    interval: Duration,
    fallback: Option<&str>,
) -> Setup {
    let mut exporter = UcTableExporter::new(client);
    if let Some(e) = fallback {
        exporter = exporter.with_v3_fallback_experiment(e);
    }
    let exporter = Arc::new(exporter);
    let worker = ExportWorker::start_arc(
        exporter.clone() as Arc<dyn TraceExporter>,
        WorkerConfig::default().with_batching(batch, interval),
    )
    .unwrap();
    Setup { worker, exporter }
}

fn tracer(setup: &Setup, destination: TraceDestination) -> Tracer {
    Tracer::builder()
        .with_environment_metadata(false)
        .with_destination(destination)
        .with_dispatch(Arc::new(setup.worker.clone()))
        .build()
        .unwrap()
}

/// A trace of `spans` spans (root included) with user and session metadata.
fn trace(tracer: &Tracer, spans: usize) -> String {
    tracer.in_scope(|| {
        let root = start_span("agent")
            .span_type("AGENT")
            .inputs(&json!({"q": "hi"}))
            .start();
        update_current_trace(TraceUpdate::new().user("alice").session("s-1")).unwrap();
        for i in 1..spans {
            drop(start_span(format!("step{i}")).span_type("TOOL").start());
        }
        root.set_outputs(&"bye");
        let id = root.mlflow_trace_id().unwrap();
        drop(root);
        id
    })
}

fn span_requests(seen: &[Seen]) -> Vec<(String, ExportTraceServiceRequest)> {
    seen.iter()
        .filter(|s| s.path == "/api/2.0/otel/v1/traces")
        .map(|s| {
            (
                s.header("x-databricks-uc-table-name")
                    .unwrap_or_default()
                    .to_owned(),
                ExportTraceServiceRequest::decode(s.body.as_slice()).unwrap(),
            )
        })
        .collect()
}

fn span_count(r: &ExportTraceServiceRequest) -> usize {
    r.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_and_v4_infos_reach_the_uc_endpoints_with_the_right_ids_headers_and_bodies() {
    let (url, seen) = routed(databricks(OK)).await;
    let s = setup(token_client(&url), 100, Duration::from_secs(3600), None);
    let t = tracer(&s, TraceDestination::uc_schema("main", "traces"));
    let id = tokio::task::spawn_blocking(move || trace(&t, 3))
        .await
        .unwrap();
    let hex = id.strip_prefix("trace:/main.traces/").expect("a V4 id");
    assert_eq!(hex.len(), 32);
    s.flush().await;

    let seen = seen.lock().unwrap().clone();
    let spans = span_requests(&seen);
    assert_eq!(spans.len(), 1, "one OTLP request for the trace's 3 spans");
    let (table, request) = &spans[0];
    assert_eq!(table, "main.traces.mlflow_experiment_trace_otel_spans");
    assert_eq!(span_count(request), 3);
    let otlp = seen
        .iter()
        .find(|r| r.path == "/api/2.0/otel/v1/traces")
        .unwrap();
    assert_eq!(otlp.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(otlp.header("authorization"), Some("Bearer dapi-secret"));
    let all: Vec<_> = request.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .collect();
    let root = all.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    let attr = |span: &proto::Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(
        attr(root, "mlflow.traceRequestId"),
        Some(Any::StringValue(id.clone()))
    );
    assert_eq!(
        attr(root, "user.id"),
        Some(Any::StringValue("alice".into()))
    );
    assert_eq!(
        attr(root, "session.id"),
        Some(Any::StringValue("s-1".into()))
    );

    let info_call = seen
        .iter()
        .find(|r| r.path.ends_with("/info"))
        .expect("a V4 info call");
    assert_eq!(
        info_call.path,
        format!("/api/4.0/mlflow/traces/main.traces/{hex}/info")
    );
    let body: Value = serde_json::from_slice(&info_call.body).unwrap();
    assert_eq!(body["trace_id"], hex);
    assert_eq!(body["trace_location"]["type"], "UC_SCHEMA");
    assert_eq!(body["trace_location"]["uc_schema"]["catalog_name"], "main");
    assert_eq!(
        body["trace_location"]["uc_schema"]["otel_spans_table_name"],
        "mlflow_experiment_trace_otel_spans"
    );
    assert_eq!(body["trace_metadata"]["mlflow.trace_schema.version"], "4");
    assert_eq!(body["trace_metadata"]["mlflow.trace.user"], "alice");
    assert!(body["trace_metadata"]["mlflow.trace.sizeStats"].is_string());
    assert_eq!(body["state"], "OK");
    assert!(
        !seen.iter().any(|r| r.path.contains("mlflow-artifacts")),
        "no traces.json"
    );
    let stats = s.exporter.stats();
    assert_eq!(
        (stats.spans_logged, stats.traces_logged, stats.span_requests),
        (3, 1, 1),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_go_by_size_and_by_interval_grouped_by_table() {
    let (url, seen) = routed(databricks(OK)).await;
    // 6 items per batch: a 5-span trace is 5 span items + 1 trace item.
    let s = setup(token_client(&url), 6, Duration::from_millis(300), None);
    let a = tracer(&s, TraceDestination::uc_schema("main", "a"));
    let b = tracer(
        &s,
        TraceDestination::uc_table_prefix("main", "b", "app", Some("main.b.app_spans".into())),
    );
    tokio::task::spawn_blocking(move || {
        trace(&a, 2);
        trace(&b, 1); // 2 + 1 + 1 + 1 = 5 items: under the batch size
    })
    .await
    .unwrap();
    // Nothing goes out before the interval.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(span_requests(&seen.lock().unwrap()).is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let requests = span_requests(&seen.lock().unwrap());
    let mut tables: Vec<(String, usize)> = requests
        .iter()
        .map(|(t, r)| (t.clone(), span_count(r)))
        .collect();
    tables.sort();
    assert_eq!(
        tables,
        [
            ("main.a.mlflow_experiment_trace_otel_spans".to_owned(), 2),
            ("main.b.app_spans".to_owned(), 1)
        ],
        "one batch after the interval, one request per table"
    );
    // A full batch goes at once, long before the interval.
    let s2 = setup(token_client(&url), 6, Duration::from_secs(3600), None);
    let c = tracer(&s2, TraceDestination::uc_schema("main", "c"));
    tokio::task::spawn_blocking(move || trace(&c, 5))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s2.exporter.stats().spans_logged < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s2.exporter.stats().spans_logged, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_tokens_are_fetched_once_refreshed_before_expiry_and_after_a_401() {
    // Tokens live 2 s: the client refreshes once less than a tenth of that is left.
    let (url, seen) = routed(databricks(Behaviour {
        token_life: 2,
        ..OK
    }))
    .await;
    let s = setup(oauth_client(&url), 1, Duration::from_millis(10), None);
    let t = tracer(&s, TraceDestination::uc_schema("main", "traces"));
    let t2 = t.clone();
    tokio::task::spawn_blocking(move || trace(&t2, 2))
        .await
        .unwrap();
    s.flush().await;
    {
        let seen = seen.lock().unwrap();
        let token_calls: Vec<_> = seen.iter().filter(|r| r.path == "/oidc/v1/token").collect();
        assert_eq!(token_calls.len(), 1, "one token for three requests");
        assert_eq!(
            token_calls[0].header("authorization"),
            Some("Basic c3AtaWQ6c3Atc2VjcmV0")
        );
        assert!(
            String::from_utf8_lossy(&token_calls[0].body).contains("grant_type=client_credentials")
        );
        let api: Vec<_> = seen.iter().filter(|r| r.path != "/oidc/v1/token").collect();
        assert_eq!(api.len(), 3);
        assert!(
            api.iter()
                .all(|r| r.header("authorization") == Some("Bearer tok-1"))
        );
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    tokio::task::spawn_blocking(move || trace(&t, 1))
        .await
        .unwrap();
    s.flush().await;
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.iter().filter(|r| r.path == "/oidc/v1/token").count(),
        2,
        "refreshed"
    );
    assert!(seen.last().unwrap().header("authorization") == Some("Bearer tok-2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_gets_a_fresh_oauth_token_and_the_request_is_sent_again() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let (url, seen) = routed(move |s, _| match s.path.as_str() {
        "/oidc/v1/token" => {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            answer(
                200,
                &json!({"access_token": format!("tok-{n}"), "expires_in": 3600}).to_string(),
            )
        }
        _ if s.header("authorization") == Some("Bearer tok-1") => answer(
            401,
            r#"{"error_code": "UNAUTHENTICATED", "message": "expired"}"#,
        ),
        _ => answer(200, ""),
    })
    .await;
    let client = oauth_client(&url);
    let span = mlflow_tracing::Span::from_otlp(
        &proto::Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "s".into(),
            ..Default::default()
        },
        Some("main.traces"),
    )
    .unwrap();
    client
        .log_spans_to_uc_table("main.traces.spans", [&span])
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let seen = seen.lock().unwrap();
    let api: Vec<_> = seen.iter().filter(|r| r.path != "/oidc/v1/token").collect();
    assert_eq!(api.len(), 2);
    assert_eq!(api[1].header("authorization"), Some("Bearer tok-2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_v4_endpoint_failing_falls_back_to_v3_when_an_experiment_is_set() {
    let (url, seen) = routed(databricks(Behaviour {
        v4_status: 500,
        ..OK
    }))
    .await;
    let s = setup(
        token_client(&url),
        100,
        Duration::from_secs(3600),
        Some("42"),
    );
    let t = tracer(&s, TraceDestination::uc_schema("main", "traces"));
    tokio::task::spawn_blocking(move || trace(&t, 1))
        .await
        .unwrap();
    s.flush().await;
    let seen = seen.lock().unwrap();
    // 1 try + 2 retries of the V4 endpoint, then StartTraceV3.
    assert_eq!(seen.iter().filter(|r| r.path.ends_with("/info")).count(), 3);
    let v3 = seen
        .iter()
        .find(|r| r.path == "/api/3.0/mlflow/traces")
        .expect("fell back");
    let body: Value = serde_json::from_slice(&v3.body).unwrap();
    assert_eq!(
        body["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"],
        "42"
    );
    let stats = s.exporter.stats();
    assert_eq!(
        (stats.traces_logged, stats.v3_fallbacks, stats.traces_failed),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(s.worker.stats().failed, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_and_errors_are_counted_per_item() {
    // 429 once on spans: retried, then fine.
    let (url, seen) = routed(databricks(Behaviour {
        first_span_status: 429,
        ..OK
    }))
    .await;
    let s = setup(token_client(&url), 100, Duration::from_secs(3600), None);
    let t = tracer(&s, TraceDestination::uc_schema("main", "traces"));
    tokio::task::spawn_blocking(move || trace(&t, 2))
        .await
        .unwrap();
    s.flush().await;
    assert_eq!(
        span_requests(&seen.lock().unwrap()).len(),
        2,
        "429 then 200"
    );
    assert_eq!(s.exporter.stats().spans_logged, 2);

    // V4 always 500 and no fallback; spans refused with 401: every item counted as failed.
    let (url, _) = routed(|s, _| {
        if s.path.ends_with("/info") {
            answer(
                500,
                r#"{"error_code": "INTERNAL_ERROR", "message": "down"}"#,
            )
        } else {
            answer(
                401,
                r#"{"error_code": "UNAUTHENTICATED", "message": "bad token"}"#,
            )
        }
    })
    .await;
    let s = setup(token_client(&url), 100, Duration::from_secs(3600), None);
    let t = tracer(&s, TraceDestination::uc_schema("main", "traces"));
    tokio::task::spawn_blocking(move || trace(&t, 3))
        .await
        .unwrap();
    s.flush().await;
    let w = s.worker.stats();
    assert_eq!((w.enqueued, w.exported, w.failed), (4, 0, 4), "{w:?}");
    let e = s.exporter.stats();
    assert_eq!((e.spans_failed, e.traces_failed), (3, 1), "{e:?}");
}

use crate::rerun::{self, CHILD};

#[tokio::test(flavor = "multi_thread")]
async fn init_picks_the_uc_exporter_for_a_uc_destination_from_the_environment() {
    if std::env::var_os(CHILD).is_some() {
        tokio::task::spawn_blocking(|| {
            let guard =
                mlflow_tracing::init(mlflow_tracing::TracerBuilder::from_env().unwrap()).unwrap();
            drop(start_span("from-env").start());
            let stats = guard.export_stats().unwrap();
            drop(guard); // flushes
            println!("child-enqueued={}", stats.enqueued);
        })
        .await
        .unwrap();
        return;
    }
    let (url, seen) = routed(databricks(OK)).await;
    tokio::task::spawn_blocking(move || {
        rerun::output_ok(
            rerun::command(
                &test_name!("init_picks_the_uc_exporter_for_a_uc_destination_from_the_environment"),
                "1",
            )
            .env("MLFLOW_TRACING_DESTINATION", "main.fromenv")
            .env("DATABRICKS_HOST", &url)
            .env("DATABRICKS_TOKEN", "dapi-env")
            .env_remove("MLFLOW_TRACKING_URI"),
        )
    })
    .await
    .unwrap();
    let seen = seen.lock().unwrap();
    let spans = span_requests(&seen);
    assert_eq!(
        spans.len(),
        1,
        "{:?}",
        seen.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    assert_eq!(
        spans[0].0,
        "main.fromenv.mlflow_experiment_trace_otel_spans"
    );
    let info = seen
        .iter()
        .find(|r| r.path.ends_with("/info"))
        .expect("V4 info");
    assert!(
        info.path
            .starts_with("/api/4.0/mlflow/traces/main.fromenv/"),
        "{}",
        info.path
    );
    assert_eq!(info.header("authorization"), Some("Bearer dapi-env"));
}

/// Spans this process makes in a trace continued from another process go to the destination's
/// table (before, their location was unspecified and they were dropped); no trace info is
/// written for someone else's trace, and a continuation without spans sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn spans_of_a_continued_trace_go_to_the_destinations_table() {
    let (url, seen) = routed(databricks(OK)).await;
    let s = setup(token_client(&url), 100, Duration::from_secs(3600), None);
    let t = tracer(&s, TraceDestination::uc_schema("main", "traces"));
    tokio::task::spawn_blocking(move || {
        t.in_scope(|| {
            let headers = [(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )];
            let remote = mlflow_tracing::distributed::continue_trace(headers).unwrap();
            {
                let _attached = remote.attach();
                drop(start_span("handler").start());
            }
            drop(remote);
            let empty = mlflow_tracing::distributed::continue_trace([(
                "traceparent",
                "00-11111111111111111111111111111111-2222222222222222-01",
            )])
            .unwrap();
            drop(empty);
        });
    })
    .await
    .unwrap();
    s.flush().await;
    let seen = seen.lock().unwrap().clone();
    let spans = span_requests(&seen);
    assert_eq!(
        spans.len(),
        1,
        "{:?}",
        seen.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    assert_eq!(spans[0].0, "main.traces.mlflow_experiment_trace_otel_spans");
    assert_eq!(span_count(&spans[0].1), 1);
    assert!(
        !seen.iter().any(|r| r.path.ends_with("/info")),
        "no trace info for a continued trace"
    );
    assert_eq!(s.worker.stats().failed, 0);
}
