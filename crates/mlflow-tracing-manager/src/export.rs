//! The exporter contract: what leaves the trace manager, and who receives it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{ExportError, LifecycleError};
use crate::finish::PendingTrace;
use crate::stats::Stats;

pub use crate::items::{ExportItem, SpanItem, TraceItem};

/// The one trait every exporter implements: the MLflow tracking server, the inference-table
/// buffer, Unity Catalog tables and the in-memory test exporter.
///
/// Exporters are called from the export worker (never from the thread that ended the span, unless
/// the inline dispatcher is chosen), one batch at a time. They report failures through
/// [`ExportError`]; the caller counts and logs them and never retries at this layer.
#[async_trait::async_trait]
pub trait TraceExporter: Send + Sync + fmt::Debug + 'static {
    /// Exports a batch, in the order items were produced (a trace's spans before the trace).
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError>;

    /// Whether [`ExportItem::Span`] items are wanted. Read once, when the tracer is built.
    fn wants_spans(&self) -> bool {
        false
    }

    /// Whether an export would now complete without the network (a destination writing to a
    /// local spool while its server is down): the export runtime then runs it without waiting
    /// for a free export slot, so a queue stuck behind a hung server still drains.
    fn exports_locally(&self) -> bool {
        false
    }

    /// Exports whatever the exporter itself still buffers.
    async fn force_flush(&self) -> Result<(), ExportError> {
        Ok(())
    }

    /// Flushes and releases resources; later exports may fail.
    async fn shutdown(&self) -> Result<(), ExportError> {
        Ok(())
    }
}

/// A shared exporter is an exporter (so one can be kept for its counters while the runtime
/// runs it).
#[async_trait::async_trait]
impl<T: TraceExporter + ?Sized> TraceExporter for Arc<T> {
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        (**self).export(batch).await
    }

    fn wants_spans(&self) -> bool {
        (**self).wants_spans()
    }

    fn exports_locally(&self) -> bool {
        (**self).exports_locally()
    }

    async fn force_flush(&self) -> Result<(), ExportError> {
        (**self).force_flush().await
    }

    async fn shutdown(&self) -> Result<(), ExportError> {
        (**self).shutdown().await
    }
}

/// Where the span processor hands finished items: the seam between the trace manager and the
/// export runtime. Implementations must never block the caller of [`Dispatch::dispatch`]; a full
/// queue drops and counts.
pub trait Dispatch: Send + Sync + fmt::Debug + 'static {
    /// Hands over one item.
    fn dispatch(&self, item: ExportItem);
    /// Hands over a completed trace still to be finalized (its spans through MLflow's end rules
    /// and the user's span processors, previews and token usage computed). The default
    /// finalizes it here, on the thread that completed the trace, and calls
    /// [`Dispatch::dispatch`]; a dispatch with a thread of its own (the export runtime's
    /// worker) queues it and finalizes it there, so the caller does not pay for it.
    fn dispatch_trace(&self, trace: PendingTrace) {
        self.dispatch(trace.finalize());
    }
    /// Whether span items are wanted (see [`TraceExporter::wants_spans`]).
    fn wants_spans(&self) -> bool;
    /// Exports everything handed over so far, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`LifecycleError`] on timeout, after shutdown, or when the exporter fails.
    fn force_flush(&self, timeout: Duration) -> Result<(), LifecycleError>;
    /// Flushes, then shuts the exporter down. Idempotent: later calls return
    /// [`LifecycleError::AlreadyShutdown`].
    ///
    /// # Errors
    /// As for [`Dispatch::force_flush`].
    fn shutdown(&self, timeout: Duration) -> Result<(), LifecycleError>;
}

/// Runs the exporter on the thread that finished the trace, waiting for it.
///
/// Only for exporters that do no I/O (the in-memory exporter of the `testing` feature, or an
/// exporter that only hands items to another queue). Network exporters belong behind the
/// runtime's worker, which never blocks the caller.
pub struct InlineDispatch {
    exporter: Arc<dyn TraceExporter>,
    wants_spans: bool,
    shut_down: AtomicBool,
    stats: Arc<Stats>,
}

impl fmt::Debug for InlineDispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineDispatch")
            .field("exporter", &self.exporter)
            .field("shut_down", &self.shut_down)
            .finish()
    }
}

impl InlineDispatch {
    /// Wraps an exporter.
    pub fn new(exporter: impl TraceExporter) -> Self {
        Self::from_arc(Arc::new(exporter))
    }

    /// Wraps a shared exporter.
    pub fn from_arc(exporter: Arc<dyn TraceExporter>) -> Self {
        InlineDispatch {
            wants_spans: exporter.wants_spans(),
            exporter,
            shut_down: AtomicBool::new(false),
            stats: Arc::new(Stats::default()),
        }
    }

    pub(crate) fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }
}

impl Dispatch for InlineDispatch {
    fn dispatch(&self, item: ExportItem) {
        if self.shut_down.load(Ordering::Acquire) {
            self.stats
                .record_export_dropped(1, "the exporter is shut down");
            return;
        }
        let export = std::panic::AssertUnwindSafe(|| {
            futures_executor::block_on(self.exporter.export(vec![item]))
        });
        match std::panic::catch_unwind(export) {
            Ok(Ok(())) => self.stats.record_exported(1),
            Ok(Err(err)) => self.stats.record_export_failed(1, &err),
            Err(payload) => self.stats.record_export_failed(
                1,
                &format!(
                    "the exporter panicked: {}",
                    crate::util::panic_message(payload.as_ref())
                ),
            ),
        }
    }

    fn wants_spans(&self) -> bool {
        self.wants_spans
    }

    fn force_flush(&self, _timeout: Duration) -> Result<(), LifecycleError> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(LifecycleError::AlreadyShutdown);
        }
        futures_executor::block_on(self.exporter.force_flush())
            .map_err(|e| LifecycleError::InternalFailure(e.to_string()))
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), LifecycleError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Err(LifecycleError::AlreadyShutdown);
        }
        futures_executor::block_on(self.exporter.shutdown())
            .map_err(|e| LifecycleError::InternalFailure(e.to_string()))
    }
}
