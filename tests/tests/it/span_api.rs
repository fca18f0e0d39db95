//! The span API through the public facade, with the in-memory exporter: trees, MLflow's JSON
//! forms, errors and panics, async context, sampling, redaction, traceparent, eviction, timeout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

use std::collections::HashMap;
use std::time::Duration;

use mlflow_tracing::context::current_span;
use mlflow_tracing::entities::{SpanEvent, SpanStatus, SpanStatusCode, TraceState};
use mlflow_tracing::export::ExportItem;
use mlflow_tracing::testing::{Capture, InMemoryExporter};
use mlflow_tracing::{
    FutureExt as _, LiveSpan, Span, SpanApiError, SpanType, Trace, TraceUpdate, start_span,
    update_current_trace,
};
use serde_json::{Value, json};

fn raw(span: &Span, key: &str) -> Option<String> {
    span.raw_attributes()
        .get(key)
        .map(|v| v.as_str().unwrap().to_owned())
}

fn by_name<'a>(trace: &'a Trace, name: &str) -> &'a Span {
    trace
        .data
        .spans
        .iter()
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

#[derive(Debug)]
struct WeatherError(String);

impl std::fmt::Display for WeatherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "weather service unavailable for {}", self.0)
    }
}

impl std::error::Error for WeatherError {}

#[mlflow_tracing::trace(span_type = "TOOL")]
fn get_weather(city: &str) -> Result<String, WeatherError> {
    if city == "Atlantis" {
        return Err(WeatherError(city.to_owned()));
    }
    Ok(format!("sunny in {city}"))
}

#[mlflow_tracing::trace(name = "weather_agent", span_type = SpanType::Agent, attributes(model = "gpt-x", "custom.tries" = 1 + 1))]
fn agent(city: &str, verbose: bool) -> String {
    let _ = verbose;
    match get_weather(city) {
        Ok(w) => w,
        Err(e) => format!("Sorry, I could not get the weather: {e}"),
    }
}

#[test]
fn traced_functions_build_a_tree_in_mlflow_form() {
    let capture = Capture::new();
    let answer = capture.run(|| agent("Atlantis", false));
    assert!(answer.starts_with("Sorry"));

    let traces = capture.traces();
    assert_eq!(traces.len(), 1);
    let trace = &traces[0];
    let [root, tool] = &trace.data.spans[..] else {
        panic!("two spans expected: {:?}", trace.data.spans)
    };
    assert_eq!(root.name(), "weather_agent");
    assert_eq!(root.parent_id(), None);
    assert_eq!(tool.parent_id(), Some(root.span_id()));
    assert_eq!(tool.trace_id(), root.trace_id());

    // Attributes in MLflow's stored form and order (Python's `@mlflow.trace(attributes=..)`
    // sets them right after the type, before the function name and inputs).
    let keys: Vec<&str> = root.raw_attributes().keys().collect();
    assert_eq!(
        keys,
        [
            "mlflow.traceRequestId",
            "mlflow.spanType",
            "model",
            "custom.tries",
            "mlflow.spanFunctionName",
            "mlflow.spanInputs",
            "mlflow.spanOutputs",
            "mlflow.spanLogLevel"
        ]
    );
    let trace_id = format!("tr-{}", root.trace_id().to_hex());
    assert_eq!(
        raw(root, "mlflow.traceRequestId").unwrap(),
        format!("\"{trace_id}\"")
    );
    assert_eq!(raw(root, "mlflow.spanType").unwrap(), "\"AGENT\"");
    assert_eq!(raw(root, "mlflow.spanFunctionName").unwrap(), "\"agent\"");
    assert_eq!(
        raw(root, "mlflow.spanInputs").unwrap(),
        r#"{"city": "Atlantis", "verbose": false}"#
    );
    assert_eq!(raw(root, "model").unwrap(), "\"gpt-x\"");
    assert_eq!(raw(root, "custom.tries").unwrap(), "2");
    assert_eq!(raw(root, "mlflow.spanLogLevel").unwrap(), "20");
    assert_eq!(root.status(), &SpanStatus::ok());

    // The error of the tool: exception event, ERROR status, no outputs.
    assert_eq!(raw(tool, "mlflow.spanType").unwrap(), "\"TOOL\"");
    assert_eq!(
        raw(tool, "mlflow.spanLogLevel").unwrap(),
        "40",
        "an exception raises the level"
    );
    assert_eq!(raw(tool, "mlflow.spanOutputs"), None);
    assert_eq!(
        tool.status(),
        &SpanStatus::error("WeatherError: weather service unavailable for Atlantis")
    );
    let [event] = tool.events() else {
        panic!("one event")
    };
    assert_eq!(event.name, "exception");
    assert_eq!(
        Value::Object(event.attributes.clone()),
        json!({
            "exception.message": "weather service unavailable for Atlantis",
            "exception.type": "WeatherError",
            "exception.stacktrace": "WeatherError(\"Atlantis\")",
        })
    );

    // Trace info as MLflow finalizes it.
    let info = &trace.info;
    assert_eq!(info.trace_id, trace_id);
    assert_eq!(info.state, TraceState::Ok);
    assert_eq!(info.experiment_id(), Some("0"));
    assert_eq!(info.tags["mlflow.traceName"], "weather_agent");
    assert_eq!(info.trace_metadata["mlflow.trace_schema.version"], "3");
    assert_eq!(
        info.trace_metadata["mlflow.traceInputs"],
        r#"{"city": "Atlantis", "verbose": false}"#
    );
    assert_eq!(
        info.request_preview.as_deref(),
        Some(r#"{"city": "Atlantis", "verbose": false}"#)
    );
    assert!(
        info.response_preview
            .as_deref()
            .unwrap()
            .starts_with("\"Sorry")
    );
    assert_eq!(info.request_time, (root.start_time_ns() / 1_000_000) as i64);
    assert!(info.execution_duration.is_some());
    // The JSON a Python client reads.
    let parsed = Trace::from_json(&trace.to_json().unwrap()).unwrap();
    assert_eq!(&parsed, trace);
    assert_eq!(
        capture.tracer().last_active_trace_id().as_deref(),
        Some(trace_id.as_str())
    );
}

#[test]
fn the_request_time_is_the_roots_start_as_in_mlflow() {
    let capture = Capture::new();
    capture.run(|| {
        let root = start_span("backfilled")
            .start_time_ns(1_700_000_000_123_456_789)
            .start_detached();
        root.end_at(1_700_000_001_000_000_000);
    });
    let trace = &capture.traces()[0];
    // MLflow: `request_time=root_span.start_time // 1_000_000`.
    assert_eq!(trace.info.request_time, 1_700_000_000_123);
    assert_eq!(trace.info.tags["mlflow.traceName"], "backfilled");
}

#[test]
fn err_of_the_root_makes_the_trace_error_and_is_returned_unchanged() {
    let capture = Capture::new();
    let result = capture.run(|| get_weather("Atlantis"));
    assert_eq!(result.unwrap_err().0, "Atlantis");
    let trace = &capture.traces()[0];
    assert_eq!(trace.info.state, TraceState::Error);
    assert_eq!(trace.data.spans[0].status().code, SpanStatusCode::Error);
    assert_eq!(trace.info.trace_metadata["mlflow.traceOutputs"], "");
}

#[mlflow_tracing::trace]
fn explode(n: u32) -> u32 {
    if n > 0 {
        panic!("boom {n}");
    }
    n
}

#[test]
fn a_panic_ends_the_span_with_error_and_keeps_unwinding() {
    let capture = Capture::new();
    let caught =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| capture.run(|| explode(7))));
    assert!(caught.is_err(), "the panic must propagate");
    let trace = &capture.traces()[0];
    let span = &trace.data.spans[0];
    assert_eq!(span.status(), &SpanStatus::error("panic: boom 7"));
    assert_eq!(span.events()[0].name, "exception");
    assert_eq!(span.events()[0].attributes["exception.message"], "boom 7");
    assert_eq!(trace.info.state, TraceState::Error);
    // Nothing is left current on this thread.
    assert!(current_span().is_none());
}

#[derive(serde::Serialize)]
struct Retriever {
    top_k: usize,
}

impl Retriever {
    #[mlflow_tracing::trace(span_type = "RETRIEVER", skip(query_vector))]
    fn search(&self, query: &str, query_vector: Vec<f32>) -> Vec<String> {
        let _ = query_vector;
        (0..self.top_k).map(|i| format!("{query}-{i}")).collect()
    }

    #[mlflow_tracing::trace]
    async fn search_async(&self, query: String) -> Vec<String> {
        tokio::task::yield_now().await;
        let inner = self.search(&query, vec![0.5]);
        tokio::task::yield_now().await;
        inner
    }
}

#[test]
fn methods_skip_self_and_skipped_arguments() {
    let capture = Capture::new();
    let docs = capture.run(|| Retriever { top_k: 2 }.search("q", vec![1.0]));
    assert_eq!(docs, ["q-0", "q-1"]);
    let span = &capture.traces()[0].data.spans[0];
    assert_eq!(span.inputs(), Some(json!({"query": "q"})));
    assert_eq!(span.outputs(), Some(json!(["q-0", "q-1"])));
    assert_eq!(raw(span, "mlflow.spanLogLevel").unwrap(), "20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_fn_keeps_its_children_across_await() {
    let capture = Capture::new();
    let retriever = Retriever { top_k: 1 };
    let docs = capture.scope(retriever.search_async("hello".into())).await;
    assert_eq!(docs, ["hello-0"]);
    let trace = &capture.traces()[0];
    let root = by_name(trace, "search_async");
    let child = by_name(trace, "search");
    assert_eq!(child.parent_id(), Some(root.span_id()));
    assert_eq!(root.outputs(), Some(json!(["hello-0"])));
}

#[mlflow_tracing::trace(span_type = "CHAIN")]
async fn handle(request: u32) -> u32 {
    let a = step(request, 1).await;
    tokio::time::sleep(Duration::from_millis(u64::from(request % 3))).await;
    let b = step(request, 2).await;
    a + b
}

#[mlflow_tracing::trace]
async fn step(request: u32, n: u32) -> u32 {
    tokio::task::yield_now().await;
    request * 10 + n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_tasks_give_a_thousand_correct_trees() {
    let capture = Capture::new();
    let mut tasks = Vec::new();
    for request in 0..1000u32 {
        tasks.push(tokio::spawn(capture.scope(handle(request))));
    }
    for (request, task) in tasks.into_iter().enumerate() {
        let r = request as u32;
        assert_eq!(task.await.unwrap(), 2 * (r * 10) + 3);
    }
    let traces = capture.traces();
    assert_eq!(traces.len(), 1000);
    let mut seen = std::collections::BTreeSet::new();
    for trace in &traces {
        let root = by_name(trace, "handle");
        let request = root.inputs().unwrap()["request"].as_u64().unwrap();
        assert!(seen.insert(request), "request {request} traced twice");
        assert_eq!(trace.data.spans.len(), 3, "trace of request {request}");
        for child in trace.data.spans.iter().filter(|s| s.name() == "step") {
            assert_eq!(child.parent_id(), Some(root.span_id()));
            assert_eq!(child.trace_id(), root.trace_id());
            assert_eq!(child.inputs().unwrap()["request"], request);
        }
        assert_eq!(root.outputs(), Some(json!(2 * request * 10 + 3)));
    }
    assert_eq!(seen.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_keep_the_parent_with_in_current_span() {
    let capture = Capture::new();
    capture
        .scope(async {
            let root = start_span("root").start_detached();
            let kept = root
                .instrument(async {
                    tokio::spawn(step(1, 1).in_current_span()).await.unwrap();
                    // Without the extension the task has no MLflow context at all.
                    tokio::spawn(step(2, 2)).await.unwrap();
                })
                .await;
            root.end();
            kept
        })
        .await;
    let traces = capture.traces();
    assert_eq!(traces.len(), 1);
    let trace = &traces[0];
    assert_eq!(trace.data.spans.len(), 2);
    assert_eq!(
        by_name(trace, "step").parent_id(),
        Some(by_name(trace, "root").span_id())
    );
}

#[test]
fn start_span_guard_and_live_span_setters() {
    let capture = Capture::new();
    capture.run(|| {
        let root = start_span("root")
            .span_type("CHAIN")
            .inputs(&json!({"question": "2+2?"}))
            .attribute("k", &[1, 2])
            .start();
        assert_eq!(current_span().unwrap().span_id(), root.span_id());
        {
            let llm = start_span("llm").span_type(SpanType::ChatModel).start();
            llm.set_inputs(&json!({"messages": [{"role": "user", "content": "2+2?"}]}));
            llm.set_outputs(
                &json!({"choices": [{"message": {"role": "assistant", "content": "4"}}]}),
            );
            llm.set_attribute(
                "mlflow.chat.tokenUsage",
                &json!({"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}),
            );
            llm.set_description("the model");
            llm.add_event(SpanEvent::new("first_token", 1_700_000_000_000_000_000));
        }
        // A detached span with an explicit parent and times.
        let detached = start_span("late")
            .parent(root.span())
            .start_time_ns(1_700_000_000_000_000_000)
            .start_detached();
        assert_eq!(current_span().unwrap().span_id(), root.span_id());
        detached.record_error(&std::io::Error::other("disk full"));
        detached.end_at(1_700_000_000_500_000_000);
        root.set_outputs(&"4");
    });
    let trace = &capture.traces()[0];
    let root = by_name(trace, "root");
    let llm = by_name(trace, "llm");
    let late = by_name(trace, "late");
    assert_eq!(llm.parent_id(), Some(root.span_id()));
    assert_eq!(late.parent_id(), Some(root.span_id()));
    assert_eq!(raw(root, "k").unwrap(), "[1, 2]");
    assert_eq!(raw(llm, "mlflow.spanType").unwrap(), "\"CHAT_MODEL\"");
    assert_eq!(llm.description().as_deref(), Some("the model"));
    assert_eq!(llm.events()[0].name, "first_token");
    assert_eq!(late.start_time_ns(), 1_700_000_000_000_000_000);
    assert_eq!(late.end_time_ns(), Some(1_700_000_000_500_000_000));
    assert_eq!(
        raw(late, "mlflow.spanStartTimeNs").unwrap(),
        "1700000000000000000"
    );
    assert_eq!(late.status(), &SpanStatus::error("Error: disk full"));
    assert_eq!(late.events()[0].attributes["exception.type"], "Error");
    // Token usage aggregated into the trace, chat-aware response preview.
    assert_eq!(trace.info.token_usage().unwrap().total_tokens, 6);
    assert_eq!(trace.info.response_preview.as_deref(), Some("\"4\""));
    assert_eq!(
        trace.info.request_preview.as_deref(),
        Some(r#"{"question": "2+2?"}"#)
    );
}

#[test]
fn update_current_trace_edits_the_trace_in_memory() {
    let capture = Capture::new();
    assert_eq!(
        update_current_trace(TraceUpdate::new().tag("a", "b")),
        Err(SpanApiError::NoActiveSpan)
    );
    capture.run(|| {
        let _root = start_span("root").inputs(&"hi").start();
        update_current_trace(
            TraceUpdate::new()
                .tag("team", "search")
                .metadata("version", "7")
                .client_request_id("req-1")
                .user("alice")
                .session("s-9")
                .request_preview("custom request")
                .response_preview("")
                .state(TraceState::Error),
        )
        .unwrap();
        assert_eq!(
            update_current_trace(TraceUpdate::new().state(TraceState::InProgress)),
            Err(SpanApiError::InvalidState("IN_PROGRESS".into()))
        );
        assert!(
            mlflow_tracing::context::active_trace_id()
                .unwrap()
                .starts_with("tr-")
        );
    });
    let info = &capture.traces()[0].info;
    assert_eq!(info.tags["team"], "search");
    assert_eq!(info.trace_metadata["version"], "7");
    assert_eq!(info.trace_metadata["mlflow.trace.user"], "alice");
    assert_eq!(info.trace_metadata["mlflow.trace.session"], "s-9");
    assert_eq!(info.client_request_id.as_deref(), Some("req-1"));
    assert_eq!(info.request_preview.as_deref(), Some("custom request"));
    // An empty preview is ignored; the root had no outputs, so there is no response preview.
    assert_eq!(info.response_preview, None);
    assert_eq!(info.state, TraceState::Error, "a user-set state wins");
}

#[test]
fn sampling_follows_the_parent_and_mlflows_rule() {
    let capture = Capture::with(|b| b.with_sampling_ratio(0.5)).unwrap();
    capture.run(|| {
        for i in 0..400 {
            let root = start_span("root").start();
            let child = start_span("child").start();
            let grandchild = start_span("grandchild").start_detached();
            assert_eq!(root.is_recording(), child.is_recording());
            assert_eq!(root.is_recording(), grandchild.is_recording());
            if !root.is_recording() {
                // Setters on sampled-out spans do nothing and never fail.
                child.set_inputs(&i);
                assert_eq!(root.mlflow_trace_id(), None);
            }
            grandchild.end();
        }
    });
    let traces = capture.traces();
    assert!(
        (140..=260).contains(&traces.len()),
        "{} of 400 sampled",
        traces.len()
    );
    for trace in &traces {
        assert_eq!(trace.data.spans.len(), 3);
        let low = trace.data.spans[0].trace_id().to_int() as u64;
        assert!(
            low < 1 << 63,
            "MLflow samples iff the low 64 bits < ratio * 2^64"
        );
    }
    let none = Capture::with(|b| b.with_sampling_ratio(0.0)).unwrap();
    none.run(|| drop(start_span("x").start()));
    assert!(none.traces().is_empty());
    assert_eq!(none.tracer().stats().traces_started, 0);
}

#[test]
fn disabled_tracing_records_nothing() {
    let capture = Capture::new();
    capture.tracer().disable();
    capture.run(|| {
        assert_eq!(agent("Paris", true), "sunny in Paris");
        let span = start_span("x").start();
        assert!(!span.is_recording());
    });
    capture.tracer().enable();
    capture.run(|| drop(start_span("y").start()));
    let traces = capture.traces();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0].data.spans[0].name(), "y");
}

#[test]
fn no_tracer_means_no_op_spans() {
    // This test binary never calls `init`.
    let span = start_span("orphan").start();
    assert!(!span.is_recording());
    assert_eq!(get_weather("Paris").unwrap(), "sunny in Paris");
}

#[test]
fn span_processors_redact_before_export() {
    let capture = Capture::with(|b| {
        b.with_span_processor(|span: &mut Span| {
            if let Some(Value::Object(mut inputs)) = span.inputs()
                && inputs.contains_key("password")
            {
                inputs.insert("password".into(), json!("[REDACTED]"));
                span.set_inputs(&inputs).unwrap();
            }
        })
        .with_span_processor(|span: &mut Span| {
            if span.name() == "explodes" {
                panic!("processor bug");
            }
        })
    })
    .unwrap();
    capture.run(|| {
        let _root = start_span("login")
            .inputs(&json!({"user": "bob", "password": "hunter2"}))
            .start();
        drop(start_span("explodes").start());
    });
    let trace = &capture.traces()[0];
    assert_eq!(
        by_name(trace, "login").inputs(),
        Some(json!({"user": "bob", "password": "[REDACTED]"}))
    );
    assert!(!trace.to_json().unwrap().contains("hunter2"));
    assert_eq!(by_name(trace, "explodes").status().code, SpanStatusCode::Ok);
    assert_eq!(capture.tracer().stats().span_processor_errors, 1);
}

#[test]
fn finish_hooks_run_when_the_trace_is_finalized_and_a_panicking_one_is_counted() {
    fn mark(span: &mut Span) {
        span.set_raw_attribute("hooked", json!("yes"));
    }
    fn explode(_: &mut Span) {
        panic!("hook bug");
    }
    let capture = Capture::new();
    capture.run(|| {
        let root = start_span("root").start();
        root.finish_with(mark);
        let child = start_span("child").inputs(&"kept").start_detached();
        child.finish_with(explode);
        child.end();
    });
    let trace = &capture.traces()[0];
    assert_eq!(
        by_name(trace, "root").raw_attributes().get("hooked"),
        Some(&json!("yes"))
    );
    let child = by_name(trace, "child");
    assert_eq!(child.inputs(), Some(json!("kept")), "the span as it was");
    assert_eq!(child.status().code, SpanStatusCode::Ok);
    assert_eq!(capture.tracer().stats().span_processor_errors, 1);
}

#[test]
fn traceparent_round_trip_between_two_services() {
    let client = Capture::new();
    let server = Capture::with_exporter(InMemoryExporter::with_spans(), |b| b).unwrap();

    let (headers, client_trace_id, client_span_id) = client.run(|| {
        let call = start_span("call_server").start();
        let headers = mlflow_tracing::distributed::tracing_context_headers();
        (headers, call.trace_id().unwrap(), call.span_id().unwrap())
    });
    let traceparent = &headers["traceparent"];
    assert_eq!(
        traceparent,
        &format!(
            "00-{}-{}-01",
            client_trace_id.to_hex(),
            client_span_id.to_hex()
        )
    );

    // The server sees the header in another letter case.
    let incoming = [("Traceparent".to_owned(), traceparent.clone())];
    server.run(|| {
        let remote = mlflow_tracing::distributed::continue_trace(incoming.clone()).unwrap();
        assert_eq!(
            remote.mlflow_trace_id(),
            format!("tr-{}", client_trace_id.to_hex())
        );
        let _attached = remote.attach();
        let handler = start_span("handle_request").start();
        assert_eq!(handler.trace_id(), Some(client_trace_id));
        drop(start_span("db").start());
    });
    let spans = server.exporter().spans();
    assert_eq!(spans.len(), 2);
    let handler = spans
        .iter()
        .find(|s| s.span.name() == "handle_request")
        .unwrap();
    assert_eq!(handler.span.trace_id(), client_trace_id);
    assert_eq!(handler.span.parent_id(), Some(client_span_id));
    assert_eq!(handler.trace_id, format!("tr-{}", client_trace_id.to_hex()));
    let items = server.exporter().trace_items();
    assert_eq!(items.len(), 1);
    assert!(items[0].remote);
    assert_eq!(items[0].trace.data.spans.len(), 2);

    assert_eq!(
        server
            .run(|| mlflow_tracing::distributed::continue_trace(HashMap::<String, String>::new()))
            .unwrap_err(),
        SpanApiError::MissingTraceparent
    );
    assert!(matches!(
        server.run(|| mlflow_tracing::distributed::continue_trace([("traceparent", "00-zz-01")])),
        Err(SpanApiError::InvalidTraceparent(_))
    ));
}

#[test]
fn abandoned_traces_are_evicted_counted_and_never_exported() {
    let capture = Capture::with(|b| {
        b.with_buffer_ttl(Duration::from_millis(50))
            .with_buffer_max_size(2)
    })
    .unwrap();
    let spans: Vec<LiveSpan> = capture.run(|| {
        (0..3)
            .map(|i| start_span(format!("abandoned-{i}")).start_detached())
            .collect()
    });
    capture.tracer().run_maintenance();
    assert!(capture.tracer().in_progress_traces() <= 2);
    std::thread::sleep(Duration::from_millis(120));
    capture.tracer().run_maintenance();
    assert_eq!(capture.tracer().in_progress_traces(), 0);
    let stats = capture.tracer().stats();
    assert_eq!(stats.traces_evicted, 3);
    for span in &spans {
        span.end();
    }
    assert_eq!(capture.tracer().stats().spans_dropped, 3);
    assert!(capture.traces().is_empty());
}

#[test]
fn a_leaked_guard_is_halted_by_the_timeout_and_exported_as_error() {
    let capture = Capture::with(|b| b.with_trace_timeout(Some(Duration::from_millis(50)))).unwrap();
    capture.run(|| {
        let root = start_span("stuck").inputs(&"q").start();
        drop(start_span("done_child").start());
        std::mem::forget(root);
    });
    std::thread::sleep(Duration::from_millis(100));
    capture.tracer().run_maintenance();
    let traces = capture.traces();
    assert_eq!(traces.len(), 1);
    let trace = &traces[0];
    assert_eq!(trace.info.state, TraceState::Error);
    assert_eq!(trace.data.spans.len(), 2);
    let root = by_name(trace, "stuck");
    assert_eq!(root.status().code, SpanStatusCode::Error);
    let event = &root.events()[0];
    assert_eq!(event.attributes["exception.type"], "MlflowTracingException");
    assert!(
        event.attributes["exception.message"]
            .as_str()
            .unwrap()
            .contains("is timed out after 0 seconds")
    );
    assert_eq!(capture.tracer().stats().traces_timed_out, 1);
    // The leaked guard is still attached to this thread, but it is no parent any more.
    capture.run(|| drop(start_span("next").start()));
    let traces = capture.traces();
    assert_eq!(traces.len(), 2);
    assert_eq!(traces[1].data.spans[0].parent_id(), None);
}

#[test]
fn a_root_ending_before_a_background_span_waits_for_it() {
    let capture = Capture::new();
    let background = capture.run(|| {
        let _root = start_span("root").start();
        start_span("background").start_detached()
    });
    assert!(
        capture.traces().is_empty(),
        "exported only once every span ended"
    );
    background.end();
    let trace = &capture.traces()[0];
    assert_eq!(trace.data.spans.len(), 2);
    assert_eq!(trace.data.spans[0].name(), "root", "spans keep start order");

    // force_flush does not cut such a trace short; shutdown exports it as it is, and counts
    // a trace still in progress.
    let still_open = capture.run(|| {
        let _root = start_span("root2").start();
        start_span("never_ends").start_detached()
    });
    let unfinished_root = capture.run(|| start_span("unfinished").start_detached());
    capture
        .tracer()
        .force_flush(Duration::from_secs(1))
        .unwrap();
    assert_eq!(capture.traces().len(), 1);
    capture.tracer().shutdown(Duration::from_secs(1)).unwrap();
    let traces = capture.traces();
    assert_eq!(traces.len(), 2);
    assert_eq!(traces[1].data.spans.len(), 1);
    assert_eq!(capture.tracer().stats().traces_evicted, 1);
    drop(still_open);
    drop(unfinished_root);
    assert_eq!(
        capture.tracer().shutdown(Duration::from_secs(1)),
        Err(mlflow_tracing::export::LifecycleError::AlreadyShutdown)
    );
}

#[test]
fn unserializable_values_are_replaced_counted_and_never_panic() {
    let capture = Capture::new();
    capture.run(|| {
        let span = start_span("bad").start();
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], "non-string key");
        span.set_outputs(&map);
        span.set_attribute("nan", &f64::NAN);
    });
    let span = &capture.traces()[0].data.spans[0];
    assert!(
        span.outputs()
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("<unserializable outputs:")
    );
    assert_eq!(raw(span, "nan").unwrap(), "null");
    assert_eq!(capture.tracer().stats().serialization_errors, 1);
}

#[mlflow_tracing::trace]
fn no_arguments() -> u32 {
    1
}

#[mlflow_tracing::trace]
fn three_arguments(a: u32, bad: &std::collections::BTreeMap<Vec<u8>, u32>, c: &str) -> u32 {
    a + bad.len() as u32 + c.len() as u32
}

#[test]
fn trace_inputs_are_written_as_python_writes_them_with_bad_arguments_replaced() {
    let capture = Capture::new();
    let bad = std::collections::BTreeMap::from([(vec![1u8], 2u32)]);
    capture.run(|| {
        no_arguments();
        three_arguments(7, &bad, "x\"y");
    });
    let traces = capture.traces();
    assert_eq!(
        raw(&traces[0].data.spans[0], "mlflow.spanInputs").unwrap(),
        "{}"
    );
    let inputs = raw(&traces[1].data.spans[0], "mlflow.spanInputs").unwrap();
    assert!(
        inputs.starts_with(r#"{"a": 7, "bad": "<unserializable argument: "#),
        "{inputs}"
    );
    assert!(inputs.ends_with(r#"", "c": "x\"y"}"#), "{inputs}");
    assert_eq!(capture.tracer().stats().serialization_errors, 1);
}

#[test]
fn exporter_receives_spans_before_their_trace() {
    let capture = Capture::with_exporter(InMemoryExporter::with_spans(), |b| b).unwrap();
    capture.run(|| {
        let _root = start_span("root").start();
        drop(start_span("child").start());
    });
    let kinds: Vec<&str> = capture
        .exporter()
        .items()
        .iter()
        .map(|i| match i {
            ExportItem::Span(s) => {
                if s.span.name() == "root" {
                    "span:root"
                } else {
                    "span:child"
                }
            }
            ExportItem::Trace(_) => "trace",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["span:child", "span:root", "trace"]);
}

#[test]
fn root_start_sets_experiment_schema_and_environment_metadata() {
    let capture =
        Capture::with(|b| b.with_environment_metadata(true).with_experiment_id("7")).unwrap();
    capture.run(|| {
        drop(start_span("default_experiment").start());
        drop(start_span("explicit").experiment_id("42").start());
    });
    let traces = capture.traces();
    let info = &traces[0].info;
    assert_eq!(info.experiment_id(), Some("7"));
    assert_eq!(info.state, TraceState::Ok);
    let git_head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    assert_eq!(info.trace_metadata["mlflow.source.git.commit"], git_head);
    assert_eq!(info.trace_metadata["mlflow.source.type"], "LOCAL");
    assert!(!info.trace_metadata["mlflow.user"].is_empty());
    assert!(info.trace_metadata.contains_key("mlflow.source.name"));
    assert!(info.trace_metadata.contains_key("mlflow.source.git.branch"));
    assert!(
        info.trace_metadata
            .contains_key("mlflow.source.git.repoURL")
    );

    let explicit = &traces[1];
    assert_eq!(explicit.info.experiment_id(), Some("42"));
    assert_eq!(
        raw(&explicit.data.spans[0], "mlflow.experimentId").unwrap(),
        "\"42\""
    );
    // Without environment metadata (the Capture default) only MLflow's own keys are there.
    let plain = Capture::new();
    plain.run(|| drop(start_span("x").start()));
    let keys: Vec<String> = plain.traces()[0]
        .info
        .trace_metadata
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys,
        [
            "mlflow.trace_schema.version",
            "mlflow.traceInputs",
            "mlflow.traceOutputs"
        ]
    );
}

#[test]
fn the_last_status_wins_and_ok_is_final() {
    let capture = Capture::new();
    capture.run(|| {
        let _root = start_span("root").start();
        let a = start_span("a").start();
        a.record_exception("ValueError", "first", "");
        a.record_exception("IOError", "second", "");
        drop(a);
        let b = start_span("b").start();
        b.set_status(SpanStatus::ok());
        b.set_status(SpanStatus::error("too late"));
    });
    let trace = &capture.traces()[0];
    assert_eq!(
        by_name(trace, "a").status(),
        &SpanStatus::error("IOError: second")
    );
    assert_eq!(by_name(trace, "a").events().len(), 2);
    assert_eq!(by_name(trace, "b").status(), &SpanStatus::ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_outliving_its_parent_span_stays_in_the_trace() {
    let capture = Capture::new();
    capture
        .scope(async {
            let root = start_span("root").start_detached();
            let background = root
                .instrument(async {
                    let parent = start_span("parent").start_detached();
                    let task = {
                        let _entered = parent.enter();
                        step(5, 1).in_current_span()
                    };
                    parent.end();
                    tokio::spawn(task).await.unwrap()
                })
                .await;
            root.end();
            background
        })
        .await;
    let traces = capture.traces();
    assert_eq!(traces.len(), 1);
    let trace = &traces[0];
    assert_eq!(trace.data.spans.len(), 3);
    assert_eq!(
        by_name(trace, "step").parent_id(),
        Some(by_name(trace, "parent").span_id())
    );
}

#[derive(Debug)]
struct PanickingExporter;

#[mlflow_tracing::export::async_trait]
impl mlflow_tracing::export::TraceExporter for PanickingExporter {
    async fn export(
        &self,
        _batch: Vec<ExportItem>,
    ) -> Result<(), mlflow_tracing::export::ExportError> {
        panic!("exporter bug")
    }
}

#[test]
fn a_panicking_exporter_is_counted_not_propagated() {
    let tracer = mlflow_tracing::Tracer::builder()
        .with_environment_metadata(false)
        .with_exporter(PanickingExporter)
        .build()
        .unwrap();
    tracer.in_scope(|| drop(start_span("x").start()));
    let stats = tracer.stats();
    assert_eq!(stats.traces_finished, 1);
    assert_eq!(stats.items_failed, 1);
    // The thread is still usable.
    tracer.in_scope(|| drop(start_span("y").start()));
    assert_eq!(tracer.stats().items_failed, 2);
}

#[test]
fn continuations_of_one_remote_trace_share_a_placeholder_until_the_last_ends() {
    let client = Capture::new();
    let headers = client.run(|| {
        let _call = start_span("fan_out").start();
        mlflow_tracing::distributed::tracing_context_headers()
    });
    let server = Capture::with_exporter(InMemoryExporter::with_spans(), |b| b).unwrap();
    server.run(|| {
        let first = mlflow_tracing::distributed::continue_trace(&headers).unwrap();
        let second = mlflow_tracing::distributed::continue_trace(&headers).unwrap();
        {
            let _a = first.attach();
            drop(start_span("request_1").start());
        }
        drop(first);
        assert!(
            server.exporter().trace_items().is_empty(),
            "request 2 is still running"
        );
        {
            let _b = second.attach();
            drop(start_span("request_2").start());
        }
        drop(second);
        {
            // A local trace is current; continuing a remote trace inside it re-parents.
            let local = start_span("local").start();
            let third = mlflow_tracing::distributed::continue_trace(&headers).unwrap();
            let _c = third.attach();
            let nested = start_span("request_3").start();
            assert_ne!(nested.trace_id(), local.trace_id());
        }
    });
    let items = server.exporter().trace_items();
    // One placeholder for requests 1 and 2, a new one for request 3, and the local trace.
    assert_eq!(items.len(), 3);
    let names = |i: usize| -> Vec<&str> {
        let mut n: Vec<&str> = items[i].trace.data.spans.iter().map(Span::name).collect();
        n.sort_unstable();
        n
    };
    assert!(items[0].remote && items[1].remote && !items[2].remote);
    assert_eq!(names(0), ["request_1", "request_2"]);
    assert_eq!(names(1), ["request_3"]);
    assert_eq!(names(2), ["local"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_future_keeps_the_remote_placeholder_open() {
    let headers: HashMap<String, String> = Capture::new().run(|| {
        let _call = start_span("call").start();
        mlflow_tracing::distributed::tracing_context_headers()
    });
    let server = Capture::new();
    let task = server.run(|| {
        let remote = mlflow_tracing::distributed::continue_trace(&headers).unwrap();
        let task = tokio::spawn(remote.scope(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            step(3, 1).await
        }));
        drop(remote); // the handler returned; the task still runs
        task
    });
    assert_eq!(task.await.unwrap(), 31);
    let items = server.exporter().trace_items();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].trace.data.spans[0].name(), "step");
}

struct Client {
    url: String,
}

#[mlflow_tracing::trace(skip_output)]
fn connect(url: &str) -> Client {
    Client {
        url: url.to_owned(),
    }
}

#[mlflow_tracing::trace]
fn generic_total<T: serde::Serialize + Copy + Into<u64>>(
    mut items: Vec<T>,
    (a, b): (u8, u8),
) -> Result<u64, std::num::TryFromIntError> {
    items.reverse();
    let total: u64 = items.iter().map(|&i| i.into()).sum::<u64>() + u64::from(a) + u64::from(b);
    let small = u32::try_from(total)?;
    Ok(u64::from(small))
}

#[test]
fn more_function_shapes_compile_and_record() {
    let capture = Capture::new();
    let client = capture.run(|| connect("http://x"));
    assert_eq!(client.url, "http://x");
    assert_eq!(capture.run(|| generic_total(vec![1u8, 2], (3, 4))), Ok(10));
    let traces = capture.traces();
    assert_eq!(traces[0].data.spans[0].outputs(), None);
    assert_eq!(
        traces[0].data.spans[0].inputs(),
        Some(json!({"url": "http://x"}))
    );
    let total = &traces[1].data.spans[0];
    assert_eq!(total.inputs(), Some(json!({"items": [1, 2]})));
    assert_eq!(total.outputs(), Some(json!(10)));
}
