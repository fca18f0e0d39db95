//! `init` and its guard: the exporter behind the export runtime, the tracer installed.

use std::sync::Arc;
use std::time::Duration;

#[cfg(any(feature = "mlflow-server", feature = "uc-table"))]
use mlflow_tracing_client::ClientError;
#[cfg(feature = "mlflow-server")]
use mlflow_tracing_entities::is_http_uri;
#[cfg(feature = "uc-table")]
use mlflow_tracing_manager::TraceDestination;
use mlflow_tracing_manager::notice::SUMMARY_TARGET;
use mlflow_tracing_manager::{ConfigError, Dispatch, Tracer, TracerBuilder};
use mlflow_tracing_runtime::{
    ExportWorker, SyncDispatch, WorkerConfig, WorkerStartError, WorkerStats,
};

/// `init` could not set tracing up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A setting or environment variable is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The export worker thread could not start.
    #[error(transparent)]
    Worker(#[from] WorkerStartError),
    /// An OTLP setting cannot be used (`OTEL_EXPORTER_OTLP_*`).
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    #[error(transparent)]
    Otlp(#[from] mlflow_tracing_exporter_otlp::OtlpConfigError),
    /// The MLflow tracking-server (or Databricks) client could not be set up from the
    /// environment.
    #[cfg(any(feature = "mlflow-server", feature = "uc-table"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "mlflow-server", feature = "uc-table"))))]
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The signal handlers of [`InitGuard::flush_on_signals`] could not be registered.
    #[cfg(feature = "signals")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signals")))]
    #[error("cannot register the SIGTERM/SIGINT handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// Builds the tracer and installs it as the process-wide tracer used by `#[trace]` and
/// [`start_span`](crate::start_span). Keep the guard alive for the life of the program: dropping it flushes and
/// shuts the exporter down (within [`InitGuard::SHUTDOWN_TIMEOUT`]) and logs a one-line summary.
///
/// Without an exporter in the builder, and with `MLFLOW_TRACKING_URI` set to `http(s)://…`
/// (feature `mlflow-server`, on by default), traces go to that MLflow tracking server through
/// [`MlflowExporter::from_env`](crate::server::MlflowExporter::from_env) (auth, TLS, retries
/// and `MLFLOW_EXPERIMENT_NAME` from the environment too).
///
/// With `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` set (feature
/// `otlp`, on by default), traces go to that OpenTelemetry collector instead, or to both with
/// `MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT=true`, as MLflow decides; only `http/protobuf` is
/// supported, and another protocol is an [`InitError`]. Each destination then has its own
/// worker; in dual export a trace is finalized once, on the thread that ends its root.
///
/// The exporter given to [`TracerBuilder::with_exporter`] runs behind the export runtime's
/// worker thread and bounded queue ([`ExportWorker`](crate::export::ExportWorker), settings from
/// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE` / `_MAX_WORKERS`), which also halts overdue traces
/// once a second. With `MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false` it runs on the caller's thread
/// instead ([`SyncDispatch`](crate::export::SyncDispatch)), as MLflow does: slow, since the code
/// that ends a root span waits for its export, and overdue traces are then halted only when
/// spans start or end. In an evcxr notebook kernel that is the default (the kernel exits without
/// running destructors, and the notebook display loads each trace from the server).
///
/// # Errors
/// [`InitError`] when the settings are invalid or the worker cannot start.
pub fn init(builder: TracerBuilder) -> Result<InitGuard, InitError> {
    #[cfg(feature = "mlflow-server")]
    let mut spooling = None;
    #[cfg(feature = "uc-table")]
    let builder = if !builder.has_export()
        && matches!(builder.destination(), TraceDestination::UnityCatalog(_))
    {
        builder.with_exporter(crate::uc_table::UcTableExporter::from_env()?)
    } else {
        builder
    };
    // Planned once the builder's own destination (or Unity Catalog) is known: those win.
    #[cfg(feature = "otlp")]
    let otlp = crate::otlp::plan(builder.has_export())?;
    // OTLP alone (no dual export) replaces the tracking server, as in MLflow.
    #[cfg(feature = "otlp")]
    let otlp_only = otlp.as_ref().is_some_and(|p| !p.dual);
    #[cfg(not(feature = "otlp"))]
    let otlp_only = false;
    #[cfg(feature = "mlflow-server")]
    let builder = match std::env::var("MLFLOW_TRACKING_URI") {
        Ok(uri) if !builder.has_export() && !otlp_only && is_http_uri(&uri) => {
            let exporter = Arc::new(crate::server::MlflowExporter::from_env()?);
            if exporter.spool_stats().is_some() {
                spooling = Some(exporter.clone());
            }
            builder.with_exporter(exporter)
        }
        _ => builder,
    };
    // OTLP alone is the exporter; with dual export it is a second destination.
    #[cfg(feature = "otlp")]
    let otlp_exporter = otlp.as_ref().map(|p| p.exporter.clone());
    #[cfg(feature = "otlp")]
    let (builder, mut second) = match otlp {
        Some(plan) if !builder.has_export() => (builder.with_exporter(plan.exporter), None),
        Some(plan) => (builder, Some(plan.exporter)),
        None => (builder, None),
    };
    if !otlp_only && !builder.has_export() {
        mlflow_tracing_manager::notice::visible(|| {
            tracing::warn!(
                "mlflow_tracing::init: no exporter (set MLFLOW_TRACKING_URI to an MLflow server, or \
             call TracerBuilder::with_exporter); finished traces go nowhere"
            )
        });
    }
    let config = WorkerConfig::from_env()?;
    let mut export = Export::None;
    let asynchronous = mlflow_tracing_runtime::async_logging_enabled()?;
    #[cfg_attr(
        not(feature = "otlp"),
        expect(
            unused_variables,
            reason = "the second destination needs the OTLP exporter"
        )
    )]
    let second_config = config.clone();
    let builder = builder.map_exporter(|exporter| {
        let main: Arc<dyn Dispatch> = if asynchronous {
            let w = ExportWorker::start_arc(exporter, config)?;
            export = Export::Worker(w.clone());
            Arc::new(w)
        } else {
            let sync = Arc::new(SyncDispatch::new(exporter, config.export_timeout)?);
            export = Export::Sync(sync.clone());
            sync
        };
        #[cfg(feature = "otlp")]
        if let Some(otlp) = second.take() {
            return Ok(crate::otlp::fan_out(
                main,
                otlp,
                asynchronous,
                second_config,
            )?);
        }
        Ok::<_, InitError>(main)
    })?;
    #[cfg(feature = "display")]
    let builder = if crate::display::in_evcxr() {
        // In an evcxr notebook, finished traces are shown in the cell that produced them (one
        // display per cell: each cell's copy of the tracer gets its own).
        builder.with_dispatch_wrapper(|d| Arc::new(crate::display::DisplayDispatch::new(d)))
    } else {
        builder
    };
    #[cfg_attr(
        not(any(feature = "mlflow-server", feature = "otlp")),
        expect(unused_mut, reason = "set only with the MLflow or OTLP exporter")
    )]
    let mut guard = install(builder, export)?;
    #[cfg(feature = "mlflow-server")]
    {
        guard.spooling = spooling;
    }
    #[cfg(feature = "otlp")]
    {
        guard.otlp = otlp_exporter;
    }
    Ok(guard)
}

/// Builds the tracer, lets the worker (if any) run its maintenance, installs it globally.
pub(crate) fn install(builder: TracerBuilder, export: Export) -> Result<InitGuard, InitError> {
    let tracer = builder.build()?;
    if let Export::Worker(worker) = &export {
        let maintained = tracer.clone();
        worker.set_maintenance(move || maintained.run_maintenance());
    }
    if let Some(previous) = mlflow_tracing_manager::set_global_tracer(tracer.clone()) {
        mlflow_tracing_manager::notice::visible(|| {
            tracing::warn!("mlflow_tracing::init called again; the previous tracer is replaced")
        });
        let _ = previous.shutdown(InitGuard::SHUTDOWN_TIMEOUT);
    }
    Ok(InitGuard {
        tracer,
        export,
        shutdown_timeout: InitGuard::SHUTDOWN_TIMEOUT,
        #[cfg(feature = "mlflow-server")]
        spooling: None,
        #[cfg(feature = "signals")]
        signals: None,
        #[cfg(feature = "otlp")]
        otlp: None,
    })
}

/// What `init` put between the tracer and the exporter.
#[derive(Debug)]
pub(crate) enum Export {
    Worker(ExportWorker),
    Sync(Arc<SyncDispatch>),
    /// The builder had a dispatch of its own, or no exporter.
    None,
}

/// Returned by [`init`]; flushes and shuts down the tracer when dropped.
#[must_use = "dropping the guard shuts tracing down"]
#[derive(Debug)]
pub struct InitGuard {
    tracer: Tracer,
    export: Export,
    shutdown_timeout: Duration,
    /// The MLflow exporter, when it has a spool.
    #[cfg(feature = "mlflow-server")]
    spooling: Option<Arc<crate::server::MlflowExporter>>,
    /// The signal thread ([`InitGuard::flush_on_signals`]).
    #[cfg(feature = "signals")]
    signals: Option<mlflow_tracing_runtime::SignalWatch>,
    /// The OTLP exporter, when the environment configured one.
    #[cfg(feature = "otlp")]
    otlp: Option<Arc<mlflow_tracing_exporter_otlp::OtlpExporter>>,
}

impl InitGuard {
    /// How long dropping the guard waits for the exporter by default. Python's SDK waits at
    /// exit for as long as its queue takes; a bound keeps a stuck server from hanging the
    /// program, and it is long enough for a cold server's first requests (an MLflow server's
    /// first LLM spans take it several seconds). What is still unsent then is counted as
    /// dropped and logged (with a spool, it is spooled for the next process instead).
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

    /// Sets how long dropping the guard waits for the exporter (default
    /// [`SHUTDOWN_TIMEOUT`](Self::SHUTDOWN_TIMEOUT)).
    #[must_use = "dropping the guard shuts tracing down"]
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The installed tracer (its `stats()` count traces started, finished, evicted, dropped).
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// The export counters (enqueued, exported, failed, dropped queue-full / at shutdown /
    /// on a shutdown timeout), whether exports run on the worker or on the caller's thread;
    /// `None` when the builder was given a [`Dispatch`] of its own.
    pub fn export_stats(&self) -> Option<WorkerStats> {
        match &self.export {
            Export::Worker(worker) => Some(worker.stats()),
            Export::Sync(sync) => Some(sync.stats()),
            Export::None => None,
        }
    }

    /// On SIGTERM or SIGINT, flushes within `timeout` (spooling what is left when a spool is
    /// configured: `MlflowExporter::with_spool`, feature `mlflow-server`), then lets the signal
    /// take its usual effect (the process ends as if no handler were installed, so `Drop`s do
    /// not run). For jobs and services stopped by a signal: without it, what is still queued is
    /// lost. Unix only.
    ///
    /// # Errors
    /// [`InitError::Signals`] when the handlers cannot be registered.
    #[cfg(feature = "signals")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signals")))]
    pub fn flush_on_signals(mut self, timeout: Duration) -> Result<Self, InitError> {
        let on_signal = crate::signals::OnSignal {
            tracer: self.tracer.clone(),
            timeout,
            #[cfg(feature = "mlflow-server")]
            spooling: self.spooling.clone(),
        };
        let watch = mlflow_tracing_runtime::on_terminate(move |signal| on_signal.flush(signal))
            .map_err(InitError::Signals)?;
        self.signals = Some(watch);
        Ok(self)
    }

    /// The OTLP exporter's counters, when the environment configured one
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, …).
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    pub fn otlp_stats(&self) -> Option<crate::export::OtlpExporterStats> {
        self.otlp.as_ref().map(|e| e.stats())
    }

    /// The spool's counters (spooled, replayed, dropped past its cap, corrupt) when the MLflow
    /// exporter `init` made has one (`MLFLOW_TRACING_SPOOL_DIR`).
    #[cfg(feature = "mlflow-server")]
    pub fn spool_stats(&self) -> Option<crate::server::SpoolStats> {
        self.spooling.as_ref().and_then(|e| e.spool_stats())
    }
}

impl Drop for InitGuard {
    fn drop(&mut self) {
        mlflow_tracing_manager::uninstall_global_tracer(&self.tracer);
        #[cfg(feature = "mlflow-server")]
        let result = crate::spool_fallback::spool_fallback(
            self.spooling.as_deref(),
            &self.tracer,
            self.shutdown_timeout,
            |rest| self.tracer.shutdown(rest),
        );
        #[cfg(not(feature = "mlflow-server"))]
        let result = self.tracer.shutdown(self.shutdown_timeout);
        let stats = self.tracer.stats();
        let worker = self.export_stats().unwrap_or_default();
        let exported = stats.items_exported + worker.exported;
        let failed = stats.items_failed + worker.failed;
        let dropped = stats.items_dropped
            + worker.dropped_queue_full
            + worker.dropped_shutdown
            + worker.dropped_shutdown_timeout
            + stats.spans_dropped;
        // (spooled, replayed, dropped, corrupt), with a spool.
        #[cfg(feature = "mlflow-server")]
        let spool = self
            .spool_stats()
            .map(|s| (s.spooled, s.replayed, s.dropped, s.corrupt));
        #[cfg(not(feature = "mlflow-server"))]
        let spool: Option<(u64, u64, u64, u64)> = None;
        #[cfg(feature = "mlflow-server")]
        let spool_waiting = spool.is_some_and(|(_, _, dropped, corrupt)| dropped + corrupt > 0)
            || self.spooling.as_ref().is_some_and(|e| e.spool_waiting());
        #[cfg(not(feature = "mlflow-server"))]
        let spool_waiting = false;
        // With a spool, "exported" counts what the exporter took: delivered or spooled. The
        // spool's fields are left out without one.
        let summary = || {
            tracing::info!(
                target: SUMMARY_TARGET,
                traces = stats.traces_finished,
                exported,
                failed,
                dropped,
                evicted = stats.traces_evicted,
                spooled = spool.map(|s| s.0),
                replayed = spool.map(|s| s.1),
                spool_dropped = spool.map(|s| s.2),
                corrupt = spool.map(|s| s.3),
                "MLflow tracing shut down"
            );
        };
        // A summary of losses reaches stderr even when no subscriber is installed.
        if failed + dropped + stats.traces_evicted > 0 || spool_waiting || result.is_err() {
            mlflow_tracing_manager::notice::visible(summary);
        } else {
            summary();
        }
        if let Err(err) = result {
            mlflow_tracing_manager::notice::visible(|| {
                tracing::warn!("MLflow tracing shutdown: {err}")
            });
        }
    }
}
