//! `tracing` spans recorded by `MlflowLayer`, next to the same spans recorded by
//! `tracing-opentelemetry` into an in-memory exporter, in one run.
//!
//! Every measured span is `info_span!("chat", …)` with four fields (the GenAI operation, model
//! and two usage counts recorded after creation), entered, exited and closed, inside a root
//! span; a trace is a root and 100 such spans. The timing covers the whole trace, root and
//! end included, all on the caller's thread: the OpenTelemetry side exports each span to an
//! in-memory exporter through a simple processor as it ends; the MLflow side records the
//! fields, translates the GenAI ones, and finalizes the trace (previews, token usage) into an
//! in-memory exporter when the root ends. Reported per span. (With `init`'s export worker the
//! finalization moves off the caller's thread; `cargo xtask bench e2e` measures that path
//! against a real server.)
//!
//! `layer/mlflow_deferred` is the same MLflow side as `init` sets it up: the export worker
//! finalizes each trace on its own thread, so the caller's thread pays for recording only (the
//! timing waits, untimed, for the worker between traces). That is what the target compares:
//! what recording a span costs the thread that records it.
//!
//! `layer/filtered_out` is a registry with the layer behind a per-layer filter that rejects the
//! spans, next to `layer/tracing_alone`: a registry with no layer.
//!
//! `cargo xtask bench` prints the ratios; the target is mlflow_deferred ≤ 1.0 ×
//! tracing-opentelemetry.
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark code")]

mod common;

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mlflow_tracing::export::Dispatch as _;
use mlflow_tracing::layer::MlflowLayer;
use mlflow_tracing::testing::Capture;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Dispatch;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

/// Keeps exported spans in memory, as `opentelemetry_sdk`'s `InMemorySpanExporter` does
/// (without the copy of each batch that one makes).
#[derive(Clone, Debug, Default)]
struct InMemorySpans(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for InMemorySpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// A layer that records nothing.
struct NoopLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for NoopLayer {}

/// Spans per trace.
const SPANS_PER_ROOT: u64 = 100;

/// One measured span: a GenAI chat span with usage recorded later, entered and closed.
fn chat_span() {
    let span = tracing::info_span!(
        "chat",
        gen_ai.operation.name = "chat",
        gen_ai.request.model = "gpt-4o-mini",
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
    );
    let entered = span.enter();
    span.record("gen_ai.usage.input_tokens", 52);
    span.record("gen_ai.usage.output_tokens", 17);
    drop(entered);
    drop(black_box(span));
}

/// Times `iters` spans in traces of [`SPANS_PER_ROOT`] (the roots' start and end included);
/// `reset` runs between traces, untimed.
fn in_traces(iters: u64, mut reset: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = SPANS_PER_ROOT.min(iters - done);
        let start = Instant::now();
        {
            let root = tracing::info_span!("agent", gen_ai.operation.name = "invoke_agent");
            let _entered = root.enter();
            for _ in 0..n {
                chat_span();
            }
        }
        total += start.elapsed();
        reset();
        done += n;
    }
    total
}

fn layer(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer");

    let exporter = InMemorySpans::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let otel = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"))),
    );
    group.bench_function("tracing_opentelemetry", |b| {
        tracing::dispatcher::with_default(&otel, || {
            b.iter_custom(|iters| in_traces(iters, || exporter.0.lock().unwrap().clear()));
        });
    });
    assert!(
        exporter.0.lock().unwrap().is_empty(),
        "cleared after each trace"
    );

    // Like for like: everything on the caller's thread, into an in-memory exporter.
    let capture = Capture::new();
    let mlflow = Dispatch::new(tracing_subscriber::registry().with(MlflowLayer::new()));
    group.bench_function("mlflow", |b| {
        tracing::dispatcher::with_default(&mlflow, || {
            capture.run(|| b.iter_custom(|iters| in_traces(iters, || capture.exporter().clear())));
        });
    });

    // As `init` sets it up: the worker finalizes each trace on its own thread. After each batch
    // (5 traces), wait untimed until the worker has exported them.
    let (deferred, worker) = common::deferred();
    group.bench_function("mlflow_deferred", |b| {
        tracing::dispatcher::with_default(&mlflow, || {
            deferred.in_scope(|| {
                b.iter_custom(|iters| {
                    let mut traces = 0;
                    let time = in_traces(iters, || {
                        traces += 1;
                        if traces % 5 == 0 {
                            common::settle(&worker);
                        }
                    });
                    // The last, partial batch too, so it is not finalized during the next
                    // sample.
                    worker.force_flush(Duration::from_secs(10)).unwrap();
                    time
                });
            });
        });
    });
    assert_eq!(worker.stats().dropped_queue_full, 0);

    let alone = Dispatch::new(tracing_subscriber::registry());
    group.bench_function("tracing_alone", |b| {
        tracing::dispatcher::with_default(&alone, || {
            b.iter_custom(|iters| in_traces(iters, || {}));
        });
    });
    let filtered = Dispatch::new(
        tracing_subscriber::registry().with(MlflowLayer::new().with_filter(LevelFilter::WARN)),
    );
    group.bench_function("filtered_out", |b| {
        tracing::dispatcher::with_default(&filtered, || {
            capture.run(|| b.iter_custom(|iters| in_traces(iters, || {})));
        });
    });
    assert!(
        capture.exporter().traces().is_empty(),
        "the filtered-out layer records nothing"
    );
    // The cost of tracing-subscriber's per-layer filtering itself: a layer that does nothing,
    // behind the same filter.
    let noop = Dispatch::new(
        tracing_subscriber::registry().with(NoopLayer.with_filter(LevelFilter::WARN)),
    );
    group.bench_function("filtered_out_noop_layer", |b| {
        tracing::dispatcher::with_default(&noop, || {
            b.iter_custom(|iters| in_traces(iters, || {}));
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = layer
}
criterion_main!(benches);
