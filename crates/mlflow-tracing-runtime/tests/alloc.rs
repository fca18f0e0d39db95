//! Enqueueing allocates nothing per item beyond the item itself: the queue's storage is
//! allocated in blocks of slots, amortized over many items (counted by `allocation-counter`'s
//! allocator, on this thread only).
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlflow_tracing_manager::{Dispatch, ExportItem, LifecycleError, Tracer, start_span};
use mlflow_tracing_runtime::{ExportWorker, WorkerConfig};

/// Keeps what the tracer dispatches, to enqueue it again later.
#[derive(Debug, Default)]
struct Collect(Mutex<Vec<ExportItem>>);

impl Dispatch for Collect {
    fn wants_spans(&self) -> bool {
        false
    }
    fn dispatch(&self, item: ExportItem) {
        self.0.lock().unwrap().push(item);
    }
    fn force_flush(&self, _: Duration) -> Result<(), LifecycleError> {
        Ok(())
    }
    fn shutdown(&self, _: Duration) -> Result<(), LifecycleError> {
        Ok(())
    }
}

/// Allocations made by this thread while `f` runs.
fn allocations_during(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

#[test]
fn enqueue_allocates_at_most_one_queue_block_per_32_items() {
    let collect = Arc::new(Collect::default());
    let tracer = Tracer::builder()
        .with_environment_metadata(false)
        .with_dispatch(collect.clone())
        .build()
        .unwrap();
    for _ in 0..640 {
        tracer.in_scope(|| drop(start_span("t").start()));
    }
    let mut items = std::mem::take(&mut *collect.0.lock().unwrap());
    assert_eq!(items.len(), 640);

    let exporter = mlflow_tracing_manager::testing::InMemoryExporter::new();
    // Nothing leaves the queue while we count: batches far larger than the items, no interval.
    let config = WorkerConfig::default()
        .with_max_queue_size(1000)
        .with_batching(1000, Duration::from_secs(3600));
    let worker = ExportWorker::start(exporter.clone(), config).unwrap();
    let second_half = items.split_off(320);
    let first = allocations_during(|| {
        for item in items {
            worker.dispatch(item);
        }
    });
    // Drained, the queue's blocks are kept for reuse.
    worker.force_flush(Duration::from_secs(5)).unwrap();
    let second = allocations_during(|| {
        for item in second_half {
            worker.dispatch(item);
        }
    });
    worker.force_flush(Duration::from_secs(5)).unwrap();
    assert_eq!(worker.stats().exported, 640);
    eprintln!("allocations: {first} for the first 320 items, {second} for the next 320");
    assert!(first <= 320 / 32 + 1, "{first} allocations for 320 items");
    assert!(second <= 320 / 32 + 1, "{second} allocations for 320 items");
}
