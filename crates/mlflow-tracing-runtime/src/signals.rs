//! [`on_terminate`] (feature `signals`): a thread that waits for SIGTERM or SIGINT, runs an
//! action (the facade flushes), then lets the signal take its usual effect.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The watching thread's handle: dropping it stops the watch (`signal-hook` keeps its
/// handlers registered, doing nothing).
#[derive(Debug)]
pub struct SignalWatch(signal_hook::iterator::Handle);

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.0.close();
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
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("mlflow-tracing-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                action(signal);
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
        })?;
    Ok(SignalWatch(handle))
}
