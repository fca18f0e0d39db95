//! [`ExportWorker`]: the named worker thread, its bounded queue, batching, bounded concurrent
//! exports, flush and shutdown.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mlflow_tracing_entities::TraceLocation;
use mlflow_tracing_manager::{Dispatch, ExportItem, LifecycleError, PendingTrace, TraceExporter};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::config::WorkerConfig;
use crate::stats::{Counters, Failure, WorkerStats};

/// A flush or shutdown request; the worker answers on the channel when it is done.
enum Control {
    Flush(std_mpsc::SyncSender<()>),
    Shutdown(std_mpsc::SyncSender<()>),
}

/// How often the worker looks at the queue itself while traces keep coming.
const POLL: Duration = Duration::from_millis(5);

/// How producers reach the worker. While traces keep coming the worker polls the queue every
/// [`POLL`], so the thread that queues a trace makes no system call; only a worker that has
/// gone idle (`parked`) is woken, when a full batch waits, or anyway when the queue is half
/// full.
struct Wake {
    notify: Notify,
    /// The worker waits to be woken: no poll is due.
    parked: AtomicBool,
    batch_size: usize,
    /// Queued items at which the worker is woken even while it polls.
    half_full: usize,
}

impl Wake {
    /// After an item is queued (`queued` now waiting): wakes the worker when it has to be.
    fn queued(&self, queued: usize) {
        if queued < self.batch_size {
            return;
        }
        // Pairs with the fence in `Worker::park`: either this thread sees `parked`, or the
        // worker sees the item when it looks at the queue before waiting.
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) || queued >= self.half_full {
            self.notify.notify_one();
        }
    }
}

/// What waits in the queue: an item, or a completed trace the worker finalizes.
enum Queued {
    Item(ExportItem),
    Trace(Box<PendingTrace>),
}

impl Queued {
    /// The item to export; a pending trace is finalized here, on the worker.
    fn into_item(self) -> ExportItem {
        match self {
            Queued::Item(item) => item,
            Queued::Trace(trace) => trace.finalize(),
        }
    }
}

struct Inner {
    items: mpsc::Sender<Queued>,
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
    /// Wakes the worker when a full batch is queued and it is idle; never per item.
    wake: Arc<Wake>,
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
pub struct WorkerStartError(#[source] pub(crate) std::io::Error);

impl ExportWorker {
    /// Starts the worker thread for `exporter`.
    ///
    /// # Errors
    /// [`WorkerStartError`] when the thread or its runtime cannot be created.
    pub fn start(
        exporter: impl TraceExporter,
        config: WorkerConfig,
    ) -> Result<Self, WorkerStartError> {
        Self::start_arc(Arc::new(exporter), config)
    }

    /// Starts the worker thread for a shared exporter.
    ///
    /// # Errors
    /// [`WorkerStartError`] when the thread or its runtime cannot be created.
    pub fn start_arc(
        exporter: Arc<dyn TraceExporter>,
        config: WorkerConfig,
    ) -> Result<Self, WorkerStartError> {
        let maintenance: Maintenance = Arc::new(Mutex::new(None));
        let (items_tx, items_rx) = mpsc::channel(config.max_queue_size.max(1));
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        // Timers and I/O: HTTP exporters run their requests on this runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WorkerStartError)?;
        let batch_size = config.max_batch_size.max(1);
        let wake = Arc::new(Wake {
            notify: Notify::new(),
            parked: AtomicBool::new(true),
            batch_size,
            half_full: (config.max_queue_size / 2).max(batch_size),
        });
        let worker = Worker {
            exporter: exporter.clone(),
            config,
            counters: counters.clone(),
            maintenance: maintenance.clone(),
            wake: wake.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("mlflow-tracing-export".into())
            .spawn(move || runtime.block_on(worker.run(items_rx, control_rx)))
            .map_err(WorkerStartError)?;
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
                wake,
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
            mlflow_tracing_manager::notice::visible(|| {
                tracing::warn!(
                    dropped = self.stats().dropped_queue_full,
                    "the MLflow trace export queue is full; traces are being dropped. Raise \
                 MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE or \
                 MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS"
                )
            });
        }
    }

    /// Sends a control message and waits (on this thread) for the worker's answer.
    fn control(
        &self,
        make: impl FnOnce(std_mpsc::SyncSender<()>) -> Control,
        timeout: Duration,
    ) -> Result<(), LifecycleError> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.inner
            .control
            .send(make(tx))
            .map_err(|_| LifecycleError::AlreadyShutdown)?;
        // A std channel: this waits without needing a runtime on this thread.
        match rx.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(LifecycleError::Timeout(timeout)),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(LifecycleError::InternalFailure(
                "the export worker stopped".into(),
            )),
        }
    }
}

impl ExportWorker {
    fn enqueue(&self, item: Queued) {
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
                inner
                    .wake
                    .queued(inner.items.max_capacity() - inner.items.capacity());
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
}

impl Dispatch for ExportWorker {
    fn dispatch(&self, item: ExportItem) {
        self.enqueue(Queued::Item(item));
    }

    /// Queues the trace; the worker finalizes it (previews, token usage, span processors), so
    /// the thread that ended the root span only records.
    fn dispatch_trace(&self, trace: PendingTrace) {
        self.enqueue(Queued::Trace(Box::new(trace)));
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
            mlflow_tracing_manager::notice::visible(|| {
                tracing::warn!(
                    unfinished,
                    "MLflow export worker shutdown timed out; unfinished exports may be lost"
                )
            });
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
    wake: Arc<Wake>,
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
        mut items: mpsc::Receiver<Queued>,
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
        // The queue is read with `try_recv` only, so producers never wake this thread per item
        // (OpenTelemetry's BatchSpanProcessor works the same way). An idle worker is woken when
        // a full batch waits; from then on it polls every `POLL` while traces keep coming, and
        // parks again after a poll that finds none new (see `Wake`).
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut polling = false;
        let mut seen = 0;
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
                                mlflow_tracing_manager::notice::visible(|| tracing::warn!("MLflow exporter flush failed: {e}"));
                            }
                            let _ = reply.try_send(());
                            if closed {
                                return;
                            }
                        }
                        Control::Shutdown(reply) => {
                            if let Err(e) = self.exporter.shutdown().await {
                                mlflow_tracing_manager::notice::visible(|| tracing::warn!("MLflow exporter shutdown failed: {e}"));
                            }
                            let _ = reply.try_send(());
                            return;
                        }
                    }
                }
                () = self.wake.notify.notified() => {
                    if !polling {
                        polling = true;
                        self.wake.parked.store(false, Ordering::Relaxed);
                        seen = self.counters.enqueued.load(Ordering::Relaxed);
                        poll.reset();
                    }
                    self.export_full(&mut items, batch_size, &permits, &mut running).await;
                }
                _ = poll.tick(), if polling => {
                    self.export_full(&mut items, batch_size, &permits, &mut running).await;
                    let enqueued = self.counters.enqueued.load(Ordering::Relaxed);
                    if enqueued == seen && items.is_closed() {
                        // Every handle is gone without a shutdown: export the rest, finish
                        // what runs, then stop (as the interval would, later).
                        self.export_queued(&mut items, usize::MAX, batch_size, &permits, &mut running).await;
                        while let Some(done) = running.join_next().await {
                            self.record(done);
                        }
                        return;
                    }
                    if enqueued == seen {
                        if self.park(&items, batch_size) {
                            polling = false;
                        } else {
                            self.export_full(&mut items, batch_size, &permits, &mut running).await;
                        }
                    }
                    seen = enqueued;
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
                        mlflow_tracing_manager::notice::visible(|| tracing::warn!("MLflow tracing maintenance panicked"));
                    }
                }
            }
        }
    }

    /// Exports the full batches waiting; the rest waits for the interval (or more traces).
    async fn export_full(
        &self,
        items: &mut mpsc::Receiver<Queued>,
        batch_size: usize,
        permits: &Arc<Semaphore>,
        running: &mut Running,
    ) {
        let full = items.len() / batch_size * batch_size;
        if full > 0 {
            self.export_queued(items, full, batch_size, permits, running)
                .await;
        }
    }

    /// Marks the worker parked (producers wake it from now on); false, and not parked, when a
    /// full batch came in meanwhile.
    fn park(&self, items: &mpsc::Receiver<Queued>, batch_size: usize) -> bool {
        self.wake.parked.store(true, Ordering::Relaxed);
        // Pairs with the fence in `Wake::queued`.
        fence(Ordering::SeqCst);
        if items.len() >= batch_size {
            self.wake.parked.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Takes up to `max` queued items and exports them in batches; true when the queue is
    /// closed (every producer handle dropped).
    async fn export_queued(
        &self,
        items: &mut mpsc::Receiver<Queued>,
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
                Ok(queued) => {
                    taken += 1;
                    // Finalizing runs user span processors (their panics are caught) and the
                    // trace rules; a panic past those fails this trace only, never the worker.
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        queued.into_item()
                    })) {
                        Ok(item) => batch.push(item),
                        Err(payload) => self.record((
                            1,
                            Err(Failure::all(format!(
                                "finalizing the trace panicked: {}",
                                mlflow_tracing_manager::panic_message(payload.as_ref())
                            ))),
                        )),
                    }
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
        // meanwhile so the set stays small. An exporter that now exports locally (its spool)
        // needs no slot: checked again every 50 ms while the slots are held.
        let permit = loop {
            if let Ok(p) = permits.clone().try_acquire_owned() {
                break Some(p);
            }
            if self.exporter.exports_locally() {
                break None;
            }
            match tokio::time::timeout(Duration::from_millis(50), running.join_next()).await {
                Ok(Some(done)) => self.record(done),
                Ok(None) => match permits.clone().acquire_owned().await {
                    Ok(p) => break Some(p),
                    Err(_) => return,
                },
                Err(_) => {}
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
