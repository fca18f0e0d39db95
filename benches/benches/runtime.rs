//! The export runtime: enqueue cost (uncontended and with a second producer thread) and batcher
//! throughput, with an exporter that does nothing. Targets: enqueue ≤ 200 ns (`cargo xtask
//! bench` checks it).
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark code")]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mlflow_tracing::export::{
    Dispatch, ExportError, ExportItem, ExportWorker, TraceExporter, WorkerConfig, async_trait,
};
use mlflow_tracing::start_span;
use mlflow_tracing::testing::Capture;

#[derive(Debug)]
struct NoopExporter;

#[async_trait]
impl TraceExporter for NoopExporter {
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        black_box(batch);
        Ok(())
    }
}

/// A finished one-span trace as the processor hands it over.
fn item() -> ExportItem {
    let capture = Capture::new();
    capture.run(|| drop(start_span("bench").inputs(&"question").start()));
    capture.exporter().items().remove(0)
}

fn runtime(c: &mut Criterion) {
    let item = item();
    let config = WorkerConfig::default().with_max_queue_size(30_000);
    let worker = ExportWorker::start(NoopExporter, config).unwrap();

    let mut group = c.benchmark_group("runtime");
    // Enqueue cost with room in the queue: chunks of 10,000 items, the queue drained between
    // chunks outside the timing (a full queue measures dropping, not enqueueing).
    group.bench_function("enqueue", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(10_000);
                let items: Vec<ExportItem> = (0..n).map(|_| item.clone()).collect();
                let start = Instant::now();
                for i in items {
                    worker.dispatch(i);
                }
                total += start.elapsed();
                worker.force_flush(Duration::from_secs(60)).unwrap();
                done += n;
            }
            total
        });
    });
    group.bench_function("enqueue_2_threads", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(10_000);
                let stop = Arc::new(AtomicBool::new(false));
                let other = {
                    let (worker, item, stop) = (worker.clone(), item.clone(), stop.clone());
                    std::thread::spawn(move || {
                        for _ in 0..10_000 {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            worker.dispatch(item.clone());
                        }
                    })
                };
                let items: Vec<ExportItem> = (0..n).map(|_| item.clone()).collect();
                let start = Instant::now();
                for i in items {
                    worker.dispatch(i);
                }
                total += start.elapsed();
                stop.store(true, Ordering::Relaxed);
                other.join().unwrap();
                worker.force_flush(Duration::from_secs(60)).unwrap();
                done += n;
            }
            total
        });
    });
    group.bench_function("batcher_throughput_per_item", |b| {
        b.iter_custom(|iters| {
            let items: Vec<ExportItem> = (0..iters).map(|_| item.clone()).collect();
            let start = Instant::now();
            for i in items {
                worker.dispatch(i);
            }
            worker.force_flush(Duration::from_secs(60)).unwrap();
            start.elapsed()
        });
    });
    group.finish();
    worker.shutdown(Duration::from_secs(10)).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = runtime
}
criterion_main!(benches);
