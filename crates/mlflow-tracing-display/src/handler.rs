//! The display handler (traces collected for the end of a cell) and the dispatch that feeds
//! it, or in evcxr shows each trace at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use mlflow_tracing_manager::{Dispatch, ExportItem, LifecycleError, process_global};

use crate::bundle::{DisplayConfig, MimeBundle, TraceRef, mime_bundle};

/// Whether this process runs inside evcxr (its runtime sets `EVCXR_IS_RUNTIME`).
pub fn in_evcxr() -> bool {
    process_global::in_evcxr()
}

/// Collects traces for display at the end of a notebook cell (MLflow's
/// `IPythonTraceDisplayHandler`).
#[derive(Debug)]
pub struct DisplayHandler {
    pending: Mutex<Vec<TraceRef>>,
    disabled: AtomicBool,
    config: Mutex<DisplayConfig>,
}

impl DisplayHandler {
    /// A handler with these settings.
    pub fn new(config: DisplayConfig) -> Self {
        DisplayHandler {
            pending: Mutex::new(Vec::new()),
            disabled: AtomicBool::new(false),
            config: Mutex::new(config),
        }
    }

    /// The process-wide handler (settings from the environment on first use). In an evcxr
    /// kernel, one handler for every cell (each cell links its own copy of this crate; see
    /// `mlflow_tracing_manager::process_global`).
    pub fn global() -> &'static DisplayHandler {
        static HANDLER: OnceLock<&'static DisplayHandler> = OnceLock::new();
        HANDLER.get_or_init(|| {
            if let Some(Some(shared)) = process_global::get::<&'static DisplayHandler>() {
                return shared;
            }
            let handler: &'static DisplayHandler =
                Box::leak(Box::new(DisplayHandler::new(DisplayConfig::from_env())));
            let _ = process_global::replace(Some(handler));
            handler
        })
    }

    /// Stops showing traces (MLflow's `disable_notebook_display`).
    pub fn disable(&self) {
        self.disabled.store(true, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Shows traces again (MLflow's `enable_notebook_display`).
    pub fn enable(&self) {
        self.disabled.store(false, Ordering::Relaxed);
    }

    /// Whether traces are shown.
    pub fn is_enabled(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// Replaces the settings.
    pub fn set_config(&self, config: DisplayConfig) {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// The settings.
    pub fn config(&self) -> DisplayConfig {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Remembers traces to show (a trace already pending is not added twice); nothing when
    /// disabled or when no UI can show them.
    pub fn display_traces(&self, traces: &[TraceRef]) {
        if !self.is_enabled() || !self.config().ui_available() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for t in traces {
            if !pending.iter().any(|p| p.trace_id == t.trace_id) {
                pending.push(t.clone());
            }
        }
    }

    /// The bundle for the end of the cell: up to `max_traces` pending traces, which are then
    /// forgotten; `None` when there are none (or display is off).
    pub fn take_bundle(&self) -> Option<MimeBundle> {
        let taken =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        self.bundle_of(&taken)
    }

    /// The bundle showing `traces` (up to `max_traces` of them) with this handler's settings;
    /// `None` when there are none, display is off, or no UI can show them.
    pub fn bundle_of(&self, traces: &[TraceRef]) -> Option<MimeBundle> {
        let config = self.config();
        if traces.is_empty() || !self.is_enabled() || !config.ui_available() {
            return None;
        }
        let shown = &traces[..traces.len().min(config.max_traces.max(1))];
        Some(mime_bundle(shown, &config))
    }
}

/// A [`Dispatch`] that hands each finished trace to the wrapped dispatcher, then to a
/// [`DisplayHandler`]. In evcxr it shows the trace at once instead, with the others this
/// dispatch (one notebook cell) has shown (see the crate docs).
#[derive(Debug)]
pub struct DisplayDispatch {
    inner: Arc<dyn Dispatch>,
    handler: &'static DisplayHandler,
    evcxr: bool,
    /// In evcxr: the traces shown so far by this dispatch, that is, by one notebook cell.
    cell: Mutex<Vec<TraceRef>>,
}

impl DisplayDispatch {
    /// Wraps `inner`, reporting to the global handler; evcxr is detected from the environment.
    pub fn new(inner: Arc<dyn Dispatch>) -> Self {
        DisplayDispatch {
            inner,
            handler: DisplayHandler::global(),
            evcxr: in_evcxr(),
            cell: Mutex::new(Vec::new()),
        }
    }

    /// In evcxr: shows every trace this dispatch has shown so far plus `trace`. evcxr keeps
    /// one output of each kind per cell (the last printed), and each cell gets its own dispatch
    /// (`TracerBuilder::with_dispatch_wrapper`), so the cell ends up showing all the traces it
    /// finished (up to `MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK`), as MLflow's end-of-cell
    /// display does.
    fn show_in_cell(&self, trace: TraceRef) {
        if !self.handler.is_enabled() {
            return;
        }
        let max = self.handler.config().max_traces.max(1);
        let mut cell = self.cell.lock().unwrap_or_else(PoisonError::into_inner);
        if cell.iter().any(|t| t.trace_id == trace.trace_id) {
            return;
        }
        // As MLflow: the first `MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK` traces of the cell;
        // later ones are exported, not shown (and not kept: the list stays bounded).
        if cell.len() >= max {
            return;
        }
        cell.push(trace);
        if let Some(bundle) = self.handler.bundle_of(&cell) {
            bundle.print_evcxr();
        }
    }
}

impl Dispatch for DisplayDispatch {
    fn dispatch(&self, item: ExportItem) {
        let shown = match &item {
            ExportItem::Trace(t) if !t.remote => Some(TraceRef::from(&t.trace)),
            _ => None,
        };
        // Export first: with synchronous export (evcxr's default) the trace is on the server
        // by the time the renderer iframe asks for it.
        self.inner.dispatch(item);
        if let Some(trace) = shown {
            // Display must never fail the user's code.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if self.evcxr {
                    self.show_in_cell(trace);
                } else {
                    self.handler.display_traces(&[trace]);
                }
            }));
            if result.is_err() {
                tracing::debug!("notebook display of a trace failed");
            }
        }
    }

    fn wants_spans(&self) -> bool {
        self.inner.wants_spans()
    }

    fn force_flush(&self, timeout: Duration) -> Result<(), LifecycleError> {
        self.inner.force_flush(timeout)
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), LifecycleError> {
        self.inner.shutdown(timeout)
    }
}
