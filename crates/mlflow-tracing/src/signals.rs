//! `InitGuard::flush_on_signals` (feature `signals`): a short-lived job killed with SIGTERM or
//! SIGINT flushes what is queued before it dies.
//!
//! A thread waits for the signals (through `signal-hook`, which keeps any handler already
//! installed). On the first one it flushes within the given time; with a spool configured, it
//! flushes for half of it, then sends what is still queued to the spool instead of the server
//! for the other half. Then the signal takes its usual effect (the process ends as if no
//! handler had been installed: killed by the signal, so `Drop`s do not run).

use std::time::Duration;

use mlflow_tracing_manager::Tracer;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::init::{InitError, InitGuard};

/// The signal thread's handle: closed (the thread ends, the handlers are kept by `signal-hook`
/// but do nothing) when the guard is dropped.
#[derive(Debug)]
pub(crate) struct SignalFlush(signal_hook::iterator::Handle);

impl Drop for SignalFlush {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What the signal thread needs.
struct OnSignal {
    tracer: Tracer,
    timeout: Duration,
    #[cfg(feature = "mlflow-server")]
    spooling: Option<std::sync::Arc<crate::server::MlflowExporter>>,
}

impl OnSignal {
    #[cfg(feature = "mlflow-server")]
    fn flush_all(&self) -> Result<(), mlflow_tracing_manager::LifecycleError> {
        let Some(exporter) = &self.spooling else {
            return self.tracer.force_flush(self.timeout);
        };
        let first = self.timeout / 2;
        match self.tracer.force_flush(first) {
            Err(_) if exporter.spool_remaining() => self.tracer.force_flush(self.timeout - first),
            result => result,
        }
    }

    #[cfg(not(feature = "mlflow-server"))]
    fn flush_all(&self) -> Result<(), mlflow_tracing_manager::LifecycleError> {
        self.tracer.force_flush(self.timeout)
    }

    fn flush(&self, signal: i32) {
        let result = self.flush_all();
        match result {
            Ok(()) => tracing::info!(signal, "MLflow tracing flushed on a signal"),
            Err(e) => tracing::warn!(
                signal,
                "MLflow tracing could not flush everything on a signal: {e}"
            ),
        }
    }
}

impl InitGuard {
    /// On SIGTERM or SIGINT, flushes within `timeout` (spooling what is left when a spool is
    /// configured, see [`crate::server::MlflowExporter::with_spool`]), then lets the signal
    /// take its usual effect. For jobs and services stopped by a signal: without it, what is
    /// still queued is lost. Unix only.
    ///
    /// # Errors
    /// [`InitError::Signals`] when the handlers cannot be registered.
    pub fn flush_on_signals(mut self, timeout: Duration) -> Result<Self, InitError> {
        let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(InitError::Signals)?;
        let handle = signals.handle();
        let on_signal = OnSignal {
            tracer: self.tracer().clone(),
            timeout,
            #[cfg(feature = "mlflow-server")]
            spooling: self.spooling.clone(),
        };
        std::thread::Builder::new()
            .name("mlflow-tracing-signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    on_signal.flush(signal);
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                }
            })
            .map_err(InitError::Signals)?;
        self.signals = Some(SignalFlush(handle));
        Ok(self)
    }
}
