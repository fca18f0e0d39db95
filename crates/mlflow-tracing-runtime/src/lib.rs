//! The export runtime of MLflow Tracing for Rust: the only crate that owns threads.
//!
//! [`ExportWorker`] is a [`Dispatch`]: the span processor hands it finished traces (and spans)
//! with [`Dispatch::dispatch`], which never blocks. Items go into a bounded queue; a named worker
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
//! Items are batched: full batches of `max_batch_size` go out as soon as they are queued, the
//! rest every `max_batch_interval`, each split by destination (trace location); flush and
//! shutdown drain the queue. Producers never wake the worker for a single item.
#![doc(test(attr(deny(warnings))))]

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mlflow_tracing_entities::TraceLocation;
use mlflow_tracing_manager::{
    ConfigError, Dispatch, ExportItem, LifecycleError, TraceExporter, read_env, read_env_bool,
};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

mod sync;
pub use sync::SyncDispatch;

/// Settings of an [`ExportWorker`] (MLflow's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Capacity of the queue (`MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE`, 1000).
    pub max_queue_size: usize,
    /// Exports running at once (`MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS`, 10).
    pub max_concurrent_exports: usize,
    /// Time limit of one export (`MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT`, 500 s: long enough
    /// for the HTTP client's own retries and backoff, as MLflow allows StartTraceV3).
    pub export_timeout: Duration,
    /// Items per export (`MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE`, 5); 1 means no
    /// batching.
    pub max_batch_size: usize,
    /// Longest wait of a queued item for its batch to fill
    /// (`MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS`, 5000 ms).
    pub max_batch_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_queue_size: 1000,
            max_concurrent_exports: 10,
            export_timeout: Duration::from_secs(500),
            max_batch_size: 5,
            max_batch_interval: Duration::from_millis(5000),
        }
    }
}

/// `MLFLOW_ENABLE_ASYNC_TRACE_LOGGING`: whether exports go through the worker (default true);
/// `false` exports on the caller's thread, as MLflow does (slow).
pub const MLFLOW_ENABLE_ASYNC_TRACE_LOGGING: &str = "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING";
/// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE`.
pub const MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE: &str =
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE";
/// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS`.
pub const MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS: &str = "MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS";

/// `MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT` (seconds): the time limit of one export.
pub const MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT: &str =
    "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT";

/// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE`.
pub const MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE: &str =
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE";
/// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS`.
pub const MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS: &str =
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS";

/// Whether async export is on (`MLFLOW_ENABLE_ASYNC_TRACE_LOGGING`; default true, except in an
/// evcxr notebook kernel, where each trace is exported before the span that ends it returns: the
/// notebook display loads the trace from the server, and the kernel exits without running
/// destructors, so nothing may wait in a queue).
///
/// # Errors
/// [`ConfigError`] when the variable is not a boolean.
pub fn async_logging_enabled() -> Result<bool, ConfigError> {
    Ok(read_env_bool(MLFLOW_ENABLE_ASYNC_TRACE_LOGGING)?
        .unwrap_or(!mlflow_tracing_manager::process_global::in_evcxr()))
}

impl WorkerConfig {
    /// MLflow's defaults overridden by `MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE` and
    /// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS`.
    ///
    /// # Errors
    /// [`ConfigError`] when a variable does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(n) = read_env(
            MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE,
            "positive integer",
        )? {
            config.max_queue_size = n;
        }
        if let Some(n) = read_env(MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS, "positive integer")? {
            config.max_concurrent_exports = n;
        }
        if let Some(n) = read_env(
            MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE,
            "positive integer",
        )? {
            config.max_batch_size = n;
        }
        if let Some(secs) = read_env::<u64>(
            MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT,
            "integer (seconds)",
        )? {
            config.export_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(ms) = read_env(
            MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS,
            "integer (ms)",
        )? {
            config.max_batch_interval = Duration::from_millis(ms);
        }
        Ok(config)
    }

    /// Sets [`WorkerConfig::max_queue_size`].
    #[must_use]
    pub fn with_max_queue_size(mut self, n: usize) -> Self {
        self.max_queue_size = n;
        self
    }
    /// Sets [`WorkerConfig::max_concurrent_exports`].
    #[must_use]
    pub fn with_max_concurrent_exports(mut self, n: usize) -> Self {
        self.max_concurrent_exports = n;
        self
    }
    /// Sets [`WorkerConfig::max_batch_size`] and [`WorkerConfig::max_batch_interval`].
    #[must_use]
    pub fn with_batching(mut self, size: usize, interval: Duration) -> Self {
        self.max_batch_size = size;
        self.max_batch_interval = interval;
        self
    }
    /// Sets [`WorkerConfig::export_timeout`].
    #[must_use]
    pub fn with_export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = timeout;
        self
    }
}

/// Counters of an [`ExportWorker`]. `enqueued = exported + failed + in flight`; items dropped
/// never entered the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Items accepted into the queue.
    pub enqueued: u64,
    /// Items the exporter accepted.
    pub exported: u64,
    /// Items whose export failed, panicked or timed out.
    pub failed: u64,
    /// Items dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Items dropped because the worker was shut down.
    pub dropped_shutdown: u64,
    /// Items still queued or exporting when `shutdown` ran out of time (lost if the process
    /// exits now).
    pub dropped_shutdown_timeout: u64,
}

#[derive(Default)]
struct Counters {
    enqueued: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_shutdown: AtomicU64,
    dropped_shutdown_timeout: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WorkerStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerStats {
            enqueued: get(&self.enqueued),
            exported: get(&self.exported),
            failed: get(&self.failed),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_shutdown: get(&self.dropped_shutdown),
            dropped_shutdown_timeout: get(&self.dropped_shutdown_timeout),
        }
    }

    /// Counts the outcome of one export of `n` items (a failure is also logged).
    fn record(&self, n: u64, result: Result<(), Failure>) {
        match result {
            Ok(()) => {
                self.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(Failure { message, items }) => {
                let failed = items.map_or(n, |k| k.min(n));
                self.failed.fetch_add(failed, Ordering::Relaxed);
                self.exported.fetch_add(n - failed, Ordering::Relaxed);
                tracing::warn!("failed to export {failed} of {n} MLflow trace item(s): {message}");
            }
        }
    }
}

/// A failed export: why, and how many of its items failed when not all did.
struct Failure {
    message: String,
    items: Option<u64>,
}

impl Failure {
    fn all(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            items: None,
        }
    }
}

enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

struct Inner {
    items: mpsc::Sender<ExportItem>,
    control: mpsc::UnboundedSender<Control>,
    counters: Arc<Counters>,
    wants_spans: bool,
    shut_down: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    started: Instant,
    /// ms since `started` of the last queue-full warning (+1; 0 = never).
    last_full_warning_ms: AtomicU64,
    exporter_name: String,
    maintenance: Maintenance,
    /// Signalled when a full batch is queued; the worker is not woken per item.
    batch_ready: Arc<Notify>,
    batch_size: usize,
}

/// Work the worker runs once a second (the tracer's timeout halting and buffer expiry).
type Maintenance = Arc<Mutex<Option<Box<dyn Fn() + Send>>>>;

/// A worker thread behind a bounded queue; cheap to clone (an `Arc`). See the crate docs.
#[derive(Clone)]
pub struct ExportWorker {
    inner: Arc<Inner>,
}

impl fmt::Debug for ExportWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportWorker")
            .field("exporter", &self.inner.exporter_name)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The worker could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the MLflow export worker: {0}")]
pub struct StartError(#[source] std::io::Error);

impl ExportWorker {
    /// Starts the worker thread for `exporter`.
    ///
    /// # Errors
    /// [`StartError`] when the thread or its runtime cannot be created.
    pub fn start(exporter: impl TraceExporter, config: WorkerConfig) -> Result<Self, StartError> {
        Self::start_arc(Arc::new(exporter), config)
    }

    /// Starts the worker thread for a shared exporter.
    ///
    /// # Errors
    /// [`StartError`] when the thread or its runtime cannot be created.
    pub fn start_arc(
        exporter: Arc<dyn TraceExporter>,
        config: WorkerConfig,
    ) -> Result<Self, StartError> {
        let maintenance: Maintenance = Arc::new(Mutex::new(None));
        let (items_tx, items_rx) = mpsc::channel(config.max_queue_size.max(1));
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        // Timers and I/O: HTTP exporters run their requests on this runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError)?;
        let batch_ready = Arc::new(Notify::new());
        let batch_size = config.max_batch_size.max(1);
        let worker = Worker {
            exporter: exporter.clone(),
            config,
            counters: counters.clone(),
            maintenance: maintenance.clone(),
            batch_ready: batch_ready.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("mlflow-tracing-export".into())
            .spawn(move || runtime.block_on(worker.run(items_rx, control_rx)))
            .map_err(StartError)?;
        Ok(ExportWorker {
            inner: Arc::new(Inner {
                items: items_tx,
                control: control_tx,
                counters,
                wants_spans: exporter.wants_spans(),
                shut_down: AtomicBool::new(false),
                thread: Mutex::new(Some(thread)),
                started: Instant::now(),
                last_full_warning_ms: AtomicU64::new(0),
                exporter_name: format!("{exporter:?}"),
                maintenance,
                batch_ready,
                batch_size,
            }),
        })
    }

    /// Runs `task` on the worker thread once a second until shutdown (the facade passes the
    /// tracer's `run_maintenance`, so overdue traces are halted even when the program is idle).
    pub fn set_maintenance(&self, task: impl Fn() + Send + 'static) {
        *self
            .inner
            .maintenance
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(task));
    }

    /// The counters now.
    pub fn stats(&self) -> WorkerStats {
        self.inner.counters.snapshot()
    }

    fn warn_queue_full(&self) {
        let inner = &self.inner;
        let now = inner.started.elapsed().as_millis() as u64 + 1;
        let last = inner.last_full_warning_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 30_000)
            && inner
                .last_full_warning_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped = self.stats().dropped_queue_full,
                "the MLflow trace export queue is full; traces are being dropped. Raise \
                 MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE or \
                 MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS"
            );
        }
    }

    /// Sends a control message and waits (on this thread) for the worker's answer.
    fn control(
        &self,
        make: impl FnOnce(oneshot::Sender<()>) -> Control,
        timeout: Duration,
    ) -> Result<(), LifecycleError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .control
            .send(make(tx))
            .map_err(|_| LifecycleError::AlreadyShutdown)?;
        // A std channel would do as well; this waits without needing a runtime on this thread.
        let deadline = Instant::now() + timeout;
        let mut rx = rx;
        loop {
            match rx.try_recv() {
                Ok(()) => return Ok(()),
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(LifecycleError::InternalFailure(
                        "the export worker stopped".into(),
                    ));
                }
                Err(oneshot::error::TryRecvError::Empty) => {
                    if Instant::now() >= deadline {
                        return Err(LifecycleError::Timeout(timeout));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

impl Dispatch for ExportWorker {
    fn dispatch(&self, item: ExportItem) {
        let inner = &self.inner;
        if inner.shut_down.load(Ordering::Acquire) {
            inner
                .counters
                .dropped_shutdown
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        match inner.items.try_send(item) {
            Ok(()) => {
                inner.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                let queued = inner.items.max_capacity() - inner.items.capacity();
                if queued >= inner.batch_size {
                    inner.batch_ready.notify_one();
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                inner
                    .counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                self.warn_queue_full();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                inner
                    .counters
                    .dropped_shutdown
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn wants_spans(&self) -> bool {
        self.inner.wants_spans
    }

    fn force_flush(&self, timeout: Duration) -> Result<(), LifecycleError> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(LifecycleError::AlreadyShutdown);
        }
        self.control(Control::Flush, timeout)
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), LifecycleError> {
        if self.inner.shut_down.swap(true, Ordering::AcqRel) {
            return Err(LifecycleError::AlreadyShutdown);
        }
        let result = self.control(Control::Shutdown, timeout);
        if let Err(LifecycleError::Timeout(_)) = result {
            let s = self.stats();
            let unfinished = s.enqueued.saturating_sub(s.exported + s.failed);
            self.inner
                .counters
                .dropped_shutdown_timeout
                .fetch_add(unfinished, Ordering::Relaxed);
            tracing::warn!(
                unfinished,
                "MLflow export worker shutdown timed out; unfinished exports may be lost"
            );
        }
        // The task may hold the tracer that holds this worker: break the cycle.
        self.inner
            .maintenance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if result.is_ok() {
            let handle = self
                .inner
                .thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
        let stats = self.stats();
        tracing::info!(
            enqueued = stats.enqueued,
            exported = stats.exported,
            failed = stats.failed,
            dropped = stats.dropped_queue_full + stats.dropped_shutdown,
            "MLflow export worker shut down"
        );
        result
    }
}

/// The state owned by the worker thread.
struct Worker {
    exporter: Arc<dyn TraceExporter>,
    config: WorkerConfig,
    counters: Arc<Counters>,
    maintenance: Maintenance,
    batch_ready: Arc<Notify>,
}

/// The destination of an item: the location of its trace.
fn destination(item: &ExportItem) -> Option<&TraceLocation> {
    match item {
        ExportItem::Span(s) => Some(&s.location),
        ExportItem::Trace(t) => Some(&t.trace.info.trace_location),
        _ => None,
    }
}

/// Splits a batch into one batch per destination, keeping the order within each.
fn group_by_destination(batch: Vec<ExportItem>) -> Vec<Vec<ExportItem>> {
    let mut groups: Vec<(Option<TraceLocation>, Vec<ExportItem>)> = Vec::new();
    for item in batch {
        let key = destination(&item).cloned();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, items)) => items.push(item),
            None => groups.push((key, vec![item])),
        }
    }
    groups.into_iter().map(|(_, items)| items).collect()
}

/// Exports in flight, with the number of items each carries (so a panicked export still counts
/// every item it held as failed).
#[derive(Default)]
struct Running {
    set: JoinSet<Result<(), Failure>>,
    sizes: std::collections::HashMap<tokio::task::Id, u64>,
}

impl Running {
    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn spawn(
        &mut self,
        items: u64,
        export: impl Future<Output = Result<(), Failure>> + Send + 'static,
    ) {
        let handle = self.set.spawn(export);
        self.sizes.insert(handle.id(), items);
    }

    /// The next finished export: its item count and outcome (a panic is a failure).
    async fn join_next(&mut self) -> Option<(u64, Result<(), Failure>)> {
        let (id, result) = match self.set.join_next_with_id().await? {
            Ok((id, result)) => (id, result),
            Err(join) => (
                join.id(),
                Err(Failure::all(format!("the exporter panicked: {join}"))),
            ),
        };
        Some((self.sizes.remove(&id).unwrap_or(1), result))
    }
}

impl Worker {
    async fn run(
        self,
        mut items: mpsc::Receiver<ExportItem>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let permits = Arc::new(Semaphore::new(self.config.max_concurrent_exports.max(1)));
        let mut running = Running::default();
        let second = Duration::from_secs(1);
        let mut maintenance =
            tokio::time::interval_at(tokio::time::Instant::now() + second, second);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let period = self.config.max_batch_interval.max(Duration::from_millis(1));
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let batch_size = self.config.max_batch_size.max(1);
        // The queue is read with `try_recv` only, so producers never wake this thread per item:
        // they signal `batch_ready` when a full batch waits (OpenTelemetry's BatchSpanProcessor
        // works the same way).
        loop {
            tokio::select! {
                biased;
                Some(msg) = control.recv() => {
                    // Everything enqueued before the request is in the queue: export it all.
                    let closed = self.export_queued(&mut items, usize::MAX, batch_size, &permits, &mut running).await;
                    while let Some(done) = running.join_next().await {
                        self.record(done);
                    }
                    match msg {
                        Control::Flush(reply) => {
                            if let Err(e) = self.exporter.force_flush().await {
                                tracing::warn!("MLflow exporter flush failed: {e}");
                            }
                            let _ = reply.send(());
                            if closed {
                                return;
                            }
                        }
                        Control::Shutdown(reply) => {
                            if let Err(e) = self.exporter.shutdown().await {
                                tracing::warn!("MLflow exporter shutdown failed: {e}");
                            }
                            let _ = reply.send(());
                            return;
                        }
                    }
                }
                () = self.batch_ready.notified() => {
                    // Only full batches; the rest waits for the interval.
                    let full = items.len() / batch_size * batch_size;
                    self.export_queued(&mut items, full, batch_size, &permits, &mut running).await;
                }
                _ = interval.tick() => {
                    if self.export_queued(&mut items, usize::MAX, batch_size, &permits, &mut running).await {
                        // Every handle is gone without a shutdown: finish what runs, then stop.
                        while let Some(done) = running.join_next().await {
                            self.record(done);
                        }
                        return;
                    }
                }
                Some(done) = running.join_next(), if !running.is_empty() => {
                    self.record(done);
                }
                _ = maintenance.tick() => {
                    let task = self.maintenance.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(task) = task.as_ref()
                        && std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)).is_err()
                    {
                        tracing::warn!("MLflow tracing maintenance panicked");
                    }
                }
            }
        }
    }

    /// Takes up to `max` queued items and exports them in batches; true when the queue is
    /// closed (every producer handle dropped).
    async fn export_queued(
        &self,
        items: &mut mpsc::Receiver<ExportItem>,
        max: usize,
        batch_size: usize,
        permits: &Arc<Semaphore>,
        running: &mut Running,
    ) -> bool {
        let mut taken = 0;
        let mut batch = Vec::with_capacity(batch_size);
        let mut closed = false;
        while taken < max {
            match items.try_recv() {
                Ok(item) => {
                    taken += 1;
                    batch.push(item);
                    if batch.len() == batch_size {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                        self.export_batches(full, permits, running).await;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        self.export_batches(batch, permits, running).await;
        closed
    }

    /// Exports a batch, one export per destination.
    async fn export_batches(
        &self,
        batch: Vec<ExportItem>,
        permits: &Arc<Semaphore>,
        running: &mut Running,
    ) {
        if batch.is_empty() {
            return;
        }
        for group in group_by_destination(batch) {
            self.spawn_export(group, permits, running).await;
        }
    }

    async fn spawn_export(
        &self,
        batch: Vec<ExportItem>,
        permits: &Arc<Semaphore>,
        running: &mut Running,
    ) {
        // Waiting for a permit bounds concurrency; results of finished exports are recorded
        // meanwhile so the set stays small.
        let permit = loop {
            if let Ok(p) = permits.clone().try_acquire_owned() {
                break p;
            }
            match running.join_next().await {
                Some(done) => self.record(done),
                None => match permits.clone().acquire_owned().await {
                    Ok(p) => break p,
                    Err(_) => return,
                },
            }
        };
        let exporter = self.exporter.clone();
        let timeout = self.config.export_timeout;
        let n = batch.len() as u64;
        running.spawn(n, async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, exporter.export(batch)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Failure {
                    message: e.to_string(),
                    items: e.failed_items(),
                }),
                Err(_) => Err(Failure::all(format!("timed out after {timeout:?}"))),
            }
        });
    }

    fn record(&self, (n, result): (u64, Result<(), Failure>)) {
        self.counters.record(n, result);
    }
}
