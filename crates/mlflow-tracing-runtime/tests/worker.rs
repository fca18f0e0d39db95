//! The export worker with test exporters: accounting, overload, failures, lifecycle.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mlflow_tracing_manager::{
    Dispatch, ExportError, ExportItem, LifecycleError, TraceExporter, Tracer, async_trait,
    start_span,
};
use mlflow_tracing_runtime::{ExportWorker, WorkerConfig};

/// Counts exports; sleeps `delay` in each; fails or panics on request.
#[derive(Debug, Default, Clone)]
struct TestExporter {
    exported: Arc<AtomicU64>,
    /// The experiment of every item, batch by batch.
    batches: Arc<std::sync::Mutex<Vec<Vec<String>>>>,
    delay: Duration,
    fail: bool,
    panic: bool,
}

#[async_trait]
impl TraceExporter for TestExporter {
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        tokio::time::sleep(self.delay).await;
        if self.panic {
            panic!("exporter bug");
        }
        if self.fail {
            return Err(ExportError::new("server said 503"));
        }
        self.exported
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let experiments = batch
            .iter()
            .map(|i| match i {
                ExportItem::Trace(t) => t.trace.info.experiment_id().unwrap_or("").to_owned(),
                _ => "span".to_owned(),
            })
            .collect();
        self.batches.lock().unwrap().push(experiments);
        Ok(())
    }
}

fn tracer_with(worker: &ExportWorker) -> Tracer {
    Tracer::builder()
        .with_environment_metadata(false)
        .with_dispatch(Arc::new(worker.clone()))
        .build()
        .unwrap()
}

#[test]
fn every_item_is_exported_failed_or_dropped_and_the_caller_never_waits() {
    let exporter = TestExporter {
        delay: Duration::from_millis(20),
        ..Default::default()
    };
    let config = WorkerConfig::default()
        .with_max_queue_size(10)
        .with_max_concurrent_exports(2);
    let worker = ExportWorker::start(exporter.clone(), config).unwrap();
    let tracer = tracer_with(&worker);
    let started = std::time::Instant::now();
    for _ in 0..100 {
        tracer.in_scope(|| drop(start_span("t").start()));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "100 traces against a 20 ms exporter must not wait for it"
    );
    worker.force_flush(Duration::from_secs(10)).unwrap();
    let stats = worker.stats();
    assert!(stats.dropped_queue_full > 0, "{stats:?}");
    assert_eq!(stats.enqueued + stats.dropped_queue_full, 100);
    assert_eq!(stats.exported, stats.enqueued);
    assert_eq!(exporter.exported.load(Ordering::Relaxed), stats.exported);
    worker.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(
        worker.shutdown(Duration::from_secs(1)),
        Err(LifecycleError::AlreadyShutdown)
    );
    tracer.in_scope(|| drop(start_span("late").start()));
    assert_eq!(worker.stats().dropped_shutdown, 1);
}

#[test]
fn failing_panicking_and_hanging_exporters_are_counted_and_the_worker_survives() {
    for (exporter, timeout) in [
        (
            TestExporter {
                fail: true,
                ..Default::default()
            },
            Duration::from_secs(30),
        ),
        (
            TestExporter {
                panic: true,
                ..Default::default()
            },
            Duration::from_secs(30),
        ),
        (
            TestExporter {
                delay: Duration::from_secs(3600),
                ..Default::default()
            },
            Duration::from_millis(50),
        ),
    ] {
        let config = WorkerConfig::default().with_export_timeout(timeout);
        let worker = ExportWorker::start(exporter, config).unwrap();
        let tracer = tracer_with(&worker);
        for _ in 0..3 {
            tracer.in_scope(|| drop(start_span("t").start()));
        }
        worker.force_flush(Duration::from_secs(10)).unwrap();
        let stats = worker.stats();
        assert_eq!((stats.enqueued, stats.failed, stats.exported), (3, 3, 0));
        worker.shutdown(Duration::from_secs(5)).unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn flush_and_shutdown_work_inside_a_current_thread_runtime() {
    let exporter = TestExporter::default();
    let worker = ExportWorker::start(exporter.clone(), WorkerConfig::default()).unwrap();
    let tracer = tracer_with(&worker);
    tracer.in_scope(|| drop(start_span("t").start()));
    worker.force_flush(Duration::from_secs(5)).unwrap();
    assert_eq!(exporter.exported.load(Ordering::Relaxed), 1);
    worker.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn producers_on_many_threads_are_all_accounted_for() {
    let exporter = TestExporter::default();
    let worker = ExportWorker::start(exporter.clone(), WorkerConfig::default()).unwrap();
    let tracer = tracer_with(&worker);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..50 {
                    tracer.in_scope(|| drop(start_span("t").start()));
                }
            });
        }
    });
    worker.force_flush(Duration::from_secs(10)).unwrap();
    let stats = worker.stats();
    assert_eq!(stats.enqueued + stats.dropped_queue_full, 400);
    assert_eq!(stats.exported, stats.enqueued);
    worker.shutdown(Duration::from_secs(5)).unwrap();
}

fn tracer_for(worker: &ExportWorker, experiment: &str) -> Tracer {
    Tracer::builder()
        .with_environment_metadata(false)
        .with_experiment_id(experiment)
        .with_dispatch(Arc::new(worker.clone()))
        .build()
        .unwrap()
}

/// Waits (up to 5 s) until `cond` holds.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

#[test]
fn batches_go_out_when_full_or_when_the_interval_passes_split_by_destination() {
    let exporter = TestExporter::default();
    let config = WorkerConfig::default().with_batching(4, Duration::from_secs(3600));
    let worker = ExportWorker::start(exporter.clone(), config).unwrap();
    let a = tracer_for(&worker, "1");
    let b = tracer_for(&worker, "2");
    let batches = || exporter.batches.lock().unwrap().clone();
    // Four items fill a batch at once: two destinations, so two exports.
    for tracer in [&a, &b, &a, &b] {
        tracer.in_scope(|| drop(start_span("t").start()));
    }
    assert!(eventually(|| batches().len() == 2));
    assert_eq!(
        batches(),
        [vec!["1", "1"], vec!["2", "2"]],
        "size-triggered, grouped"
    );
    // One item waits for its batch (the interval here is an hour).
    a.in_scope(|| drop(start_span("t").start()));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(batches().len(), 2, "a partial batch waits");
    // Shutdown drains it.
    worker.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(batches().len(), 3);
    assert_eq!(worker.stats().exported, 5);

    // With a short interval the partial batch goes out without any flush.
    let exporter = TestExporter::default();
    let config = WorkerConfig::default().with_batching(100, Duration::from_millis(100));
    let worker = ExportWorker::start(exporter.clone(), config).unwrap();
    tracer_with(&worker).in_scope(|| drop(start_span("t").start()));
    assert!(
        eventually(|| exporter.batches.lock().unwrap().len() == 1),
        "interval-triggered"
    );
    worker.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn full_batches_go_out_whether_the_worker_polls_or_has_parked() {
    // An hour-long interval: only full batches go out, found by polling while traces keep
    // coming, or by a wake-up once the worker has parked.
    let exporter = TestExporter::default();
    let config = WorkerConfig::default().with_batching(2, Duration::from_secs(3600));
    let worker = ExportWorker::start(exporter.clone(), config).unwrap();
    let tracer = tracer_with(&worker);
    let exported = || exporter.exported.load(Ordering::Relaxed);
    for round in 1..=40u64 {
        tracer.in_scope(|| {
            drop(start_span("t").start());
            drop(start_span("t").start());
        });
        assert!(
            eventually(|| exported() == 2 * round),
            "round {round}: {:?}",
            worker.stats()
        );
        // Pauses shorter and longer than the worker's poll: some rounds find it polling,
        // others parked again.
        std::thread::sleep(Duration::from_millis(round % 4 * 4));
    }
    worker.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(exporter.batches.lock().unwrap().len(), 40);
}

#[test]
fn batch_size_one_means_no_batching() {
    let exporter = TestExporter::default();
    let config = WorkerConfig::default().with_batching(1, Duration::from_secs(3600));
    let worker = ExportWorker::start(exporter.clone(), config).unwrap();
    let tracer = tracer_with(&worker);
    tracer.in_scope(|| drop(start_span("t").start()));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        exporter.batches.lock().unwrap().len(),
        1,
        "{:?}",
        worker.stats()
    );
    worker.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn memory_stays_bounded_under_ten_times_overload_and_shutdown_timeouts_are_counted() {
    let exporter = TestExporter {
        delay: Duration::from_millis(200),
        ..Default::default()
    };
    let config = WorkerConfig::default()
        .with_max_queue_size(100)
        .with_max_concurrent_exports(1)
        .with_batching(5, Duration::from_millis(10));
    let worker = ExportWorker::start(exporter, config).unwrap();
    let tracer = tracer_with(&worker);
    for _ in 0..1000 {
        tracer.in_scope(|| drop(start_span("t").start()));
        let s = worker.stats();
        // Held at once: at most the queue, the batches exporting (1 here) and one batch
        // waiting for an export slot.
        assert!(s.enqueued - s.exported - s.failed <= 100 + 2 * 5, "{s:?}");
    }
    let s = worker.stats();
    assert_eq!(s.enqueued + s.dropped_queue_full, 1000);
    assert!(s.dropped_queue_full >= 800, "{s:?}");
    // Too little time to export what is queued: the shortfall is counted.
    assert_eq!(
        worker.shutdown(Duration::from_millis(50)),
        Err(LifecycleError::Timeout(Duration::from_millis(50)))
    );
    let s = worker.stats();
    assert!(s.dropped_shutdown_timeout > 0, "{s:?}");
    assert_eq!(
        s.dropped_shutdown_timeout,
        s.enqueued - s.exported - s.failed
    );
}
