//! `SyncDispatch`: exports on the caller's thread, from sync code and from inside runtimes.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlflow_tracing_manager::{
    Dispatch, ExportError, ExportItem, LifecycleError, TraceExporter, Tracer, async_trait,
    start_span,
};
use mlflow_tracing_runtime::SyncDispatch;

/// Records the thread each export ran on; sleeps on tokio's timer (so it needs a runtime).
#[derive(Debug, Default, Clone)]
struct ThreadRecorder {
    threads: Arc<Mutex<Vec<String>>>,
    delay: Duration,
    fail: bool,
    panic: bool,
}

#[async_trait]
impl TraceExporter for ThreadRecorder {
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        tokio::time::sleep(self.delay).await;
        if self.panic {
            panic!("exporter bug");
        }
        if self.fail {
            return Err(ExportError::new("server said 503"));
        }
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        self.threads
            .lock()
            .unwrap()
            .extend(batch.iter().map(|_| name.clone()));
        Ok(())
    }
}

fn tracer_with(dispatch: &Arc<SyncDispatch>) -> Tracer {
    Tracer::builder()
        .with_environment_metadata(false)
        .with_dispatch(dispatch.clone())
        .build()
        .unwrap()
}

#[test]
fn exports_before_the_root_span_end_returns_on_the_callers_thread() {
    let exporter = ThreadRecorder {
        delay: Duration::from_millis(30),
        ..Default::default()
    };
    let sync =
        Arc::new(SyncDispatch::new(Arc::new(exporter.clone()), Duration::from_secs(5)).unwrap());
    let tracer = tracer_with(&sync);
    let caller = std::thread::Builder::new()
        .name("caller".into())
        .spawn({
            let tracer = tracer.clone();
            move || {
                let started = Instant::now();
                tracer.in_scope(|| drop(start_span("t").start()));
                started.elapsed()
            }
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(
        caller >= Duration::from_millis(30),
        "the caller waited for the export"
    );
    assert_eq!(*exporter.threads.lock().unwrap(), ["caller"]);
    let stats = sync.stats();
    assert_eq!((stats.enqueued, stats.exported, stats.failed), (1, 1, 0));
    sync.shutdown(Duration::from_secs(1)).unwrap();
    assert_eq!(
        sync.shutdown(Duration::from_secs(1)),
        Err(LifecycleError::AlreadyShutdown)
    );
    tracer.in_scope(|| drop(start_span("late").start()));
    assert_eq!(sync.stats().dropped_shutdown, 1);
}

#[test]
fn works_inside_multi_thread_and_current_thread_runtimes_and_drops_there() {
    for multi in [true, false] {
        let exporter = ThreadRecorder::default();
        let sync = Arc::new(
            SyncDispatch::new(Arc::new(exporter.clone()), Duration::from_secs(5)).unwrap(),
        );
        let tracer = tracer_with(&sync);
        let runtime = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .unwrap();
        runtime.block_on(async move {
            for _ in 0..3 {
                tracer.in_scope(|| drop(start_span("t").start()));
            }
            assert_eq!(
                exporter.threads.lock().unwrap().len(),
                3,
                "exported before returning"
            );
            let stats = sync.stats();
            assert_eq!((stats.enqueued, stats.exported), (3, 3));
            sync.force_flush(Duration::from_secs(1)).unwrap();
            sync.shutdown(Duration::from_secs(1)).unwrap();
            // The last handles (and the dispatch's own runtime) are dropped inside this
            // runtime: no "cannot drop a runtime in a context where blocking is not allowed".
            drop(tracer);
            drop(sync);
        });
    }
}

#[test]
fn failing_panicking_and_hanging_exporters_are_counted_and_never_reach_the_caller() {
    for exporter in [
        ThreadRecorder {
            fail: true,
            ..Default::default()
        },
        ThreadRecorder {
            panic: true,
            ..Default::default()
        },
        ThreadRecorder {
            delay: Duration::from_secs(3600),
            ..Default::default()
        },
    ] {
        let sync =
            Arc::new(SyncDispatch::new(Arc::new(exporter), Duration::from_millis(50)).unwrap());
        let tracer = tracer_with(&sync);
        for _ in 0..2 {
            tracer.in_scope(|| drop(start_span("t").start()));
        }
        let stats = sync.stats();
        assert_eq!((stats.enqueued, stats.exported, stats.failed), (2, 0, 2));
        // Still usable after a panic.
        sync.force_flush(Duration::from_secs(1)).unwrap();
    }
}
