//! Test helpers: an in-memory exporter and a scoped capture that keeps tests parallel.

use std::sync::{Arc, Mutex};

use mlflow_tracing_entities::Trace;

use crate::builder::TracerBuilder;
use crate::error::{ConfigError, ExportError};
use crate::export::{ExportItem, SpanItem, TraceExporter, TraceItem};
use crate::instrument::Instrumented;
use crate::tracer::Tracer;
use crate::util::lock;

/// Keeps every exported item in memory.
#[derive(Clone, Debug, Default)]
pub struct InMemoryExporter {
    items: Arc<Mutex<Vec<ExportItem>>>,
    wants_spans: bool,
}

impl InMemoryExporter {
    /// An exporter that receives finished traces.
    pub fn new() -> Self {
        Self::default()
    }

    /// An exporter that also receives every span as it ends.
    pub fn with_spans() -> Self {
        InMemoryExporter {
            wants_spans: true,
            ..Self::default()
        }
    }

    /// Everything received, in order.
    pub fn items(&self) -> Vec<ExportItem> {
        lock(&self.items).clone()
    }

    /// The finished traces received (local ones and remote placeholders).
    pub fn trace_items(&self) -> Vec<TraceItem> {
        lock(&self.items)
            .iter()
            .filter_map(|i| match i {
                ExportItem::Trace(t) => Some((**t).clone()),
                ExportItem::Span(_) => None,
            })
            .collect()
    }

    /// The finished traces received.
    pub fn traces(&self) -> Vec<Trace> {
        self.trace_items().into_iter().map(|t| t.trace).collect()
    }

    /// The span items received (only with [`InMemoryExporter::with_spans`]).
    pub fn spans(&self) -> Vec<SpanItem> {
        lock(&self.items)
            .iter()
            .filter_map(|i| match i {
                ExportItem::Span(s) => Some((**s).clone()),
                ExportItem::Trace(_) => None,
            })
            .collect()
    }

    /// Forgets everything received.
    pub fn clear(&self) {
        lock(&self.items).clear();
    }
}

#[async_trait::async_trait]
impl TraceExporter for InMemoryExporter {
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        lock(&self.items).extend(batch);
        Ok(())
    }

    fn wants_spans(&self) -> bool {
        self.wants_spans
    }
}

/// A tracer of its own with an in-memory exporter, made current only inside
/// [`Capture::run`] / [`Capture::scope`], so tests running in parallel never see each other's
/// traces or settings.
#[derive(Clone, Debug)]
pub struct Capture {
    tracer: Tracer,
    exporter: InMemoryExporter,
}

impl Capture {
    /// A capture with MLflow's default settings (without environment metadata, so traces are
    /// the same on every machine).
    pub fn new() -> Self {
        let exporter = InMemoryExporter::new();
        let tracer = Tracer::builder()
            .with_environment_metadata(false)
            .with_exporter(exporter.clone())
            .build_valid();
        Capture { tracer, exporter }
    }

    /// A capture whose tracer is configured by `configure` (sampling, timeouts, span
    /// processors…).
    ///
    /// # Errors
    /// [`ConfigError`] from [`TracerBuilder::build`].
    pub fn with(
        configure: impl FnOnce(TracerBuilder) -> TracerBuilder,
    ) -> Result<Self, ConfigError> {
        Self::with_exporter(InMemoryExporter::new(), configure)
    }

    /// Like [`Capture::with`], with a given exporter (e.g. [`InMemoryExporter::with_spans`]).
    ///
    /// # Errors
    /// [`ConfigError`] from [`TracerBuilder::build`].
    pub fn with_exporter(
        exporter: InMemoryExporter,
        configure: impl FnOnce(TracerBuilder) -> TracerBuilder,
    ) -> Result<Self, ConfigError> {
        let builder = Tracer::builder()
            .with_environment_metadata(false)
            .with_exporter(exporter.clone());
        let tracer = configure(builder).build()?;
        Ok(Capture { tracer, exporter })
    }

    /// Runs `f` with this capture's tracer current.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        self.tracer.in_scope(f)
    }

    /// Runs `future` with this capture's tracer current.
    pub fn scope<F: Future>(&self, future: F) -> Instrumented<F> {
        self.tracer.scope(future)
    }

    /// The tracer.
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// The exporter.
    pub fn exporter(&self) -> &InMemoryExporter {
        &self.exporter
    }

    /// The finished traces so far.
    pub fn traces(&self) -> Vec<Trace> {
        self.exporter.traces()
    }
}

impl Default for Capture {
    fn default() -> Self {
        Self::new()
    }
}
