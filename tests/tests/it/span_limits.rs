//! Span limits: MLflow's own attributes are never dropped, user attributes, events and links past
//! their limits are dropped and counted exactly (span API and OpenTelemetry API alike).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

use mlflow_tracing::entities::{Link, SpanEvent, SpanStatusCode};
use mlflow_tracing::testing::Capture;
use mlflow_tracing::tracer::SpanLimits;
use mlflow_tracing::{Span, Trace, entities::keys, start_span};
use opentelemetry::trace::{Span as _, Tracer as _};
use serde_json::json;

fn user_attribute_count(span: &Span) -> usize {
    span.raw_attributes()
        .keys()
        .filter(|k| !k.starts_with("mlflow."))
        .count()
}

fn only_trace(capture: &Capture) -> Trace {
    let traces = capture.traces();
    assert_eq!(traces.len(), 1);
    traces.into_iter().next().unwrap()
}

#[test]
fn outputs_set_after_200_attributes_are_kept_and_the_extra_attributes_counted() {
    let capture = Capture::new();
    capture.run(|| {
        let s = start_span("attrs_then_outputs").span_type("LLM").start();
        s.set_inputs(&json!({"q": 1}));
        for i in 0..200 {
            s.set_attribute(format!("a{i}"), &i);
        }
        s.set_outputs(&"the answer");
    });
    let trace = only_trace(&capture);
    let span = &trace.data.spans[0];
    assert_eq!(span.inputs(), Some(json!({"q": 1})));
    assert_eq!(span.outputs(), Some(json!("the answer")));
    assert_eq!(span.span_type().unwrap().as_str(), "LLM");
    assert!(span.raw_attributes().contains_key(keys::span::REQUEST_ID));
    assert!(span.raw_attributes().contains_key(keys::span::LOG_LEVEL));
    // The first 128 user attributes are kept, the other 72 dropped and counted.
    assert_eq!(user_attribute_count(span), 128);
    assert_eq!(span.attribute("a127"), Some(json!(127)));
    assert_eq!(span.attribute("a128"), None);
    assert_eq!(capture.tracer().stats().attributes_dropped, 72);
    assert_eq!(
        trace.info.response_preview.as_deref(),
        Some("\"the answer\"")
    );
    assert_eq!(
        trace.info.request_preview.as_deref(),
        Some("{\"q\": 1}"),
        "inputs kept"
    );
}

#[test]
fn setting_a_key_again_moves_it_to_the_end_as_in_python_and_costs_nothing() {
    let capture =
        Capture::with(|b| b.with_span_limits(SpanLimits::default().with_max_attributes(2)))
            .unwrap();
    capture.run(|| {
        let s = start_span("again").attribute("first", &0).start();
        for i in 0..1000 {
            s.set_attribute("second", &i);
            s.set_outputs(&i);
        }
        s.set_attribute("first", &"last");
        s.set_attribute("third", &3); // over the limit of 2
    });
    let trace = only_trace(&capture);
    let span = &trace.data.spans[0];
    let user: Vec<&str> = span
        .raw_attributes()
        .keys()
        .filter(|k| !k.starts_with("mlflow."))
        .collect();
    // OpenTelemetry Python's attribute dict (what MLflow uses) moves a key set again to the end.
    assert_eq!(user, ["second", "first"]);
    assert_eq!(span.attribute("first"), Some(json!("last")));
    assert_eq!(span.attribute("second"), Some(json!(999)));
    assert_eq!(span.outputs(), Some(json!(999)));
    assert_eq!(capture.tracer().stats().attributes_dropped, 1);
}

#[test]
fn events_past_the_limit_are_dropped_and_counted_but_exceptions_are_kept() {
    let capture = Capture::with(|b| {
        b.with_span_limits(SpanLimits::default().with_max_events(3).with_max_links(1))
    })
    .unwrap();
    capture.run(|| {
        let s = start_span("events").start();
        for i in 0..10u64 {
            s.add_event(SpanEvent::new(format!("e{i}"), 1_000 + i));
        }
        s.record_exception("ValueError", "boom", "");
        let link = Link {
            trace_id: "tr-0af7651916cd43dd8448eb211c80319c".into(),
            span_id: mlflow_tracing::entities::SpanId::from_int(7),
            attributes: None,
        };
        s.add_link(&link);
        s.add_link(&link);
    });
    let trace = only_trace(&capture);
    let span = &trace.data.spans[0];
    let names: Vec<&str> = span.events().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["e0", "e1", "e2", "exception"]);
    assert_eq!(span.status().code, SpanStatusCode::Error);
    assert_eq!(span.links().len(), 1);
    let stats = capture.tracer().stats();
    assert_eq!((stats.events_dropped, stats.links_dropped), (7, 1));
}

#[test]
fn spans_made_through_opentelemetry_are_limited_the_same_way() {
    let capture =
        Capture::with(|b| b.with_span_limits(SpanLimits::default().with_max_attributes(5)))
            .unwrap();
    let mut span = capture.tracer().otel_tracer().start("foreign");
    for i in 0..20i64 {
        span.set_attribute(opentelemetry::KeyValue::new(format!("k{i}"), i));
    }
    span.set_attribute(opentelemetry::KeyValue::new(
        keys::span::OUTPUTS,
        "\"kept\"",
    ));
    span.end();
    let trace = only_trace(&capture);
    let span = &trace.data.spans[0];
    assert_eq!(user_attribute_count(span), 5);
    assert_eq!(span.outputs(), Some(json!("kept")));
    assert_eq!(capture.tracer().stats().attributes_dropped, 15);
}

#[test]
fn a_span_dropped_without_end_keeps_what_was_set() {
    let capture = Capture::new();
    capture.run(|| {
        let s = start_span("detached").start_detached();
        s.set_outputs(&"out");
        s.set_attribute("k", &1);
        drop(s);
    });
    let trace = only_trace(&capture);
    let span = &trace.data.spans[0];
    assert_eq!(span.outputs(), Some(json!("out")));
    assert_eq!(span.attribute("k"), Some(json!(1)));
}

/// The 200-attribute span of the issue, and 140 events, into the real MLflow server; read back
/// by Python's `mlflow.get_trace`.
#[test]
fn a_span_over_its_limits_reaches_the_real_server_with_its_mlflow_attributes() {
    use mlflow_tracing::server::{ClientConfig, MlflowExporter, TrackingClient};
    use mlflow_tracing_tests::server::MlflowServer;
    use std::sync::Arc;

    let server =
        MlflowServer::shared().unwrap_or_else(|e| panic!("the MLflow server must run: {e}"));
    let client =
        TrackingClient::new(ClientConfig::new(server.url()).with_retries(2, 0.1, 0.1)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let experiment = runtime
        .block_on(client.create_experiment(&format!("limits-{}", std::process::id())))
        .unwrap();
    let exporter = Arc::new(MlflowExporter::new(client));
    let tracer = crate::live::sync_tracer_with(exporter.clone(), &experiment);
    tracer.in_scope(|| {
        let s = start_span("attrs_then_outputs").span_type("LLM").start();
        s.set_inputs(&json!({"q": 1}));
        for i in 0..200 {
            s.set_attribute(format!("a{i}"), &i);
        }
        for i in 0..140u64 {
            s.add_event(SpanEvent::new(
                format!("e{i}"),
                1_700_000_000_000_000_000 + i,
            ));
        }
        s.set_outputs(&"the answer");
    });
    let trace_id = tracer.last_active_trace_id().unwrap();
    let stats = tracer.stats();
    assert_eq!((stats.attributes_dropped, stats.events_dropped), (72, 12));
    assert_eq!(exporter.stats().traces_failed, 0);

    let out = server
        .run_python(
            r#"
import json, sys, mlflow
t = mlflow.get_trace(sys.argv[1])
s = t.data.spans[0]
print(json.dumps({
    "inputs": s.inputs, "outputs": s.outputs, "type": s.span_type,
    "user_attributes": sorted(k for k in s.attributes if not k.startswith("mlflow.")),
    "events": len(s.events),
    "request_preview": t.info.request_preview, "response_preview": t.info.response_preview,
    "trace_outputs": t.info.trace_metadata.get("mlflow.traceOutputs"),
}))
"#,
            &[&trace_id],
        )
        .unwrap();
    let back: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(back["inputs"], json!({"q": 1}));
    assert_eq!(back["outputs"], "the answer");
    assert_eq!(back["type"], "LLM");
    assert_eq!(back["request_preview"], "{\"q\": 1}");
    assert_eq!(back["response_preview"], "\"the answer\"");
    assert_eq!(back["trace_outputs"], "\"the answer\"");
    let mut expected: Vec<String> = (0..128).map(|i| format!("a{i}")).collect();
    expected.sort();
    assert_eq!(back["user_attributes"], json!(expected));
    assert_eq!(back["events"], 128);
}
