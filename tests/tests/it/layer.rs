//! `MlflowLayer`: `tracing` spans as MLflow spans. Nesting both ways, across `.await`,
//! `Instrument` and spawned tasks, next to `fmt` and `EnvFilter`; per-layer filters and the GenAI
//! mode; fields, `otel.*`, events and errors; GenAI translation; bad input. Each test has its own
//! subscriber (`with_default` / `WithSubscriber`) and its own tracer (`Capture`), so tests stay
//! parallel.

use std::time::Duration;

use mlflow_tracing::entities::{SpanStatusCode, keys};
use mlflow_tracing::layer::MlflowLayer;
use mlflow_tracing::testing::Capture;
use mlflow_tracing::{Span, Trace, start_span};
use serde_json::{Value, json};
use tracing::instrument::WithSubscriber as _;
use tracing::{Instrument as _, Level};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

fn by_name<'a>(trace: &'a Trace, name: &str) -> &'a Span {
    trace
        .data
        .spans
        .iter()
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("no span {name} in {:?}", names(trace)))
}

fn names(trace: &Trace) -> Vec<&str> {
    trace.data.spans.iter().map(Span::name).collect()
}

/// Runs `f` under a registry holding `MlflowLayer::new()` alone, into a fresh capture.
fn with_layer(f: impl FnOnce()) -> Capture {
    let capture = Capture::new();
    let subscriber = tracing_subscriber::registry().with(MlflowLayer::new());
    tracing::subscriber::with_default(subscriber, || capture.run(f));
    capture
}

fn only_trace(capture: &Capture) -> Trace {
    let traces = capture.traces();
    assert_eq!(
        traces.len(),
        1,
        "{:?}",
        traces.iter().map(names).collect::<Vec<_>>()
    );
    traces.into_iter().next().unwrap()
}

#[mlflow_tracing::trace(span_type = "TOOL")]
fn traced_tool(x: i64) -> i64 {
    // A tracing span inside a `#[trace]` span is its child.
    let _inner = tracing::info_span!("inside_traced", x).entered();
    x * 2
}

#[test]
fn nesting_works_both_ways() {
    let capture = Capture::new();
    let subscriber = tracing_subscriber::registry().with(MlflowLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        capture.run(|| {
            let root = tracing::info_span!("tracing_root", user = "alice");
            let _entered = root.enter();
            // A `#[trace]` function inside a recorded tracing span is that span's child.
            assert_eq!(traced_tool(21), 42);
            // And a start_span span too.
            drop(start_span("manual").start());
        });
    });
    let trace = only_trace(&capture);
    let root = by_name(&trace, "tracing_root");
    let tool = by_name(&trace, "traced_tool");
    let inside = by_name(&trace, "inside_traced");
    let manual = by_name(&trace, "manual");
    assert_eq!(
        root.parent_id(),
        None,
        "a recorded span with no MLflow parent starts a trace"
    );
    assert_eq!(tool.parent_id(), Some(root.span_id()));
    assert_eq!(manual.parent_id(), Some(root.span_id()));
    assert_eq!(inside.parent_id(), Some(tool.span_id()));
    assert_eq!(root.attribute("user"), Some(json!("alice")));
    assert_eq!(inside.attribute("x"), Some(json!(21)));
    assert_eq!(
        trace
            .info
            .tags
            .get(keys::tag::TRACE_NAME)
            .map(String::as_str),
        Some("tracing_root")
    );
}

#[mlflow_tracing::trace]
async fn traced_step(n: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(2)).await;
    async { n + 1 }
        .instrument(tracing::info_span!("tracing_step", n))
        .await
}

async fn workflow() -> u32 {
    let mut total = 0;
    for n in 0..3 {
        total += traced_step(n).await;
    }
    // A spawned task keeps the MLflow parent (in_current_span) and the subscriber.
    // (`tracing::Instrument` has an `in_current_span` too: name the trait.)
    let task = tokio::spawn(
        mlflow_tracing::FutureExt::in_current_span(async { traced_step(10).await })
            .with_current_subscriber(),
    );
    total + task.await.unwrap()
}

fn assert_workflow(capture: &Capture) {
    let trace = only_trace(capture);
    let root = by_name(&trace, "workflow");
    let steps: Vec<&Span> = trace
        .data
        .spans
        .iter()
        .filter(|s| s.name() == "traced_step")
        .collect();
    assert_eq!(steps.len(), 4, "{:?}", names(&trace));
    for step in &steps {
        assert_eq!(step.parent_id(), Some(root.span_id()));
    }
    let inner: Vec<&Span> = trace
        .data
        .spans
        .iter()
        .filter(|s| s.name() == "tracing_step")
        .collect();
    assert_eq!(inner.len(), 4);
    for span in inner {
        assert!(
            steps.iter().any(|s| Some(s.span_id()) == span.parent_id()),
            "each tracing span is the child of its traced step"
        );
    }
}

#[test]
fn across_await_instrument_and_spawned_tasks_on_a_multi_thread_runtime() {
    let capture = Capture::new();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(MlflowLayer::new()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let total = runtime.block_on(
        capture
            .scope(async { workflow().instrument(tracing::info_span!("workflow")).await })
            .with_subscriber(dispatch),
    );
    assert_eq!(total, 1 + 2 + 3 + 11);
    assert_workflow(&capture);
}

#[test]
fn on_a_current_thread_runtime_next_to_fmt_and_env_filter() {
    let capture = Capture::new();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_test_writer(),
        )
        .with(MlflowLayer::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let total = tracing::subscriber::with_default(subscriber, || {
        // The span is created inside the tracer's scope (an argument would be created before).
        runtime.block_on(
            capture.scope(async { workflow().instrument(tracing::info_span!("workflow")).await }),
        )
    });
    assert_eq!(total, 17);
    assert_workflow(&capture);
}

#[test]
fn per_layer_filters_choose_what_is_recorded() {
    let capture = Capture::new();
    let subscriber = tracing_subscriber::registry()
        .with(MlflowLayer::new().with_filter(Targets::new().with_target("wanted", Level::INFO)));
    tracing::subscriber::with_default(subscriber, || {
        capture.run(|| {
            drop(tracing::info_span!(target: "wanted", "kept").entered());
            drop(tracing::info_span!(target: "noise", "left_out").entered());
            drop(tracing::debug_span!(target: "wanted", "too_verbose").entered());
        });
    });
    let traces = capture.traces();
    assert_eq!(traces.len(), 1);
    assert_eq!(names(&traces[0]), ["kept"]);
}

#[test]
fn the_genai_mode_records_genai_spans_and_spans_inside_a_trace_only() {
    let capture = Capture::new();
    let subscriber = tracing_subscriber::registry().with(MlflowLayer::genai());
    tracing::subscriber::with_default(subscriber, || {
        capture.run(|| {
            // A busy service's ordinary span: not a trace.
            drop(tracing::info_span!("http_request", path = "/health").entered());
            // A GenAI span: a trace, with a plain span inside it recorded too.
            let agent = tracing::info_span!("agent", gen_ai.operation.name = "invoke_agent");
            let _a = agent.enter();
            drop(tracing::info_span!("helper").entered());
        });
    });
    let trace = only_trace(&capture);
    let mut n = names(&trace);
    n.sort_unstable();
    assert_eq!(n, ["agent", "helper"]);
    assert_eq!(
        by_name(&trace, "agent").span_type().unwrap().as_str(),
        "AGENT"
    );
}

#[derive(Debug)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the tool broke")
    }
}

impl std::error::Error for Broken {}

#[test]
fn fields_otel_conventions_events_and_errors() {
    let capture = Capture::new();
    let subscriber = tracing_subscriber::registry().with(MlflowLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        capture.run(|| {
            let span = tracing::info_span!(
                "typed",
                int = -3i64,
                unsigned = 7u64,
                float = 1.5,
                flag = true,
                text = "plain",
                list = "[1, 2]",
                dbg = ?vec![("a", 1)],
                otel.name = "renamed",
                otel.kind = "client",
                late = tracing::field::Empty,
            );
            let _e = span.enter();
            span.record("late", 42);
            tracing::info!(answer = 42, "found the answer");
            tracing::debug!("a debug line");

            let failing = tracing::info_span!(
                "failing",
                otel.status_code = tracing::field::Empty,
                otel.status_message = tracing::field::Empty,
            );
            failing.record("otel.status_message", "upstream refused");
            failing.record("otel.status_code", "ERROR");
            drop(failing);

            let err = Broken;
            let erroring = tracing::info_span!("erroring", error = &err as &dyn std::error::Error);
            drop(erroring);

            let event_error = tracing::info_span!("event_error");
            let _ee = event_error.enter();
            tracing::error!(error = &Broken as &dyn std::error::Error, "call failed");
        });
    });
    let traces = capture.traces();
    let all: Vec<&Span> = traces.iter().flat_map(|t| &t.data.spans).collect();
    let get = |n: &str| *all.iter().find(|s| s.name() == n).unwrap();
    let typed = get("renamed");
    assert_eq!(typed.attribute("int"), Some(json!(-3)));
    assert_eq!(typed.attribute("unsigned"), Some(json!(7)));
    assert_eq!(typed.attribute("float"), Some(json!(1.5)));
    assert_eq!(typed.attribute("flag"), Some(json!(true)));
    assert_eq!(typed.attribute("text"), Some(json!("plain")));
    assert_eq!(
        typed.attribute("list"),
        Some(json!([1, 2])),
        "JSON text stays JSON"
    );
    assert_eq!(typed.attribute("dbg"), Some(json!("[(\"a\", 1)]")));
    assert_eq!(typed.attribute("late"), Some(json!(42)));
    assert_eq!(typed.attribute("otel.kind"), None);
    let found = typed
        .events()
        .iter()
        .find(|e| e.name == "found the answer")
        .expect("the event, named by its message");
    assert_eq!(found.attributes["answer"], json!(42));
    assert_eq!(found.attributes["level"], json!("INFO"));
    assert_eq!(found.attributes["target"], json!(module_path!()));
    assert!(typed.events().iter().any(|e| e.name == "a debug line"));

    let failing = get("failing");
    assert_eq!(failing.status().code, SpanStatusCode::Error);
    assert_eq!(failing.status().message, "upstream refused");

    for name in ["erroring", "event_error"] {
        let span = get(name);
        assert_eq!(span.status().code, SpanStatusCode::Error, "{name}");
        assert_eq!(span.status().message, "Error: the tool broke", "{name}");
        let exception = span
            .events()
            .iter()
            .find(|e| e.name == "exception")
            .unwrap_or_else(|| panic!("{name}: an exception event"));
        assert_eq!(
            exception.attributes["exception.message"],
            json!("the tool broke")
        );
    }
}

#[test]
fn genai_attributes_are_translated_and_feed_the_trace_info() {
    let capture = Capture::new();
    let subscriber = tracing_subscriber::registry().with(MlflowLayer::genai());
    tracing::subscriber::with_default(subscriber, || {
        capture.run(|| {
            let agent = tracing::info_span!(
                "invoke_agent",
                gen_ai.operation.name = "invoke_agent",
                gen_ai.prompt = tracing::field::Empty,
                gen_ai.completion = tracing::field::Empty,
            );
            let _a = agent.enter();
            agent.record("gen_ai.prompt", "What is 2 + 5?");
            {
                let chat = tracing::info_span!(
                    "chat",
                    gen_ai.operation.name = "chat",
                    gen_ai.provider.name = "openai",
                    gen_ai.request.model = "gpt-4o-mini",
                    gen_ai.input.messages =
                        r#"[{"role":"user","parts":[{"type":"text","content":"What is 2 + 5?"}]}]"#,
                    gen_ai.output.messages = tracing::field::Empty,
                    gen_ai.usage.input_tokens = tracing::field::Empty,
                    gen_ai.usage.output_tokens = tracing::field::Empty,
                );
                chat.record(
                    "gen_ai.output.messages",
                    r#"[{"role":"assistant","parts":[{"type":"text","content":"7"}]}]"#,
                );
                chat.record("gen_ai.usage.input_tokens", 50u64);
                chat.record("gen_ai.usage.output_tokens", 10u64);
            }
            {
                let tool = tracing::info_span!(
                    "execute_tool",
                    gen_ai.operation.name = "execute_tool",
                    gen_ai.tool.name = "add",
                    gen_ai.tool.call.arguments = r#"{"x":2,"y":5}"#,
                    gen_ai.tool.call.result = "7",
                );
                drop(tool);
            }
            agent.record("gen_ai.completion", "2 + 5 = 7");
        });
    });
    let trace = only_trace(&capture);
    let agent = by_name(&trace, "invoke_agent");
    let chat = by_name(&trace, "chat");
    let tool = by_name(&trace, "execute_tool");
    assert_eq!(agent.span_type().unwrap().as_str(), "AGENT");
    assert_eq!(chat.span_type().unwrap().as_str(), "CHAT_MODEL");
    assert_eq!(tool.span_type().unwrap().as_str(), "TOOL");
    assert_eq!(
        chat.raw_inputs(),
        Some(r#"[{"role":"user","parts":[{"type":"text","content":"What is 2 + 5?"}]}]"#)
    );
    assert_eq!(
        chat.outputs().unwrap()[0]["parts"][0]["content"],
        json!("7")
    );
    assert_eq!(tool.inputs(), Some(json!({"x": 2, "y": 5})));
    assert_eq!(tool.outputs(), Some(json!("7")));
    assert_eq!(agent.inputs(), Some(json!("What is 2 + 5?")));
    assert_eq!(agent.outputs(), Some(json!("2 + 5 = 7")));
    let usage = chat.token_usage().unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.total_tokens),
        (50, 10, 60)
    );
    assert_eq!(
        chat.attribute(keys::span::MODEL),
        Some(json!("gpt-4o-mini"))
    );
    assert_eq!(
        chat.attribute(keys::span::MODEL_PROVIDER),
        Some(json!("openai"))
    );
    // The trace info is computed from them.
    let info = &trace.info;
    assert_eq!(info.request_preview.as_deref(), Some("\"What is 2 + 5?\""));
    assert_eq!(info.response_preview.as_deref(), Some("\"2 + 5 = 7\""));
    let total: Value =
        serde_json::from_str(&info.trace_metadata[keys::metadata::TOKEN_USAGE]).unwrap();
    assert_eq!(
        total,
        json!({"input_tokens": 50, "output_tokens": 10, "total_tokens": 60})
    );
    assert_eq!(
        info.trace_metadata[keys::metadata::INPUTS],
        "\"What is 2 + 5?\""
    );
}

#[test]
fn a_value_set_through_the_span_api_wins_over_the_translation() {
    let capture = with_layer(|| {
        let chat = tracing::info_span!(
            "chat",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = "gpt-4o-mini",
            gen_ai.output.messages = r#"[{"role":"assistant","parts":[]}]"#,
        );
        let _c = chat.enter();
        let current = mlflow_tracing::context::current_span().unwrap();
        current.set_outputs(&json!({"answer": 7}));
    });
    let trace = only_trace(&capture);
    let chat = by_name(&trace, "chat");
    assert_eq!(chat.outputs(), Some(json!({"answer": 7})));
    assert_eq!(
        chat.attribute(keys::span::MODEL),
        Some(json!("gpt-4o-mini")),
        "the rest is translated"
    );
    assert_eq!(
        trace.info.response_preview.as_deref(),
        Some(r#"{"answer": 7}"#)
    );
}

#[test]
fn bad_input_never_loses_a_span() {
    let capture = with_layer(|| {
        let chat = tracing::info_span!(
            "chat",
            gen_ai.operation.name = "chat",
            gen_ai.input.messages = "[not json",
            gen_ai.usage.input_tokens = "many",
        );
        drop(chat);
    });
    let trace = only_trace(&capture);
    let chat = by_name(&trace, "chat");
    assert_eq!(
        chat.inputs(),
        Some(json!("[not json")),
        "not JSON: kept as a string"
    );
    assert!(chat.token_usage().is_none());
    assert_eq!(chat.span_type().unwrap().as_str(), "CHAT_MODEL");
}

#[test]
fn a_span_that_ends_after_its_trace_was_exported_is_counted_not_attached() {
    let capture = Capture::with(|b| b.with_trace_timeout(Some(Duration::from_millis(50)))).unwrap();
    let subscriber = tracing_subscriber::registry().with(MlflowLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        capture.run(|| {
            let root = start_span("root").start();
            let late = tracing::info_span!("late_child");
            drop(root); // the trace waits for the open child...
            std::thread::sleep(Duration::from_millis(100));
            capture.tracer().run_maintenance(); // ...until the timeout halts and exports it
            assert_eq!(names(&only_trace(&capture)), ["root"]);
            drop(late); // ends after its trace was exported
        });
    });
    assert_eq!(capture.traces().len(), 1, "never attached to another trace");
    assert_eq!(capture.tracer().stats().spans_dropped, 1, "counted");
}

#[test]
fn without_a_tracer_nothing_is_recorded() {
    // No tracer installed in this thread's scope, and the `it` binary installs no global one.
    let subscriber = tracing_subscriber::registry().with(MlflowLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("orphan");
        let _e = span.enter();
        assert!(mlflow_tracing::context::current_span().is_none());
    });
}

#[test]
fn a_span_past_its_event_limit_next_to_fmt_does_not_deadlock() {
    // Dropping the 129th event is reported through `tracing`; with a global subscriber that
    // report comes straight back into the subscriber, and `fmt` reads the span's extensions to
    // print it: the layer must not hold them while calling into the span. A global subscriber,
    // so a child process.
    if std::env::var_os(crate::rerun::CHILD).is_some() {
        let capture = Capture::new();
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("trace"))
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
            .with(MlflowLayer::new())
            .init();
        capture.run(|| {
            let span = tracing::info_span!("chatty");
            let _entered = span.enter();
            for i in 0..200 {
                tracing::info!(i, "step");
            }
        });
        assert_eq!(capture.traces()[0].data.spans[0].events().len(), 128);
        return;
    }
    let command = crate::rerun::command(
        &test_name!("a_span_past_its_event_limit_next_to_fmt_does_not_deadlock"),
        "1",
    );
    let (ok, out) =
        mlflow_tracing_tests::service::Service::run(command, Duration::from_secs(60)).unwrap();
    assert!(ok, "the child deadlocked or failed:\n{out}");
    assert!(out.contains("1 passed"), "{out}");
}
