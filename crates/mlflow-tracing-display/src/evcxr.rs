//! `evcxr_display` for traces.

use mlflow_tracing_entities::Trace;

use crate::bundle::{TraceRef, mime_bundle};
use crate::handler::DisplayHandler;

/// `evcxr_display` for traces: with this trait in scope, a trace (or a list of traces) as the
/// last expression of an evcxr cell renders itself, with the global handler's settings.
pub trait EvcxrDisplay {
    /// Prints the mime bundle in evcxr's display protocol.
    fn evcxr_display(&self);
}

impl EvcxrDisplay for Trace {
    fn evcxr_display(&self) {
        std::slice::from_ref(self).evcxr_display();
    }
}

impl EvcxrDisplay for [Trace] {
    fn evcxr_display(&self) {
        let refs: Vec<TraceRef> = self.iter().map(TraceRef::from).collect();
        let handler = DisplayHandler::global();
        let mut config = handler.config();
        if !handler.is_enabled() {
            // Plain text only, as MLflow's `_repr_mimebundle_` when display is disabled.
            config.tracking_uri = None;
            config.renderer_base_url = None;
            config.databricks_runtime = false;
        }
        mime_bundle(&refs, &config).print_evcxr();
    }
}

impl EvcxrDisplay for Vec<Trace> {
    fn evcxr_display(&self) {
        self.as_slice().evcxr_display();
    }
}
