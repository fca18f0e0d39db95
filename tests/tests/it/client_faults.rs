//! Fault injection against a scripted local HTTP server: retries and backoff, `Retry-After`,
//! no retry on other 4xx, garbage and empty answers, timeouts, auth headers, and what errors
//! say. (The happy path runs against a real MLflow server in `tracking_server.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::time::{Duration, Instant};

use mlflow_tracing::server::{ClientConfig, ClientError, TrackingClient};
use mlflow_tracing_tests::fake_server::{answer, scripted as fake_server};

fn client(url: &str, retries: u32) -> TrackingClient {
    TrackingClient::new(ClientConfig::new(url).with_retries(retries, 0.01, 0.0)).unwrap()
}

#[tokio::test]
async fn transient_statuses_are_retried_until_success() {
    let (url, seen) = fake_server(vec![
        answer(503, "busy"),
        answer(502, "bad gateway"),
        answer(429, "slow down"),
        answer(
            200,
            r#"{"experiment": {"experiment_id": "7", "name": "x"}}"#,
        ),
    ])
    .await;
    let experiment = client(&url, 5).get_experiment("7").await.unwrap();
    assert_eq!(experiment.experiment_id, "7");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter()
            .all(|s| s.path == "/api/2.0/mlflow/experiments/get?experiment_id=7")
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let mut busy = answer(503, "busy");
    busy.headers.push(("Retry-After", "1".into()));
    let (url, seen) = fake_server(vec![busy, answer(200, "3.17.2")]).await;
    // `version` never retries; use an endpoint that does.
    let started = Instant::now();
    let err = client(&url, 1).get_experiment("1").await.unwrap_err();
    // The second answer is not JSON of the right shape: a decode error, after ≥ 1 s.
    assert!(matches!(err, ClientError::Decode { .. }), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn other_client_errors_fail_at_once_with_the_servers_code_and_message() {
    let (url, seen) = fake_server(vec![answer(
        400,
        r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid clause(s) in filter string"}"#,
    )])
    .await;
    let err = client(&url, 5).get_experiment("3").await.unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), 1, "no retry on 400");
    assert_eq!(
        (err.status(), err.code()),
        (Some(400), Some("INVALID_PARAMETER_VALUE"))
    );
    assert_eq!(
        err.to_string(),
        "GET /api/2.0/mlflow/experiments/get: HTTP 400 INVALID_PARAMETER_VALUE: Invalid clause(s) in filter string"
    );
}

#[tokio::test]
async fn fastapi_details_garbage_and_exhausted_retries_are_clear_errors() {
    let (url, _) = fake_server(vec![answer(
        501,
        r#"{"detail": "REST OTLP span logging is not supported by FileStore"}"#,
    )])
    .await;
    let no_spans: [&mlflow_tracing::Span; 0] = [];
    // No spans: nothing is sent.
    client(&url, 0).log_spans("1", no_spans).await.unwrap();
    let err = client(&url, 0)
        .set_trace_tag("tr-1", "k", "v")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(501));
    assert!(
        err.server_message()
            .contains("REST OTLP span logging is not supported")
    );

    let (url, _) = fake_server(vec![answer(200, "<html>not json</html>")]).await;
    let err = client(&url, 0).get_experiment("1").await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err}");

    let (url, seen) = fake_server(vec![answer(500, "")]).await;
    let err = client(&url, 2).get_experiment("1").await.unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), 3, "1 try + 2 retries");
    assert_eq!(err.status(), Some(500));
    assert!(err.to_string().contains("(empty body)"), "{err}");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transport_errors_that_say_what_to_raise() {
    let mut slow = answer(200, "{}");
    slow.delay = Duration::from_secs(5);
    let (url, _) = fake_server(vec![slow]).await;
    let c = TrackingClient::new(
        ClientConfig::new(&url)
            .with_retries(0, 0.0, 0.0)
            .with_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let err = c.get_experiment("1").await.unwrap_err();
    match &err {
        ClientError::Transport {
            timeout, message, ..
        } => {
            assert!(*timeout);
            assert!(message.contains("MLFLOW_HTTP_REQUEST_TIMEOUT"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client(&format!("http://127.0.0.1:{port}"), 2)
        .get_experiment("1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Transport { timeout: false, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("after 2 retries"), "{err}");
}

#[tokio::test]
async fn auth_headers_are_sent_and_invalid_ids_never_reach_the_server() {
    let (url, seen) = fake_server(vec![answer(200, "{}")]).await;
    let bearer = TrackingClient::new(ClientConfig::new(&url).with_token("t0k")).unwrap();
    bearer.set_trace_tag("tr-a/b?c", "k", "v").await.unwrap();
    let basic = TrackingClient::new(ClientConfig::new(&url).with_basic_auth("u", "p")).unwrap();
    basic.delete_trace_tag("tr-1", "k").await.unwrap();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].header("authorization"), Some("Bearer t0k"));
        // Path segments are percent-encoded.
        assert_eq!(seen[0].path, "/api/2.0/mlflow/traces/tr-a%2Fb%3Fc/tags");
        assert_eq!(seen[0].method, "PATCH");
        assert_eq!(seen[0].header("content-type"), Some("application/json"));
        assert_eq!(seen[1].header("authorization"), Some("Basic dTpw"));
        assert_eq!(seen[1].method, "DELETE");
    }
    for err in [
        bearer.get_experiment("").await.unwrap_err(),
        bearer.get_experiment("../1").await.unwrap_err(),
        bearer.get_trace_info("tr-\n1").await.unwrap_err(),
        bearer.get_experiment_by_name("").await.unwrap_err(),
    ] {
        assert!(matches!(err, ClientError::InvalidArgument { .. }), "{err}");
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
    // The token is in no error or debug text.
    assert!(!format!("{bearer:?}").contains("t0k"));
}

#[tokio::test]
async fn credentials_never_go_to_an_artifact_host_other_than_the_tracking_server() {
    let (tracking, tracking_seen) = fake_server(vec![answer(200, "")]).await;
    let (other, other_seen) = fake_server(vec![answer(200, "")]).await;
    let client = TrackingClient::new(
        ClientConfig::new(&tracking)
            .with_token("t0k")
            .with_retries(0, 0.0, 0.0),
    )
    .unwrap();
    let mut info = mlflow_tracing::entities::TraceInfo::new(
        "tr-0123456789abcdef0123456789abcdef",
        mlflow_tracing::entities::TraceLocation::experiment("1"),
        0,
    );
    for location in [
        format!("{other}/artifacts"),
        format!("{tracking}/artifacts"),
    ] {
        info.tags.insert("mlflow.artifactLocation".into(), location);
        client
            .upload_trace_data(&info, &mlflow_tracing::entities::TraceData::default())
            .await
            .unwrap();
    }
    let other_seen = other_seen.lock().unwrap();
    assert_eq!(other_seen[0].path, "/artifacts/traces.json");
    assert_eq!(
        other_seen[0].header("authorization"),
        None,
        "no token to another host"
    );
    assert_eq!(
        tracking_seen.lock().unwrap()[0].header("authorization"),
        Some("Bearer t0k")
    );
}

#[tokio::test]
async fn a_retried_otlp_request_sends_the_same_bytes_again() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;

    let capture = mlflow_tracing::testing::Capture::new();
    capture.run(|| {
        let root = mlflow_tracing::start_span("root").start();
        let _in = root.enter();
        let child = mlflow_tracing::start_span("child").start();
        child.set_inputs(&"x".repeat(5000));
    });
    let traces = capture.traces();
    let spans = &traces[0].data.spans;
    // The first attempt's body is handed to the connection and not kept: the retry encodes
    // the spans again.
    let (url, seen) = fake_server(vec![answer(503, "busy"), answer(200, "{}")]).await;
    client(&url, 2).log_spans("1", spans).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, seen[1].body);
    for s in seen.iter() {
        let length = s
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.as_str());
        assert_eq!(length, Some(s.body.len().to_string().as_str()));
    }
    let request = ExportTraceServiceRequest::decode(seen[1].body.as_slice()).unwrap();
    let names: Vec<&str> = request.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(
        names.contains(&"root") && names.contains(&"child"),
        "{names:?}"
    );
    assert!(seen[1].body.len() > 5000);
}

#[tokio::test]
async fn an_otlp_request_cut_mid_body_is_sent_whole_again() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    // 2,500 spans of 2 KB: 5 MB, more than the loopback's socket buffers take, so the body is
    // still being fed (a piece a span) when the connection breaks.
    let capture = mlflow_tracing::testing::Capture::new();
    capture.run(|| {
        let root = mlflow_tracing::start_span("root").start();
        let _in = root.enter();
        for _ in 0..2_499 {
            let child = mlflow_tracing::start_span("child").start();
            child.set_inputs(&"x".repeat(2000));
        }
    });
    let traces = capture.traces();
    let spans = &traces[0].data.spans;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        // The first connection: 64 KB of the request, then closed.
        let (mut first, _) = listener.accept().await.unwrap();
        let mut cut = vec![0u8; 64 * 1024];
        first.read_exact(&mut cut).await.unwrap();
        drop(first);
        // The second: the whole request, answered.
        let (mut second, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let (head_end, length) = loop {
            let n = second.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed before the request's head");
            request.extend_from_slice(&chunk[..n]);
            if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&request[..i]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                break (i + 4, length);
            }
        };
        while request.len() < head_end + length {
            let n = second.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed before the request's end");
            request.extend_from_slice(&chunk[..n]);
        }
        second
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            .await
            .unwrap();
        (cut, request.split_off(head_end), length)
    });
    client(&url, 2).log_spans("1", spans).await.unwrap();
    let (cut, body, length) = server.await.unwrap();
    assert_eq!(body.len(), length);
    let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 2_500);
    assert!(length > 5_000_000, "{length}");
    // The cut attempt had sent the same bytes as far as it got.
    let cut_head = cut.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(body.starts_with(&cut[cut_head..]));
}

#[tokio::test]
async fn an_otlp_request_follows_a_redirect_with_its_body() {
    let capture = mlflow_tracing::testing::Capture::new();
    capture.run(|| drop(mlflow_tracing::start_span("root").start()));
    let traces = capture.traces();
    let mut moved = answer(308, "");
    moved.headers.push(("Location", "/moved".into()));
    let (url, seen) = fake_server(vec![moved.clone(), moved, answer(200, "{}")]).await;
    client(&url, 0)
        .log_spans("1", &traces[0].data.spans)
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    // The first body is sent once and not kept, so the redirect is answered by sending it
    // again in a form reqwest can resend, which it does at the new location.
    assert_eq!(paths, ["/v1/traces", "/v1/traces", "/moved"]);
    assert!(!seen[0].body.is_empty());
    assert!(
        seen.iter()
            .all(|s| s.body == seen[0].body && s.method == "POST")
    );
}
