//! A traced stream next to the same items recorded by hand, in one run.
//!
//! 1,000 small items (`{"i": n, "text": "tok"}`) in one span, whole traces (end and
//! finalization included) into an in-memory exporter: `stream/traced` iterates a
//! `TracedIter` (a chunk event per item, the last 128 kept, the outputs list);
//! `stream/hand_written` adds one event per item with the item's JSON by hand and sets the
//! list as outputs.
//!
//! `cargo xtask bench` prints the ratio; the target is traced ≤ 2 × hand-written.
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark code")]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mlflow_tracing::entities::SpanEvent;
use mlflow_tracing::start_span;
use mlflow_tracing::stream::TracedIter;
use mlflow_tracing::testing::Capture;
use serde::Serialize;

#[derive(Serialize, Clone)]
struct Item {
    i: u32,
    text: &'static str,
}

const N: u32 = 1000;

fn items() -> impl Iterator<Item = Item> {
    (0..N).map(|i| Item { i, text: "tok" })
}

fn stream(c: &mut Criterion) {
    let capture = Capture::new();
    let mut group = c.benchmark_group("stream");
    group.bench_function("traced", |b| {
        capture.run(|| {
            b.iter(|| {
                let span = start_span("stream").start_detached();
                black_box(TracedIter::new(items(), span).count());
                capture.exporter().clear();
            });
        });
    });
    group.bench_function("hand_written", |b| {
        capture.run(|| {
            b.iter(|| {
                let span = start_span("stream").start_detached();
                let mut all = Vec::new();
                for (n, item) in items().enumerate() {
                    let mut event = SpanEvent::now(format!("mlflow.chunk.item.{n}"));
                    event.attributes.insert(
                        "mlflow.chunk.value".into(),
                        serde_json::to_string(&item).unwrap().into(),
                    );
                    span.add_event(event);
                    all.push(item);
                }
                span.set_outputs(&all);
                span.end();
                capture.exporter().clear();
            });
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = stream
}
criterion_main!(benches);
