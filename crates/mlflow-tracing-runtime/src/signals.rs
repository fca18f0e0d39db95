//! [`on_terminate`] (feature `signals`): a thread that waits for SIGTERM or SIGINT, runs an
//! action (the facade flushes), then lets the signal take its usual effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The watch: dropping it ends the action, not the watching thread, which goes on letting
/// the signals end the process as they would without a handler (`signal-hook` cannot restore
/// the default handler, and a process that ignores SIGTERM would be worse).
#[derive(Debug)]
pub struct SignalWatch(Arc<AtomicBool>);

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// On the first SIGTERM or SIGINT, runs `action` with the signal's number on a thread of its
/// own, then ends the process as the signal would have without a handler (so `Drop`s do not
/// run). Handlers already installed (through `signal-hook` or not) keep running.
///
/// # Errors
/// When the handlers cannot be registered or the thread cannot start.
pub fn on_terminate(action: impl FnOnce(i32) + Send + 'static) -> std::io::Result<SignalWatch> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let active = Arc::new(AtomicBool::new(true));
    let watching = active.clone();
    std::thread::Builder::new()
        .name("mlflow-tracing-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                if watching.load(Ordering::Acquire) {
                    action(signal);
                }
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
        })?;
    Ok(SignalWatch(active))
}
