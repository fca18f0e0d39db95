//! Small helpers every module uses: poison-tolerant locking, panic messages, the clock.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

/// Locks a mutex, recovering the data if a panicking thread poisoned it (every critical section
/// of this crate only pushes, pops, replaces or flips flags, so the state stays consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The text of a panic payload (`&str` or `String`), e.g. for an exception message.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "Box<dyn Any>"
    }
}

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_ns() -> u64 {
    unix_nanos(SystemTime::now())
}

/// Nanoseconds since the Unix epoch of `t` (0 before the epoch, saturating far after).
pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
