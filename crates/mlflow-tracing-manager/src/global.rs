//! The process-wide tracer that `#[trace]` and `start_span` use, also across evcxr notebook
//! cells.
//!
//! Outside notebooks it is one static. In an evcxr kernel every cell links its own copy of this
//! crate (see [`crate::process_global`]), so the installed tracer is published process-wide as a
//! [`NotebookTracer`]: the copy that installed it uses it as it is; every other copy builds its
//! own tracer once from the same settings, sharing the installed one's dispatch (the export
//! worker, the notebook display; trait objects, whose code runs in the copy that made them), its
//! counters and its last-active trace id. A copy never runs its own code on another copy's trace
//! buffer.

use std::sync::{Arc, Mutex, RwLock};

use crate::process_global;
use crate::tracer::{NotebookRecipe, Tracer};
use crate::util::lock;

/// The installed tracer as every evcxr cell sees it.
struct NotebookTracer {
    /// The installed tracer, for the copy that built it.
    origin: Tracer,
    /// Which copy that is ([`process_global::this_copy`]).
    origin_copy: usize,
    /// What the other copies build theirs from.
    recipe: NotebookRecipe,
}

/// Outside notebooks (and in the copy that called `init`): the installed tracer.
static GLOBAL: RwLock<Option<Tracer>> = RwLock::new(None);

/// In notebooks: this copy's own build of the installed tracer, and what it was built from.
static THIS_COPY: Mutex<Option<(Arc<NotebookTracer>, Tracer)>> = Mutex::new(None);

fn local() -> std::sync::RwLockWriteGuard<'static, Option<Tracer>> {
    GLOBAL
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NotebookTracer {
    /// The tracer this copy of the crate uses for the installed one.
    fn for_this_copy(self: &Arc<Self>) -> Tracer {
        if self.origin_copy == process_global::this_copy() {
            return self.origin.clone();
        }
        let mut cached = lock(&THIS_COPY);
        if let Some((from, tracer)) = cached.as_ref()
            && Arc::ptr_eq(from, self)
        {
            return tracer.clone();
        }
        let recipe = &self.recipe;
        let tracer = Tracer::from_settings(
            recipe.settings.clone(),
            recipe.stats.clone(),
            recipe.last_active_trace_id.clone(),
        );
        *cached = Some((self.clone(), tracer.clone()));
        tracer
    }
}

/// Installs `tracer` as the process-wide tracer; returns the previous one. In an evcxr kernel,
/// every later cell uses it too.
pub fn set_global_tracer(tracer: Tracer) -> Option<Tracer> {
    let previous = local().replace(tracer.clone());
    if let Some(recipe) = tracer.notebook_recipe() {
        let published = Arc::new(NotebookTracer {
            origin: tracer,
            origin_copy: process_global::this_copy(),
            recipe,
        });
        if let Some(before) = process_global::replace(Some(published)) {
            return before.map(|n| n.origin.clone());
        }
    }
    previous
}

/// Removes the process-wide tracer (spans become no-ops); returns it.
pub fn take_global_tracer() -> Option<Tracer> {
    let previous = local().take();
    match process_global::replace::<Arc<NotebookTracer>>(None) {
        Some(before) => before.map(|n| n.origin.clone()),
        None => previous,
    }
}

/// Removes `tracer` if it is the process-wide tracer (as installed, in any notebook cell);
/// returns whether it was.
pub fn uninstall_global_tracer(tracer: &Tracer) -> bool {
    let installed = match process_global::get::<Arc<NotebookTracer>>() {
        Some(published) => published.map(|n| n.origin.clone()),
        None => GLOBAL
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
    };
    if installed.as_ref() == Some(tracer) {
        take_global_tracer();
        true
    } else {
        false
    }
}

/// The process-wide tracer, if one is installed (in an evcxr kernel: in this cell or an
/// earlier one).
pub fn global_tracer() -> Option<Tracer> {
    if let Some(published) = process_global::get::<Arc<NotebookTracer>>() {
        return published.map(|n| n.for_this_copy());
    }
    GLOBAL
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}
