//! Process-wide values shared by every copy of this crate in one process: how the SDK's state
//! survives from one evcxr notebook cell to the next.
//!
//! evcxr, the Rust Jupyter kernel, compiles each cell into a shared object of its own and, by
//! default, links a fresh copy of every dependency into it, so every cell has its own copy of
//! this crate's statics: a tracer installed in one cell is invisible to the next. The standard
//! library is linked dynamically, once, and the one process-wide, type-erased slot it offers
//! without `unsafe` is the panic hook. So, in an evcxr kernel only (`EVCXR_IS_RUNTIME` set):
//!
//! - the first copy that stores a value makes the registry and installs a panic hook that
//!   answers a lookup payload with it and hands every other panic to the hook that was installed
//!   before, so real panics are reported exactly as before;
//! - another copy finds the registry once: it checks that the installed hook is a registry hook
//!   (by the size of the hook's closure, the same in every copy), then raises the lookup payload
//!   inside `catch_unwind`, which that hook answers silently. Never while already panicking,
//!   never with `panic = "abort"`. The copy keeps the registry in its own static: one lookup per
//!   copy.
//!
//! Values are keyed by [`TypeId`], which is the same in every copy (same crate, same build).
//! **Only values whose methods touch no static of a dependency may be shared**: a copy's code
//! may run on them. Plain data, `Arc`s of atomics and `std` mutexes, and trait objects (their
//! methods run in the copy that made them) are fine; a moka cache is not (its epoch-based
//! memory reclamation keeps global state per copy). Outside evcxr nothing here runs.

use std::any::{Any, TypeId};
use std::panic::{AssertUnwindSafe, PanicHookInfo, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock};

use crate::util::lock;

/// The environment variable evcxr's runtime sets in the kernel process.
const EVCXR_IS_RUNTIME: &str = "EVCXR_IS_RUNTIME";

/// Whether this process is an evcxr kernel's runtime (read once per copy of this crate):
/// `EVCXR_IS_RUNTIME` is set and the program is evcxr's own (`evcxr`, `evcxr_jupyter`). A program
/// a notebook cell starts inherits the variable, but is not evcxr.
pub fn in_evcxr() -> bool {
    static IN_EVCXR: OnceLock<bool> = OnceLock::new();
    *IN_EVCXR.get_or_init(|| {
        std::env::var_os(EVCXR_IS_RUNTIME).is_some()
            && std::env::current_exe().ok().is_some_and(|exe| {
                exe.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("evcxr"))
            })
    })
}

/// The values shared by every copy in this process, by type.
#[derive(Default)]
struct Registry {
    values: Mutex<Vec<(TypeId, Box<dyn Any + Send + Sync>)>>,
}

/// The panic payload that asks the registry's hook for the registry.
struct Lookup(Arc<Mutex<Option<Arc<Registry>>>>);

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Send + Sync + 'static>;

/// Padding that makes a registry hook's closure a size no other hook has by chance.
const MARKER_LEN: usize = 4093;

/// The registry hook: answers [`Lookup`], hands everything else to `previous`.
fn registry_hook(
    registry: Arc<Registry>,
    previous: Hook,
) -> impl Fn(&PanicHookInfo<'_>) + Send + Sync + 'static {
    let marker = [0u8; MARKER_LEN];
    move |info| {
        let _ = &marker;
        if let Some(Lookup(answer)) = info.payload().downcast_ref::<Lookup>() {
            *lock(answer) = Some(registry.clone());
            return;
        }
        previous(info);
    }
}

/// Whether `hook` is a registry hook (made by [`registry_hook`] in any copy).
fn is_registry_hook(hook: &Hook) -> bool {
    let probe = registry_hook(Arc::default(), Box::new(|_| {}));
    size_of_val(&**hook) == size_of_val(&probe)
}

/// Asks the installed registry hook (of whichever copy made it) for the registry.
fn find() -> Option<Arc<Registry>> {
    if !cfg!(panic = "unwind") || std::thread::panicking() {
        return None;
    }
    let hook = std::panic::take_hook();
    let ours = is_registry_hook(&hook);
    std::panic::set_hook(hook);
    if !ours {
        return None;
    }
    let answer = Arc::new(Mutex::new(None));
    let request = Lookup(answer.clone());
    // Caught right here; the hook answers without printing anything.
    #[expect(
        clippy::panic,
        reason = "the registry lookup: raised and caught right here, answered by the registry hook"
    )]
    let _ = catch_unwind(AssertUnwindSafe(move || std::panic::panic_any(request)));
    lock(&answer).take()
}

/// Makes a registry and installs its hook in front of the current one.
fn create() -> Option<Arc<Registry>> {
    if std::thread::panicking() {
        return None;
    }
    let registry = Arc::new(Registry::default());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(registry_hook(registry.clone(), previous)));
    Some(registry)
}

/// This copy's view of the registry: found or made, and whether it was looked for.
#[derive(Default)]
struct Found {
    registry: Option<Arc<Registry>>,
    looked: bool,
}

/// This copy's registry: looked for once (so a failed lookup is not repeated on every span),
/// made when `create_if_missing` and none was found. Under a lock, so two threads of one copy
/// never look up or install twice.
fn registry(create_if_missing: bool) -> Option<Arc<Registry>> {
    static FOUND: Mutex<Found> = Mutex::new(Found {
        registry: None,
        looked: false,
    });
    let mut found = lock(&FOUND);
    if found.registry.is_none() && !found.looked {
        found.looked = true;
        found.registry = find();
    }
    if found.registry.is_none() && create_if_missing {
        found.registry = create();
    }
    found.registry.clone()
}

/// The process-wide `T`: `Some(value)` when one is stored, `Some(None)` when none is; `None`
/// outside evcxr (where each caller keeps its own static).
pub fn get<T: Any + Clone + Send + Sync>() -> Option<Option<T>> {
    if !in_evcxr() {
        return None;
    }
    let Some(registry) = registry(false) else {
        return Some(None);
    };
    let values = lock(&registry.values);
    Some(
        values
            .iter()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_ref::<T>().cloned()),
    )
}

/// Replaces the process-wide `T` (`None` removes it) and returns the previous one (`Some(None)`
/// when there was none); `None` outside evcxr, where nothing is stored.
pub fn replace<T: Any + Clone + Send + Sync>(value: Option<T>) -> Option<Option<T>> {
    if !in_evcxr() {
        return None;
    }
    let Some(registry) = registry(value.is_some()) else {
        return Some(None);
    };
    let mut values = lock(&registry.values);
    let previous = values
        .iter()
        .position(|(id, _)| *id == TypeId::of::<T>())
        .and_then(|i| values.swap_remove(i).1.downcast::<T>().ok().map(|b| *b));
    if let Some(v) = value {
        values.push((TypeId::of::<T>(), Box::new(v)));
    }
    Some(previous)
}

/// An address unique to this copy of the crate (each copy has its own statics), to tell
/// whether a shared value was made by this copy's code.
pub(crate) fn this_copy() -> usize {
    static MARKER: u8 = 0;
    std::ptr::addr_of!(MARKER) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_hook_answers_lookups_silently_and_passes_real_panics_on() {
        // Exercises the mechanism directly (the public functions only run inside evcxr). Runs
        // alone in this binary's process hook: the other tests here never panic.
        static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let original = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| {
            lock(&SEEN).push(crate::util::panic_message(info.payload()).to_owned());
        }));
        assert!(find().is_none(), "no registry hook yet: nothing found");
        let made = create().unwrap();
        lock(&made.values).push((TypeId::of::<u32>(), Box::new(7u32)));
        let found = find().expect("the registry hook answers");
        assert!(Arc::ptr_eq(&made, &found));
        assert!(
            lock(&SEEN).is_empty(),
            "lookups reach no other hook: {:?}",
            lock(&SEEN)
        );
        // A real panic still reaches the hook that was there before, once, and unwinds.
        let caught = catch_unwind(|| std::panic::panic_any("real"));
        assert!(caught.is_err());
        assert_eq!(*lock(&SEEN), ["real"]);
        drop(std::panic::take_hook());
        std::panic::set_hook(original);
    }

    #[test]
    fn nothing_is_stored_outside_evcxr() {
        if !in_evcxr() {
            assert_eq!(get::<u32>(), None);
            assert_eq!(replace(Some(1u32)), None);
        }
    }
}
