//! The Unity Catalog table exporter of MLflow Tracing for Rust (Databricks).
//!
//! With a tracer whose destination is a Unity Catalog schema or table prefix
//! ([`TraceDestination::UnityCatalog`](mlflow_tracing_manager::TraceDestination), or
//! `MLFLOW_TRACING_DESTINATION=catalog.schema`), traces get V4 ids
//! (`trace:/<catalog.schema[.prefix]>/<32 hex>`) and schema version "4", and
//! [`UcTableExporter`] writes them the way MLflow's `DatabricksUCTableSpanExporter` does:
//!
//! - **spans** go through the export runtime's batcher (they are span items: batched by size and
//!   interval, grouped by location, i.e. by table) to `POST {host}/api/2.0/otel/v1/traces` as
//!   OTLP protobuf with `X-Databricks-UC-Table-Name: catalog.schema.table` (the schema's
//!   `mlflow_experiment_trace_otel_spans` table by default, or the table the backend assigned
//!   to a prefix);
//! - **trace infos** go to `POST {host}/api/4.0/mlflow/traces/{location}/{hex}/info` (V4 proto
//!   JSON, size stats included); when that fails and a fallback experiment is configured
//!   ([`UcTableExporter::with_v3_fallback_experiment`]) the info goes to StartTraceV3 instead.
//!   Traces of an experiment location use StartTraceV3 directly. No `traces.json` is uploaded.
//!
//! The first failure is logged as a warning, later ones at debug; all are counted
//! ([`UcTableExporterStats`], and per item by the runtime).
//!
//! Authentication ([`UcTableExporter::from_env`]): `DATABRICKS_HOST` with `DATABRICKS_TOKEN`, or
//! OAuth machine-to-machine with `DATABRICKS_CLIENT_ID` / `DATABRICKS_CLIENT_SECRET` (a token
//! from `<host>/oidc/v1/token`, cached and fetched again before it expires or after a 401).
#![doc(test(attr(deny(warnings))))]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use mlflow_tracing_client::{ClientConfig, ClientError, TrackingClient};
use mlflow_tracing_entities::{Span, Trace, TraceLocation};
use mlflow_tracing_manager::{ExportError, ExportItem, TraceExporter, async_trait};

mlflow_tracing_manager::counter_set! {
    /// Counters of a [`UcTableExporter`].
    pub struct UcTableExporterStats;
    struct Counters;
    counters {
        /// Spans the span endpoint accepted.
        spans_logged,
        /// Spans that could not be logged (request failed, or no table for their location).
        spans_failed,
        /// OTLP requests sent.
        span_requests,
        /// Trace infos stored (V4, or V3 for experiment locations and fallbacks).
        traces_logged,
        /// Trace infos that could not be stored.
        traces_failed,
        /// Trace infos sent to StartTraceV3 after the V4 endpoint failed.
        v3_fallbacks,
    }
}

/// Writes spans and trace infos to Unity Catalog tables (see the crate docs).
pub struct UcTableExporter {
    client: TrackingClient,
    fallback_experiment: Option<String>,
    counters: Counters,
    warned: AtomicBool,
}

impl std::fmt::Debug for UcTableExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UcTableExporter")
            .field("client", &self.client)
            .field("fallback_experiment", &self.fallback_experiment)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The fully qualified spans table of a Unity Catalog location.
fn spans_table(location: &TraceLocation) -> Option<String> {
    match location {
        TraceLocation::UcSchema(l) => Some(l.full_otel_spans_table_name()),
        TraceLocation::UcTablePrefix(l) => l.spans_table_name.clone(),
        _ => None,
    }
}

impl UcTableExporter {
    /// An exporter writing through `client` (whose tracking URI is the Databricks host).
    pub fn new(client: TrackingClient) -> Self {
        UcTableExporter {
            client,
            fallback_experiment: None,
            counters: Counters::default(),
            warned: AtomicBool::new(false),
        }
    }

    /// An exporter for the workspace and credentials of `DATABRICKS_HOST`,
    /// `DATABRICKS_TOKEN` or `DATABRICKS_CLIENT_ID` / `DATABRICKS_CLIENT_SECRET`.
    ///
    /// # Errors
    /// [`ClientError::Config`] when the host or the credentials are missing.
    pub fn from_env() -> Result<Self, ClientError> {
        Ok(Self::new(TrackingClient::new(
            ClientConfig::from_databricks_env()?,
        )?))
    }

    /// When the V4 endpoint fails, store the trace info in this experiment through
    /// StartTraceV3 (MLflow falls back when the trace's location has an experiment).
    #[must_use]
    pub fn with_v3_fallback_experiment(mut self, experiment_id: impl Into<String>) -> Self {
        self.fallback_experiment = Some(experiment_id.into());
        self
    }

    /// The counters now.
    pub fn stats(&self) -> UcTableExporterStats {
        self.counters.snapshot()
    }

    /// Logs a failure: the first as a warning, later ones at debug.
    fn report(&self, message: &str) {
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!("Unity Catalog trace export failed: {message}");
        } else {
            mlflow_tracing_manager::notice::visible(|| {
                tracing::warn!(
                    "Unity Catalog trace export failed: {message} (later failures are logged at debug level and counted)"
                )
            });
        }
    }

    async fn log_trace(&self, mut trace: Trace) -> Result<(), ClientError> {
        trace.add_size_stats();
        if !trace.info.trace_location.is_uc() {
            self.client.start_trace_v3(&trace.info).await?;
            return Ok(());
        }
        match self.client.create_trace_info_v4(&trace.info).await {
            Ok(_) => Ok(()),
            Err(e) => match &self.fallback_experiment {
                Some(experiment) => {
                    tracing::debug!("falling back to StartTraceV3 after: {e}");
                    trace.info.trace_location = TraceLocation::experiment(experiment.clone());
                    self.client.start_trace_v3(&trace.info).await?;
                    self.counters.v3_fallbacks.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                None => Err(e),
            },
        }
    }
}

#[async_trait]
impl TraceExporter for UcTableExporter {
    fn wants_spans(&self) -> bool {
        true
    }

    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        let total = batch.len() as u64;
        let mut tables: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        let mut traces = Vec::new();
        let mut failed = 0u64;
        let mut first_error: Option<String> = None;
        for item in batch {
            match item {
                // Spans of experiment-location traces are not for UC tables (as in MLflow).
                ExportItem::Span(s) if !s.location.is_uc() => {}
                ExportItem::Span(s) => match spans_table(&s.location) {
                    Some(table) => tables.entry(table).or_default().push(s.span),
                    None => {
                        failed += 1;
                        self.counters.spans_failed.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| {
                            format!(
                                "span of {} has no Unity Catalog spans table ({:?})",
                                s.trace_id, s.location
                            )
                        });
                    }
                },
                ExportItem::Trace(t) if !t.remote => traces.push(t.trace),
                // Remote traces: their spans were logged as span items.
                _ => {}
            }
        }
        for (table, spans) in &tables {
            self.counters.span_requests.fetch_add(1, Ordering::Relaxed);
            let n = spans.len() as u64;
            match self.client.log_spans_to_uc_table(table, spans).await {
                Ok(()) => {
                    self.counters.spans_logged.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    let message = format!("{n} span(s) to {table}: {e}");
                    self.report(&message);
                    self.counters.spans_failed.fetch_add(n, Ordering::Relaxed);
                    failed += n;
                    first_error.get_or_insert(message);
                }
            }
        }
        for trace in traces {
            let trace_id = trace.info.trace_id.clone();
            match self.log_trace(trace).await {
                Ok(()) => {
                    self.counters.traces_logged.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    let message = format!("trace info {trace_id}: {e}");
                    self.report(&message);
                    self.counters.traces_failed.fetch_add(1, Ordering::Relaxed);
                    failed += 1;
                    first_error.get_or_insert(message);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(message) => Err(ExportError::new(format!(
                "{failed} of {total} item(s) failed; first: {message}"
            ))
            .with_failed_items(failed)),
        }
    }
}
