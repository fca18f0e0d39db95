//! Notebook display in a real browser: headless Chromium opens a page holding the SDK's iframe
//! HTML, pointing at a real MLflow server that holds a trace written by the SDK; the server's
//! trace renderer loads in the iframe and shows the trace's spans. Screenshots are kept in
//! `target/test-artifacts/display/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mlflow_tracing::display::{DisplayConfig, TraceRef, iframe_html, mime_bundle};
use mlflow_tracing::export::{Dispatch, SyncDispatch};
use mlflow_tracing::server::{ClientConfig, MlflowExporter, TrackingClient};
use mlflow_tracing::{Tracer, start_span};
use mlflow_tracing_tests::browser::browser;
use mlflow_tracing_tests::server::MlflowServer;
use serde_json::json;

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/display");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn page(name: &str, body: &str) -> String {
    let path = artifacts().join(format!("{name}.html"));
    std::fs::write(
        &path,
        format!("<!doctype html><html><head><meta charset=\"utf-8\"></head><body><h1>notebook cell</h1>{body}</body></html>"),
    )
    .unwrap();
    format!("file://{}", path.display())
}

#[test]
fn the_renderer_iframe_shows_the_sdks_trace_from_a_real_server() {
    let server = MlflowServer::shared().unwrap_or_else(|e| panic!("{e}"));
    let browser = browser().unwrap_or_else(|e| panic!("{e}"));
    let client =
        TrackingClient::new(ClientConfig::new(server.url()).with_retries(2, 0.1, 0.1)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = format!(
        "display-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let experiment = rt.block_on(client.create_experiment(&name)).unwrap();
    // Its own client: connections belong to the runtime that opened them (the dispatch's).
    let exporter_client =
        TrackingClient::new(ClientConfig::new(server.url()).with_retries(2, 0.1, 0.1)).unwrap();
    let dispatch = Arc::new(
        SyncDispatch::new(
            Arc::new(MlflowExporter::new(exporter_client)),
            Duration::from_secs(30),
        )
        .unwrap(),
    );
    let tracer = Tracer::builder()
        .with_environment_metadata(false)
        .with_experiment_id(&experiment)
        .with_dispatch(dispatch.clone())
        .build()
        .unwrap();
    let trace_id = tracer.in_scope(|| {
        let root = start_span("weather_agent")
            .span_type("AGENT")
            .inputs(&json!({"city": "Paris"}))
            .start();
        drop(start_span("lookup_forecast").span_type("TOOL").start());
        drop(start_span("summarize_with_llm").span_type("LLM").start());
        root.set_outputs(&"Sunny, 18 °C");
        let id = root.mlflow_trace_id().unwrap();
        drop(root);
        id
    });
    dispatch.force_flush(Duration::from_secs(30)).unwrap();
    let info = rt.block_on(client.get_trace_info(&trace_id)).unwrap();

    let config = DisplayConfig::for_tracking_uri(server.url());
    let bundle = mime_bundle(&[TraceRef::from(&info)], &config);
    assert_eq!(
        bundle.get("text/plain"),
        Some(format!("Trace(trace_id='{trace_id}')").as_str())
    );
    let html = bundle.get("text/html").unwrap();
    let url = page("renderer", html);
    let seen = browser
        .inspect(
            &url,
            &artifacts().join("renderer.png"),
            true,
            &["weather_agent", "lookup_forecast", "summarize_with_llm"],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let text = seen["text"].as_str().unwrap();
    for span in ["weather_agent", "lookup_forecast", "summarize_with_llm"] {
        assert!(
            text.contains(span),
            "the renderer shows {span}; it shows:\n{text}"
        );
    }
    let src = seen["iframe_src"].as_str().unwrap();
    assert!(src.starts_with(&format!("{}/static-files/lib/notebook-trace-renderer/index.html?trace_id={trace_id}&experiment_id={experiment}&version=", server.url())), "{src}");
    assert!(
        std::fs::metadata(artifacts().join("renderer.png"))
            .unwrap()
            .len()
            > 1000
    );
    dispatch.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn hostile_ids_and_uris_stay_text_in_a_real_browser() {
    let browser = browser().unwrap_or_else(|e| panic!("{e}"));
    let evil = TraceRef {
        trace_id: r#"tr-"><script>document.title='pwned'</script><img src=x onerror="document.title='pwned'">"#.into(),
        experiment_id: Some(r#"1' onload='document.title="pwned""#.into()),
    };
    let config = DisplayConfig::for_tracking_uri(
        r#"http://127.0.0.1:9/"><script>document.title='pwned'</script>"#,
    );
    let html = iframe_html(&[evil], &config).unwrap();
    let url = page("hostile", &html);
    let seen = browser
        .inspect(
            &url,
            &artifacts().join("hostile.png"),
            false,
            &["notebook cell"],
            Some("return [document.title, document.querySelectorAll('script').length, document.querySelectorAll('img').length, document.querySelectorAll('iframe').length]"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // No injected script ran, no element was injected: one iframe, nothing else.
    assert_eq!(seen["js"], json!(["", 0, 0, 1]), "{seen}");
}
