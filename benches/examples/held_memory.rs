//! Part of `cargo xtask bench`: the heap a large trace takes while it is held, next to its
//! encoded size (the OTLP protobuf request of its spans). Two traces: 10,000 spans with 1 KB in
//! and out each, and one span with a 50 MB output. Counted by `allocation-counter`'s allocator
//! on this thread (the tracer exports inline into memory, so everything happens here). Prints
//! one JSON line.
#![expect(clippy::print_stdout, reason = "reports to xtask on stdout")]

use mlflow_tracing::entities::otlp::{export_request, sdk_resource};
use mlflow_tracing::testing::Capture;
use mlflow_tracing::{Trace, start_span, trace};
use prost::Message as _;
use serde::Serialize;
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Serialize)]
struct Answer<'a> {
    a: &'a str,
}

#[trace(name = "step", span_type = "TOOL")]
fn step<'a>(q: &'a str) -> Answer<'a> {
    Answer { a: q }
}

fn encoded_len(trace: &Trace) -> usize {
    export_request(sdk_resource("0"), trace.data.spans.iter()).encoded_len()
}

/// Heap figures of one trace, in bytes.
#[derive(Serialize)]
struct Held {
    /// Encoded size of its spans (OTLP protobuf).
    encoded: usize,
    /// Held while in progress, just before the root ends.
    in_progress: i64,
    /// Highest while it was made and finalized. The counting allocator grows a buffer by
    /// allocate-copy-free (glibc's `realloc` moves pages instead), so this overstates the
    /// peak of a buffer grown to a large size.
    peak: u64,
    /// Held by the finished trace (kept by the in-memory exporter).
    finished: i64,
}

/// The figures of the capture's last trace, from the heap counted while it was made
/// (`building`) and while it ended (`ending`).
fn held(
    capture: &Capture,
    building: &allocation_counter::AllocationInfo,
    ending: &allocation_counter::AllocationInfo,
) -> Result<Held, Error> {
    let traces = capture.traces();
    let trace = traces.last().ok_or("no trace")?;
    Ok(Held {
        encoded: encoded_len(trace),
        in_progress: building.bytes_current,
        peak: building
            .bytes_max
            .max(building.bytes_current.max(0) as u64 + ending.bytes_max),
        finished: building.bytes_current + ending.bytes_current,
    })
}

fn many_spans(capture: &Capture, spans: usize) -> Result<Held, Error> {
    let payload = "x".repeat(1024);
    let mut root = None;
    let building = allocation_counter::measure(|| {
        capture.run(|| {
            let r = start_span("root").span_type("AGENT").start();
            r.set_inputs(&json!({"q": payload}));
            let _entered = r.enter();
            for _ in 1..spans {
                std::hint::black_box(step(&payload));
            }
            drop(_entered);
            root = Some(r);
        });
    });
    let ending = allocation_counter::measure(|| {
        if let Some(r) = root.take() {
            r.set_outputs(&json!({"a": payload}));
            r.end();
        }
    });
    held(capture, &building, &ending)
}

fn big_output(capture: &Capture, bytes: usize) -> Result<Held, Error> {
    let big = "y".repeat(bytes);
    let mut span = None;
    let building = allocation_counter::measure(|| {
        capture.run(|| {
            let s = start_span("big").span_type("LLM").start();
            s.set_outputs(&big);
            span = Some(s);
        });
    });
    let ending = allocation_counter::measure(|| {
        if let Some(s) = span.take() {
            s.end();
        }
    });
    held(capture, &building, &ending)
}

fn main() -> Result<(), Error> {
    let spans = Capture::new();
    let many = many_spans(&spans, 10_000)?;
    let big = Capture::new();
    let big = big_output(&big, 50 * 1024 * 1024)?;
    println!("{}", json!({"spans_10000": many, "output_50mb": big}));
    Ok(())
}
