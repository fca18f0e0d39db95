//! [`FanOut`]: one tracer, several independent destinations (MLflow's OTLP dual export): each
//! finished trace goes to every dispatch, each with its own queue and worker, so a destination
//! that is down or slow never holds up another.

use std::sync::Arc;
use std::time::Duration;

use mlflow_tracing_manager::{Dispatch, ExportItem, LifecycleError};

/// Hands every item to each of its dispatches. A completed trace is finalized once, on the
/// thread that completed it (the trait's default), then each destination gets a copy.
#[derive(Debug)]
pub struct FanOut {
    targets: Vec<Arc<dyn Dispatch>>,
}

impl FanOut {
    /// A fan-out to `targets`, in order.
    pub fn new(targets: Vec<Arc<dyn Dispatch>>) -> Self {
        FanOut { targets }
    }

    /// Runs `f` on every target at once, each with the whole `timeout` (a destination that
    /// hangs does not eat another's time); the first error.
    fn each(
        &self,
        timeout: Duration,
        f: impl Fn(&dyn Dispatch, Duration) -> Result<(), LifecycleError> + Sync,
    ) -> Result<(), LifecycleError> {
        let f = &f;
        std::thread::scope(|scope| {
            let running: Vec<_> = self
                .targets
                .iter()
                .map(|t| scope.spawn(move || f(t.as_ref(), timeout)))
                .collect();
            let mut first = Ok(());
            for handle in running {
                let result = handle.join().unwrap_or_else(|_| {
                    Err(LifecycleError::InternalFailure(
                        "a destination's flush panicked".into(),
                    ))
                });
                if let Err(e) = result
                    && first.is_ok()
                {
                    first = Err(e);
                }
            }
            first
        })
    }
}

impl Dispatch for FanOut {
    fn dispatch(&self, item: ExportItem) {
        if let Some((last, rest)) = self.targets.split_last() {
            for t in rest {
                if !matches!(item, ExportItem::Span(_)) || t.wants_spans() {
                    t.dispatch(item.clone());
                }
            }
            if !matches!(item, ExportItem::Span(_)) || last.wants_spans() {
                last.dispatch(item);
            }
        }
    }

    fn wants_spans(&self) -> bool {
        self.targets.iter().any(|t| t.wants_spans())
    }

    fn force_flush(&self, timeout: Duration) -> Result<(), LifecycleError> {
        self.each(timeout, |t, left| t.force_flush(left))
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), LifecycleError> {
        self.each(timeout, |t, left| t.shutdown(left))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use std::sync::Mutex;

    use super::*;

    /// A destination whose flush uses all the time it is given, and says how much that was.
    #[derive(Debug, Default)]
    struct Slow(Mutex<Vec<Duration>>);

    impl Dispatch for Slow {
        fn dispatch(&self, _: ExportItem) {}
        fn wants_spans(&self) -> bool {
            false
        }
        fn force_flush(&self, timeout: Duration) -> Result<(), LifecycleError> {
            self.0.lock().unwrap().push(timeout);
            std::thread::sleep(timeout);
            Err(LifecycleError::Timeout(timeout))
        }
        fn shutdown(&self, timeout: Duration) -> Result<(), LifecycleError> {
            self.force_flush(timeout)
        }
    }

    #[test]
    fn a_destination_that_hangs_does_not_eat_the_others_time() {
        let (a, b) = (Arc::new(Slow::default()), Arc::new(Slow::default()));
        let fan = FanOut::new(vec![a.clone(), b.clone()]);
        let timeout = Duration::from_millis(200);
        assert!(fan.force_flush(timeout).is_err());
        // Each got the whole time (one after the other, the second would get none).
        assert_eq!(*a.0.lock().unwrap(), [timeout]);
        assert_eq!(*b.0.lock().unwrap(), [timeout]);
    }
}
