//! A parent span in another process (continued from `traceparent`), and the placeholder trace
//! that collects the spans this process makes in it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::in_progress::TraceEntry;
use crate::traceparent::RemoteContext;
use crate::tracer::Tracer;

/// A remote parent of new spans. Every context holding it keeps the placeholder open.
#[derive(Clone)]
pub(crate) struct RemoteParent {
    pub(crate) remote: Arc<RemoteContext>,
    pub(crate) tracer: Tracer,
    /// Held, never read: keeps the placeholder open.
    _scope: Arc<RemoteScope>,
}

impl RemoteParent {
    /// A remote parent whose spans go to `placeholder` (when the trace is recorded here).
    pub(crate) fn new(
        remote: RemoteContext,
        tracer: &Tracer,
        placeholder: Option<Arc<TraceEntry>>,
    ) -> Self {
        RemoteParent {
            remote: Arc::new(remote),
            tracer: tracer.clone(),
            _scope: Arc::new(RemoteScope {
                tracer: tracer.clone(),
                placeholder,
            }),
        }
    }
}

/// One continuation of a remote trace; the placeholder ends when the last one drops.
struct RemoteScope {
    tracer: Tracer,
    placeholder: Option<Arc<TraceEntry>>,
}

impl Drop for RemoteScope {
    fn drop(&mut self) {
        if let Some(entry) = self.placeholder.take()
            && entry.scopes.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(completed) = entry.end_scope()
        {
            self.tracer.manager().complete(&entry, completed);
        }
    }
}
