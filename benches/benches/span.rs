//! Span start + end: the SDK next to a bare `opentelemetry_sdk` span, in one run.
//!
//! Every pair records the same information: the bare OpenTelemetry side serializes the same
//! 1 KB inputs and outputs with `serde_json` and sets them as string attributes, the way a user
//! of plain OpenTelemetry would. Child spans are measured inside an open root (a new root every
//! 100 spans, outside the timing); `trace/*` measures a whole one-span trace including its
//! finalization and hand-off to a (discarding) exporter.
//!
//! `cargo xtask bench` prints the ratios; the target is mlflow/1kb ≤ 2 × otel_sdk/1kb.
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark code")]

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mlflow_tracing::export::{Dispatch, ExportItem, LifecycleError};
use mlflow_tracing::{Tracer, start_span};
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use serde::Serialize;

#[derive(Serialize, Clone)]
struct Message {
    role: &'static str,
    content: String,
}

#[derive(Serialize, Clone)]
struct Payload {
    messages: Vec<Message>,
}

/// About 1 KB of JSON.
fn payload() -> Payload {
    let sentence = "The quick brown fox jumps over the lazy dog. ";
    Payload {
        messages: (0..4)
            .map(|i| Message {
                role: if i % 2 == 0 { "user" } else { "assistant" },
                content: sentence.repeat(5),
            })
            .collect(),
    }
}

/// Drops spans at end, like an exporter that costs nothing.
#[derive(Debug)]
struct DropProcessor;

impl SpanProcessor for DropProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        black_box(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Drops finished traces, like an exporter queue that costs nothing.
#[derive(Debug)]
struct Discard;

impl Dispatch for Discard {
    fn dispatch(&self, item: ExportItem) {
        black_box(item);
    }
    fn wants_spans(&self) -> bool {
        false
    }
    fn force_flush(&self, _timeout: Duration) -> Result<(), LifecycleError> {
        Ok(())
    }
    fn shutdown(&self, _timeout: Duration) -> Result<(), LifecycleError> {
        Ok(())
    }
}

/// Spans per trace: a large agent trace.
const SPANS_PER_ROOT: u64 = 100;

/// Times `iters` runs of `child`, inside roots made by `root` (untimed).
fn in_roots<R>(iters: u64, mut root: impl FnMut() -> R, mut child: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = SPANS_PER_ROOT.min(iters - done);
        let r = root();
        let start = Instant::now();
        for _ in 0..n {
            child();
        }
        total += start.elapsed();
        drop(r);
        done += n;
    }
    total
}

#[mlflow_tracing::trace(span_type = "LLM")]
fn traced_llm(request: &Payload) -> Payload {
    request.clone()
}

fn span_start_end(c: &mut Criterion) {
    let input = payload();
    let output = payload();
    assert!(serde_json::to_string(&input).unwrap().len() >= 1000);

    let provider = SdkTracerProvider::builder()
        .with_span_processor(DropProcessor)
        .build();
    let otel = provider.tracer("bench");

    let tracer = Tracer::builder()
        .with_dispatch(Arc::new(Discard))
        .with_environment_metadata(false)
        .build()
        .unwrap();

    let mut group = c.benchmark_group("span");
    group.bench_function("otel_sdk/bare", |b| {
        b.iter_custom(|iters| {
            in_roots(
                iters,
                || Context::new().with_span(otel.start("root")).attach(),
                || drop(black_box(otel.start("child"))),
            )
        });
    });
    group.bench_function("otel_sdk/1kb", |b| {
        b.iter_custom(|iters| {
            in_roots(
                iters,
                || Context::new().with_span(otel.start("root")).attach(),
                || {
                    let mut span = otel.start("child");
                    span.set_attribute(KeyValue::new(
                        "inputs",
                        serde_json::to_string(&input).unwrap(),
                    ));
                    span.set_attribute(KeyValue::new(
                        "outputs",
                        serde_json::to_string(&output).unwrap(),
                    ));
                    span.end();
                },
            )
        });
    });
    group.bench_function("mlflow/bare", |b| {
        b.iter_custom(|iters| {
            in_roots(
                iters,
                || tracer.in_scope(|| start_span("root").start()),
                || drop(black_box(start_span("child").start())),
            )
        });
    });
    group.bench_function("mlflow/1kb", |b| {
        b.iter_custom(|iters| {
            in_roots(
                iters,
                || tracer.in_scope(|| start_span("root").start()),
                || {
                    let span = start_span("child").inputs(&input).start();
                    span.set_outputs(&output);
                },
            )
        });
    });
    group.bench_function("mlflow/macro_1kb", |b| {
        b.iter_custom(|iters| {
            in_roots(
                iters,
                || tracer.in_scope(|| start_span("root").start()),
                || {
                    black_box(traced_llm(&input));
                },
            )
        });
    });
    group.finish();

    let mut group = c.benchmark_group("json");
    group.bench_function("serde_json/1kb", |b| {
        b.iter(|| serde_json::to_string(black_box(&input)).unwrap());
    });
    group.bench_function("mlflow/1kb", |b| {
        b.iter(|| mlflow_tracing::entities::json::to_attribute_json(black_box(&input)).unwrap());
    });
    group.finish();

    let mut group = c.benchmark_group("trace");
    group.bench_function("otel_sdk/1kb", |b| {
        b.iter(|| {
            let mut span = otel.start_with_context("root", &Context::new());
            span.set_attribute(KeyValue::new(
                "inputs",
                serde_json::to_string(&input).unwrap(),
            ));
            span.set_attribute(KeyValue::new(
                "outputs",
                serde_json::to_string(&output).unwrap(),
            ));
            span.end();
        });
    });
    group.bench_function("mlflow/1kb", |b| {
        tracer.in_scope(|| {
            b.iter(|| {
                let span = start_span("root").inputs(&input).start();
                span.set_outputs(&output);
            });
        });
    });
    // As `init` sets it up: the export worker queues the completed trace and finalizes it on
    // its own thread (then a counting exporter drops it), so the root's end costs the caller
    // about what a child's does. The caller's time only: after each batch (5 traces), wait
    // untimed until the worker has exported them, as between a service's requests.
    let (deferred, worker) = common::deferred();
    group.bench_function("mlflow_deferred/1kb", |b| {
        deferred.in_scope(|| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 1..=iters {
                    let start = Instant::now();
                    let span = start_span("root").inputs(&input).start();
                    span.set_outputs(&output);
                    drop(span);
                    total += start.elapsed();
                    if i % 5 == 0 {
                        common::settle(&worker);
                    }
                }
                total
            });
        });
    });
    assert_eq!(worker.stats().dropped_queue_full, 0);
    group.finish();

    // A `#[trace]` call with tracing disabled: no span, the argument never serialized.
    let disabled = Tracer::builder()
        .with_dispatch(Arc::new(Discard))
        .with_environment_metadata(false)
        .with_enabled(false)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("disabled");
    group.bench_function("macro_1kb", |b| {
        disabled.in_scope(|| b.iter(|| black_box(traced_len(black_box(&input)))));
    });
    group.bench_function("plain_call_1kb", |b| {
        b.iter(|| black_box(untraced_len(black_box(&input))));
    });
    group.finish();
}

/// A function whose body costs nothing: what is measured is the tracing around it.
#[mlflow_tracing::trace(span_type = "LLM")]
fn traced_len(request: &Payload) -> usize {
    request.messages.len()
}

#[inline(never)]
fn untraced_len(request: &Payload) -> usize {
    request.messages.len()
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = span_start_end
}
criterion_main!(benches);
