//! Traced streams and iterators against Python's generator tracing: the same three programs (a
//! generator of objects, one with an `output_reducer`, one that fails midway) in both SDKs,
//! into the real server, read back by Python and compared span by span (our extra
//! `first_item` event aside). Then what only Rust has: async streams, spans started inside,
//! early drops, the event cap.

use std::time::Duration;

use futures_util::StreamExt as _;
use mlflow_tracing::entities::SpanEvent;
use mlflow_tracing::stream::{TraceStreamExt as _, TracedTryStream};
use mlflow_tracing::testing::Capture;
use mlflow_tracing::{Span, start_span};
use serde_json::{Value, json};

use crate::live::{block_on, experiment, python_json, sync_tracer};

const PY_PROGRAM: &str = r#"
import json, sys, mlflow
mlflow.set_experiment(experiment_id=sys.argv[1])

@mlflow.trace
def generate(n):
    for i in range(n):
        yield {"i": i, "text": f"tok{i}"}

@mlflow.trace(output_reducer=lambda xs: "".join(xs))
def tokens():
    yield "Hel"
    yield "lo é"

@mlflow.trace
def failing():
    yield 1
    raise ValueError("boom")

list(generate(3))
list(tokens())
try:
    list(failing())
except ValueError:
    pass
print(json.dumps({"ok": True}))
"#;

/// Per trace (by name): the root span's inputs, outputs, status, attributes (but the trace id)
/// and events (name and chunk value; `first_item` left out), and the trace's response preview.
const PY_READ: &str = r#"
import json, sys, mlflow
out = {}
for t in mlflow.search_traces(locations=[sys.argv[1]], return_type="list"):
    s = t.data.spans[0]
    out[s.name] = {
        "inputs": s.inputs, "outputs": s.outputs, "status": str(s.status.status_code),
        "events": [[e.name, e.attributes.get("mlflow.chunk.value")] for e in s.events
                   if e.name != "first_item" and e.name != "exception"],
        "exception": [e.name for e in s.events if e.name == "exception"],
        "response_preview": t.info.response_preview,
        "attributes": {k: v for k, v in s.attributes.items() if k != "mlflow.traceRequestId"},
    }
print(json.dumps(out, sort_keys=True))
"#;

#[mlflow_tracing::trace]
fn generate(n: u32) -> impl Iterator<Item = Value> {
    (0..n).map(|i| json!({"i": i, "text": format!("tok{i}")}))
}

#[mlflow_tracing::trace(output_reducer = |xs: Vec<String>| xs.concat())]
fn tokens() -> impl Iterator<Item = String> {
    ["Hel", "lo é"].into_iter().map(String::from)
}

#[derive(Debug)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

#[mlflow_tracing::trace]
fn failing() -> impl Iterator<Item = Result<i64, Boom>> {
    vec![Ok(1), Err(Boom)].into_iter()
}

#[test]
fn traced_iterators_read_back_as_pythons_traced_generators() {
    let py_experiment = experiment("streams-python");
    python_json(PY_PROGRAM, &[&py_experiment]);
    let rust_experiment = experiment("streams-rust");
    let tracer = sync_tracer(&rust_experiment);
    tracer.in_scope(|| {
        assert_eq!(generate(3).count(), 3);
        assert_eq!(tokens().collect::<Vec<_>>(), ["Hel", "lo é"]);
        assert!(failing().any(|r| r.is_err()));
    });
    let python = python_json(PY_READ, &[&py_experiment]);
    let rust = python_json(PY_READ, &[&rust_experiment]);
    assert_eq!(
        rust, python,
        "Rust's traced streams read back as Python's generators"
    );
    assert_eq!(
        python["generate"]["events"],
        json!([
            ["mlflow.chunk.item.0", "{\"i\": 0, \"text\": \"tok0\"}"],
            ["mlflow.chunk.item.1", "{\"i\": 1, \"text\": \"tok1\"}"],
            ["mlflow.chunk.item.2", "{\"i\": 2, \"text\": \"tok2\"}"]
        ])
    );
    assert_eq!(python["tokens"]["outputs"], "Hello é");
    assert_eq!(python["failing"]["status"], "SpanStatusCode.ERROR");
}

fn root(capture: &Capture) -> Span {
    let traces = capture.traces();
    assert_eq!(traces.len(), 1);
    traces[0].data.spans[0].clone()
}

fn chunk_events(span: &Span) -> usize {
    span.events()
        .iter()
        .filter(|e| e.name.starts_with("mlflow.chunk.item."))
        .count()
}

#[test]
fn an_async_stream_keeps_its_span_open_and_current_until_it_ends() {
    let capture = Capture::new();
    let collected: Vec<u32> = block_on(capture.scope(async {
        let span = start_span("stream").start_detached();
        let stream = futures_util::stream::iter(0..3u32)
            .then(|i| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                // Spans started while the stream runs are its children.
                drop(start_span("inner").start());
                i
            })
            .traced(span);
        stream.collect().await
    }));
    assert_eq!(collected, [0, 1, 2]);
    let trace = &capture.traces()[0];
    let root = &trace.data.spans[0];
    assert_eq!(root.name(), "stream");
    assert_eq!(root.outputs(), Some(json!([0, 1, 2])));
    assert_eq!(chunk_events(root), 3);
    let first = root
        .events()
        .iter()
        .find(|e| e.name == "first_item")
        .expect("the time to the first item");
    assert!(first.attributes["time_to_first_item_ns"].as_u64().unwrap() >= 1_000_000);
    let inner: Vec<_> = trace
        .data
        .spans
        .iter()
        .filter(|s| s.name() == "inner")
        .collect();
    assert_eq!(inner.len(), 3);
    assert!(inner.iter().all(|s| s.parent_id() == Some(root.span_id())));
}

#[test]
fn a_stream_dropped_early_ends_its_span_as_cancelled() {
    let capture = Capture::new();
    block_on(capture.scope(async {
        let span = start_span("abandoned").start_detached();
        let mut stream = futures_util::stream::iter(0..10u32).traced(span);
        assert_eq!(stream.next().await, Some(0));
        drop(stream);
    }));
    let root = root(&capture);
    assert_eq!(root.status().code.as_str(), "ERROR");
    assert!(
        root.events()
            .iter()
            .any(|e| e.name == "exception" && e.attributes["exception.type"] == "Cancelled")
    );
    assert_eq!(
        root.outputs(),
        None,
        "no outputs for a stream that did not end"
    );
}

#[test]
fn an_err_item_ends_a_try_stream_with_that_error() {
    let capture = Capture::new();
    let items: Vec<Result<u32, Boom>> = block_on(capture.scope(async {
        let span = start_span("try").start_detached();
        let stream = futures_util::stream::iter(vec![Ok(1), Err(Boom), Ok(3)]);
        TracedTryStream::new(stream, span).collect().await
    }));
    assert_eq!(items.len(), 3, "every item still reaches the caller");
    let root = root(&capture);
    assert_eq!(root.status().code.as_str(), "ERROR");
    assert_eq!(
        chunk_events(&root),
        1,
        "items after the error are not recorded"
    );
    assert_eq!(root.outputs(), None);
}

#[test]
fn a_long_stream_keeps_at_most_the_event_limit_and_counts_the_rest() {
    let capture = Capture::new();
    let n = 100_000u64;
    let sum: u64 = capture.run(|| {
        let span = start_span("long").start_detached();
        mlflow_tracing::stream::TracedIter::new(0..n, span)
            .output_reducer(|xs: Vec<u64>| xs.len())
            .sum()
    });
    assert_eq!(sum, n * (n - 1) / 2);
    let root = root(&capture);
    assert_eq!(
        chunk_events(&root),
        128,
        "MLflow's default span event limit"
    );
    // As OpenTelemetry Python keeps a span's newest events: the last 128 chunks.
    let first_kept = root
        .events()
        .iter()
        .find(|e| e.name.starts_with("mlflow.chunk.item."))
        .unwrap();
    assert_eq!(first_kept.name, format!("mlflow.chunk.item.{}", n - 128));
    assert_eq!(root.outputs(), Some(json!(n)));
    assert_eq!(capture.tracer().stats().events_dropped, n - 128);
}

/// Items that are not `Clone`, errors that are not `std::error::Error`.
#[derive(serde::Serialize)]
struct Token(String);

#[mlflow_tracing::trace]
#[expect(
    clippy::implied_bounds_in_impls,
    reason = "a return type as users write it"
)]
fn boxed_errors()
-> impl Iterator<Item = Result<Token, Box<dyn std::error::Error + Send + Sync>>> + ExactSizeIterator
{
    vec![Ok(Token("a".into())), Err("broken pipe".into())].into_iter()
}

/// Not `Serialize` at all: `skip_output` traces it as a plain function.
struct Opaque;

#[mlflow_tracing::trace(skip_output)]
fn opaque() -> impl Iterator<Item = Opaque> {
    std::iter::once(Opaque)
}

#[test]
fn any_item_type_can_be_traced() {
    let capture = Capture::new();
    capture.run(|| {
        let items = boxed_errors();
        assert_eq!(items.len(), 2);
        assert_eq!(items.filter(Result::is_err).count(), 1);
        assert_eq!(opaque().count(), 1);
    });
    let traces = capture.traces();
    assert_eq!(traces.len(), 2);
    let failed = &traces[0].data.spans[0];
    assert_eq!(failed.name(), "boxed_errors");
    assert_eq!(failed.status().code.as_str(), "ERROR");
    assert_eq!(traces[1].data.spans[0].name(), "opaque");
}

#[test]
fn a_failing_reducer_leaves_the_list_as_outputs() {
    let capture = Capture::new();
    capture.run(|| {
        let span = start_span("reduced").start_detached();
        let total: u32 = mlflow_tracing::stream::TracedIter::new(1..=3u32, span)
            .output_reducer(|_: Vec<u32>| -> u32 { panic!("reducer bug") })
            .sum();
        assert_eq!(total, 6);
    });
    let span = root(&capture);
    assert_eq!(
        span.outputs(),
        Some(json!([1, 2, 3])),
        "as MLflow when the reducer fails"
    );
    assert_eq!(span.status().code.as_str(), "OK");
}

#[test]
fn chunk_events_share_the_limit_with_the_spans_other_events() {
    let capture = Capture::new();
    capture.run(|| {
        let span = start_span("mixed").start_detached();
        for i in 0..100 {
            span.add_event(SpanEvent::now(format!("user-{i}")));
        }
        let n: usize = mlflow_tracing::stream::TracedIter::new(0..50u32, span).count();
        assert_eq!(n, 50);
    });
    let span = root(&capture);
    let chunks: Vec<&str> = span
        .events()
        .iter()
        .filter(|e| e.name.starts_with("mlflow.chunk.item."))
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(chunks.len(), 28, "128 events in all");
    assert_eq!(
        chunks.last(),
        Some(&"mlflow.chunk.item.49"),
        "the newest kept"
    );
}
