//! The export runtime of MLflow Tracing for Rust: the only crate that owns threads.
//!
//! [`ExportWorker`] is a [`Dispatch`](mlflow_tracing_manager::Dispatch): the trace manager hands
//! it finished traces (and spans) with `Dispatch::dispatch`, which never blocks. Items go into a bounded queue; a named worker
//! thread owning a small current-thread tokio runtime takes them out and runs the exporter, at most
//! `max_concurrent_exports` at a time, each export under a timeout. A full queue drops the item,
//! counts it and warns at most once per 30 s. The worker never borrows the user's runtime, so it
//! works from sync code, `#[tokio::main]` and current-thread runtimes alike.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use mlflow_tracing_manager::{Dispatch as _, Tracer, start_span, testing::InMemoryExporter};
//! use mlflow_tracing_runtime::{ExportWorker, WorkerConfig};
//!
//! let exporter = InMemoryExporter::new();
//! let worker = ExportWorker::start(exporter.clone(), WorkerConfig::default())?;
//! let tracer = Tracer::builder().with_dispatch(Arc::new(worker.clone())).build()?;
//! tracer.in_scope(|| drop(start_span("work").start()));
//! worker.force_flush(Duration::from_secs(5))?;
//! assert_eq!(exporter.traces().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Items are batched: full batches of `max_batch_size` go out as soon as the worker sees them,
//! the rest every `max_batch_interval`, each split by destination (trace location); flush and
//! shutdown drain the queue. Producers never wake the worker for a single item: an idle worker
//! is woken when a full batch waits, and while traces keep coming it polls the queue every 5 ms
//! instead, so queueing a trace makes no system call.
#![doc(test(attr(deny(warnings))))]

mod config;
mod fanout;
#[cfg(feature = "signals")]
mod signals;
mod stats;
mod sync;
mod worker;

pub use config::{
    MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS, MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE,
    MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE, MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS,
    MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT, MLFLOW_ENABLE_ASYNC_TRACE_LOGGING, WorkerConfig,
    async_logging_enabled,
};
pub use fanout::FanOut;
#[cfg(feature = "signals")]
pub use signals::{SignalWatch, on_terminate};
pub use stats::WorkerStats;
pub use sync::SyncDispatch;
pub use worker::{ExportWorker, WorkerStartError};
