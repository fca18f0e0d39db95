//! The exporter of MLflow Tracing for Rust to an MLflow tracking server.
//!
//! [`MlflowExporter`] is a [`TraceExporter`]: it runs on the export runtime's worker (or on the
//! caller's thread with `MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false`) and writes each finished
//! trace the way MLflow 3.17's Python SDK does, with fewer requests:
//!
//! 1. the spans of every trace in the batch go to `POST /v1/traces` as **one** OTLP protobuf
//!    request per experiment (Python sends one request per span in sync mode and per 5 spans in
//!    async mode);
//! 2. then each trace's info, with size stats, goes to StartTraceV3
//!    (`POST /api/3.0/mlflow/traces`);
//! 3. when the returned info says the spans are not in the tracking store
//!    (`mlflow.trace.spansLocation`), the trace's spans are uploaded as `traces.json` through
//!    the artifact proxy.
//!
//! Span logging needs a server ≥ 3.4 (`GET /version`, probed once); an older server, or a 501
//! "REST OTLP span logging is not supported" (a file-store server), turns it off for the life
//! of the exporter and every trace takes the `traces.json` path. Traces continued from a remote
//! `traceparent` only log their spans (the caller's process writes the trace info), as MLflow
//! does.
//!
//! `MLFLOW_EXPERIMENT_NAME` ([`MlflowExporter::with_experiment_name`]): traces of the default
//! experiment `"0"` go to the named experiment, looked up (or created) once, on the worker, at
//! the first export. Unlike Python, the caller never waits for that lookup.
//!
//! Failures are counted by the runtime per trace ([`ExportError::with_failed_items`]) and
//! logged: 401/403 at ERROR ("refresh your credentials"), others at WARN. Nothing is retried
//! at this layer beyond the client's own HTTP retries.
#![doc(test(attr(deny(warnings))))]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use mlflow_tracing_client::{ClientError, TrackingClient};
use mlflow_tracing_entities::keys::tag;
use mlflow_tracing_entities::{Trace, TraceLocation};
use mlflow_tracing_manager::{ExportError, ExportItem, TraceExporter, async_trait};
use tokio::sync::OnceCell;

pub use mlflow_tracing_client as client;
pub use spooling::{
    DEFAULT_SPOOL_MAX_BYTES, MLFLOW_TRACING_SPOOL_DIR, MLFLOW_TRACING_SPOOL_MAX_BYTES, SpoolError,
    SpoolStats,
};

mod failures;
mod spooling;
use spooling::Spooling;

/// `MLFLOW_EXPERIMENT_NAME`: the experiment traces of the default experiment go to.
pub const MLFLOW_EXPERIMENT_NAME: &str = "MLFLOW_EXPERIMENT_NAME";

/// The default experiment's id.
const DEFAULT_EXPERIMENT_ID: &str = "0";

/// The longest a replay of the spool runs at once (in an export, a flush or the shutdown).
const REPLAY_BUDGET: Duration = Duration::from_secs(5);

/// At most this many spans per OTLP request (unless one trace has more).
const MAX_SPANS_PER_REQUEST: usize = 1000;

const SPAN_LOGGING_UNKNOWN: u8 = 0;
const SPAN_LOGGING_ON: u8 = 1;
const SPAN_LOGGING_OFF: u8 = 2;

mlflow_tracing_manager::counter_set! {
    /// Counters of an [`MlflowExporter`].
    pub struct MlflowExporterStats;
    struct Counters;
    counters {
        /// Traces whose info the server stored (StartTraceV3 answered 200).
        traces_logged,
        /// Traces that could not be stored (counted as failed by the runtime too).
        traces_failed,
        /// Spans the server accepted through OTLP.
        spans_logged,
        /// OTLP requests sent (`POST /v1/traces`).
        otlp_requests,
        /// OTLP requests that failed.
        otlp_failures,
        /// `traces.json` uploads (the fallback path).
        artifact_uploads,
    }
    extra {
        /// Whether span logging is on (false once the server said it cannot store spans).
        span_logging: bool,
    }
}

/// Writes finished traces to an MLflow tracking server (see the crate docs).
#[derive(Debug)]
pub struct MlflowExporter {
    client: TrackingClient,
    experiment_name: Option<String>,
    experiment: OnceCell<String>,
    span_logging: AtomicU8,
    counters: Counters,
    spooling: Option<Spooling>,
    /// Credential (1) and permission (2) refusals already reported at ERROR.
    auth_reported: AtomicU8,
    /// The server's version, when it is too old to store traces (before 3.2: no StartTraceV3).
    too_old: std::sync::OnceLock<String>,
}

impl MlflowExporter {
    /// An exporter writing through `client`.
    pub fn new(client: TrackingClient) -> Self {
        MlflowExporter {
            client,
            experiment_name: None,
            experiment: OnceCell::new(),
            span_logging: AtomicU8::new(SPAN_LOGGING_UNKNOWN),
            counters: Counters::default(),
            spooling: None,
            auth_reported: AtomicU8::new(0),
            too_old: std::sync::OnceLock::new(),
        }
    }

    /// An exporter configured from MLflow's environment variables: the client's
    /// (`MLFLOW_TRACKING_URI`, auth, TLS, retries) and `MLFLOW_EXPERIMENT_NAME`.
    ///
    /// # Errors
    /// [`ClientError::Config`] when `MLFLOW_TRACKING_URI` is unset or a setting is invalid.
    pub fn from_env() -> Result<Self, ClientError> {
        let mut exporter = Self::new(TrackingClient::from_env()?);
        if let Ok(name) = std::env::var(MLFLOW_EXPERIMENT_NAME)
            && !name.is_empty()
        {
            exporter = exporter.with_experiment_name(name);
        }
        if let Ok(dir) = std::env::var(MLFLOW_TRACING_SPOOL_DIR)
            && !dir.is_empty()
        {
            let max = match std::env::var(MLFLOW_TRACING_SPOOL_MAX_BYTES) {
                Ok(v) => v.trim().parse().map_err(|_| {
                    ClientError::Config(format!(
                        "{MLFLOW_TRACING_SPOOL_MAX_BYTES}={v:?} is not a number of bytes"
                    ))
                })?,
                Err(_) => DEFAULT_SPOOL_MAX_BYTES,
            };
            exporter = exporter
                .with_spool(dir, max)
                .map_err(|e| ClientError::Config(format!("{MLFLOW_TRACING_SPOOL_DIR}: {e}")))?;
        }
        Ok(exporter)
    }

    /// Sends traces of the default experiment (`"0"`) to the experiment named `name`, created
    /// if missing; resolved once, at the first export.
    #[must_use]
    pub fn with_experiment_name(mut self, name: impl Into<String>) -> Self {
        self.experiment_name = Some(name.into());
        self
    }

    /// Turns OTLP span logging off (`false`): every trace then goes as StartTraceV3 plus a
    /// `traces.json` upload, as with servers older than 3.4. For proxies that block
    /// `/v1/traces`; the spans are then not searchable on the server.
    #[must_use]
    pub fn with_span_logging(self, on: bool) -> Self {
        self.span_logging.store(
            if on {
                SPAN_LOGGING_UNKNOWN
            } else {
                SPAN_LOGGING_OFF
            },
            Ordering::Relaxed,
        );
        self
    }

    /// Keeps traces the server could not take (after the client's retries, or while it is
    /// unreachable) in a durable spool in `dir`, at most `max_bytes`, and sends them when the
    /// server answers again; the next process using `dir` sends what this one left
    /// (`MLFLOW_TRACING_SPOOL_DIR`, `MLFLOW_TRACING_SPOOL_MAX_BYTES`). Spooled traces count as
    /// exported for the export runtime; [`MlflowExporter::spool_stats`] counts them.
    ///
    /// # Errors
    /// [`SpoolError`] when the directory cannot be created or read.
    pub fn with_spool(
        mut self,
        dir: impl Into<PathBuf>,
        max_bytes: u64,
    ) -> Result<Self, SpoolError> {
        self.spooling = Some(Spooling::open(dir.into(), max_bytes, &self.client)?);
        Ok(self)
    }

    /// From now on, traces go to the spool without trying the server (for a process about to
    /// end: nothing waits on the network any more); false without a spool.
    pub fn spool_remaining(&self) -> bool {
        match &self.spooling {
            Some(s) => {
                s.drain();
                true
            }
            None => false,
        }
    }

    /// Whether traces wait in the spool (this process's or an earlier one's).
    pub fn spool_waiting(&self) -> bool {
        self.spooling
            .as_ref()
            .is_some_and(|s| s.spool.has_records())
    }

    /// The spool's counters (spooled, replayed, dropped past the cap, corrupt), when there is
    /// a spool.
    pub fn spool_stats(&self) -> Option<SpoolStats> {
        self.spooling.as_ref().map(|s| s.spool.stats())
    }

    /// The client.
    pub fn client(&self) -> &TrackingClient {
        &self.client
    }

    /// The counters now.
    pub fn stats(&self) -> MlflowExporterStats {
        let mut stats = self.counters.snapshot();
        stats.span_logging = self.span_logging.load(Ordering::Relaxed) != SPAN_LOGGING_OFF;
        stats
    }

    /// The named experiment's id, looked up or created once through `client` (a failure is
    /// retried at the next export).
    async fn named_experiment(&self, client: &TrackingClient) -> Result<Option<&str>, ClientError> {
        let Some(name) = &self.experiment_name else {
            return Ok(None);
        };
        let id = self
            .experiment
            .get_or_try_init(|| async {
                let id = client.get_or_create_experiment(name).await?;
                tracing::info!(experiment = %name, experiment_id = %id, "MLflow experiment resolved");
                Ok::<_, ClientError>(id)
            })
            .await?;
        Ok(Some(id.as_str()))
    }

    /// Whether to log spans through OTLP: probes `GET /version` once through `client` (≥ 3.4
    /// needed).
    async fn span_logging_on(&self, client: &TrackingClient) -> bool {
        match self.span_logging.load(Ordering::Acquire) {
            SPAN_LOGGING_ON => return true,
            SPAN_LOGGING_OFF => return false,
            _ => {}
        }
        match client.version().await {
            Ok(version) => {
                if !at_least(&version, (3, 2)) && self.too_old.set(version.clone()).is_ok() {
                    mlflow_tracing_manager::notice::visible(|| {
                        tracing::error!(
                            server_version = %version,
                            "the MLflow server is version {version}: it cannot store traces \
                             from this SDK, which needs MLflow 3.2 or later (the first with \
                             StartTraceV3). Traces are NOT saved and are counted as failed; \
                             upgrade the tracking server"
                        )
                    });
                }
                let supported = supports_otlp(&version);
                if !supported {
                    tracing::info!(
                        server_version = %version,
                        "the MLflow server is older than 3.4: spans are uploaded as traces.json"
                    );
                }
                self.span_logging.store(
                    if supported {
                        SPAN_LOGGING_ON
                    } else {
                        SPAN_LOGGING_OFF
                    },
                    Ordering::Release,
                );
                supported
            }
            // Unreachable now: try OTLP anyway and probe again next time.
            Err(e) => {
                tracing::debug!("MLflow server version probe failed: {e}");
                true
            }
        }
    }

    /// Logs the spans of `traces` (one experiment), one OTLP request per chunk; the traces
    /// whose spans were not logged, with the error.
    async fn log_spans<'t>(
        &self,
        client: &TrackingClient,
        experiment_id: &str,
        traces: &[&'t Trace],
    ) -> Vec<(&'t str, ClientError)> {
        // Chunks end at trace boundaries, so a trace is never half-logged.
        let mut chunks: Vec<Vec<&Trace>> = vec![Vec::new()];
        let mut spans_in_last = 0;
        for trace in traces {
            if spans_in_last > 0 && spans_in_last + trace.data.spans.len() > MAX_SPANS_PER_REQUEST {
                chunks.push(Vec::new());
                spans_in_last = 0;
            }
            spans_in_last += trace.data.spans.len();
            if let Some(chunk) = chunks.last_mut() {
                chunk.push(trace);
            }
        }
        let mut failed = Vec::new();
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            self.counters.otlp_requests.fetch_add(1, Ordering::Relaxed);
            let spans = chunk.iter().flat_map(|t| t.data.spans.iter());
            match client.log_spans(experiment_id, spans).await {
                Ok(()) => {
                    let n: usize = chunk.iter().map(|t| t.data.spans.len()).sum();
                    self.counters
                        .spans_logged
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.counters.otlp_failures.fetch_add(1, Ordering::Relaxed);
                    // 501 (a store that cannot hold spans), or a 404 without an MLflow error
                    // code (no such endpoint); a 404 `RESOURCE_DOES_NOT_EXIST` is an unknown
                    // experiment and says nothing about the server.
                    let unsupported = e.status() == Some(501)
                        || (e.status() == Some(404) && e.code().is_none())
                        || e.server_message()
                            .contains("REST OTLP span logging is not supported");
                    if unsupported {
                        tracing::info!(
                            "the MLflow server cannot store spans ({e}); spans are uploaded as traces.json from now on"
                        );
                        self.span_logging.store(SPAN_LOGGING_OFF, Ordering::Release);
                        return Vec::new();
                    }
                    // The trace info still goes out; without the spans-location tag the spans
                    // are uploaded as traces.json.
                    tracing::debug!("MLflow span logging failed: {e}");
                    for t in chunk {
                        failed.push((t.info.trace_id.as_str(), e.clone()));
                    }
                }
            }
        }
        failed
    }

    /// StartTraceV3, then `traces.json` when the server does not hold the spans.
    async fn log_trace(
        &self,
        client: &TrackingClient,
        trace: &mut Trace,
    ) -> Result<(), ClientError> {
        trace.add_size_stats();
        let stored = client.start_trace_v3(&trace.info).await?;
        let in_store = stored.tags.get(tag::SPANS_LOCATION).map(String::as_str)
            == Some(tag::SPANS_LOCATION_TRACKING_STORE);
        if !in_store {
            client.upload_trace_data(&stored, &trace.data).await?;
            self.counters
                .artifact_uploads
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// One spooled trace, the normal way: its spans, then (unless remote) its info.
    async fn deliver(
        &self,
        client: TrackingClient,
        mut trace: Trace,
        remote: bool,
    ) -> Result<(), ClientError> {
        if let Some(id) = self.named_experiment(&client).await?
            && trace.info.experiment_id() == Some(DEFAULT_EXPERIMENT_ID)
        {
            trace.info.trace_location = TraceLocation::experiment(id);
        }
        let Some(experiment_id) = trace.info.experiment_id().map(str::to_owned) else {
            return Err(ClientError::Config(format!(
                "trace {}: not in an MLflow experiment",
                trace.info.trace_id
            )));
        };
        let span_logging = self.span_logging_on(&client).await;
        if remote && !span_logging {
            // Only its spans are ours to send, and this server cannot store them.
            return Err(ClientError::Config(format!(
                "trace {}: the server cannot store spans of a distributed trace",
                trace.info.trace_id
            )));
        }
        if span_logging
            && let Some((_, e)) = self
                .log_spans(&client, &experiment_id, &[&trace])
                .await
                .into_iter()
                .next()
            && (remote || spooling::is_transient(&e))
        {
            return Err(e);
        }
        if remote {
            return Ok(());
        }
        self.log_trace(&client, &mut trace).await?;
        self.counters.traces_logged.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Replays the spool when a replay is due (`force`: whatever the backoff says).
    async fn replay_spool(&self, force: bool, budget: Duration) {
        let Some(spooling) = &self.spooling else {
            return;
        };
        if !spooling.replay_due(force) {
            return;
        }
        let outcome = spooling
            .replay(budget, |client, trace, remote| {
                self.deliver(client, trace, remote)
            })
            .await;
        self.counters
            .traces_failed
            .fetch_add(outcome.refused, Ordering::Relaxed);
    }

    /// Writes `traces` to the spool (one batch; trace by trace if the batch fails, so one bad
    /// trace does not cost the others); how many could not be written (lost, counted by the
    /// caller).
    fn spool(&self, traces: &[(&Trace, bool)]) -> u64 {
        let Some(spooling) = &self.spooling else {
            return traces.len() as u64;
        };
        let records: Vec<Option<Vec<u8>>> = traces
            .iter()
            .map(|(t, remote)| spooling::encode(t, *remote))
            .collect();
        let good: Vec<Vec<u8>> = records.iter().flatten().cloned().collect();
        let mut lost = (records.len() - good.len()) as u64;
        if spooling.write(&good).is_err() {
            for record in good {
                if let Err(e) = spooling.write(std::slice::from_ref(&record)) {
                    lost += 1;
                    mlflow_tracing_manager::notice::visible(|| {
                        tracing::error!(
                            "a trace could not be written to the MLflow trace spool: {e}"
                        )
                    });
                }
            }
        }
        lost
    }
}

/// Whether a server version string is 3.4 or later.
fn supports_otlp(version: &str) -> bool {
    at_least(version, (3, 4))
}

/// Whether a server version string is at least `(major, minor)` (garbage is not).
fn at_least(version: &str, wanted: (u32, u32)) -> bool {
    let mut parts = version.trim().split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    });
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= wanted
}

#[async_trait]
impl TraceExporter for MlflowExporter {
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        let mut items = Vec::with_capacity(batch.len());
        let mut ignored = 0u64;
        for item in batch {
            match item {
                ExportItem::Trace(t) => items.push(*t),
                _ => ignored += 1,
            }
        }
        let total = items.len() as u64 + ignored;
        let mut failed = 0u64;
        let mut first_error: Option<String> = None;
        let mut fail = |n: u64, message: String| {
            failed += n;
            first_error.get_or_insert(message);
        };

        // The named experiment replaces the default one.
        match self.named_experiment(&self.client).await {
            Ok(Some(id)) => {
                for item in &mut items {
                    if item.trace.info.experiment_id() == Some(DEFAULT_EXPERIMENT_ID) {
                        item.trace.info.trace_location = TraceLocation::experiment(id);
                    }
                }
            }
            Ok(None) => {}
            // With a spool and a server that does not answer: spooled as they are; the
            // experiment is resolved when they are replayed.
            Err(e) if self.spooling.is_some() && spooling::is_transient(&e) => {
                if let Some(s) = &self.spooling {
                    s.mark_down();
                }
                let refs: Vec<(&Trace, bool)> =
                    items.iter().map(|i| (&i.trace, i.remote)).collect();
                let lost = self.spool(&refs);
                if lost > 0 {
                    self.counters
                        .traces_failed
                        .fetch_add(lost, Ordering::Relaxed);
                    return Err(ExportError::new(format!(
                        "{lost} traces could not be written to the spool"
                    ))
                    .with_failed_items(lost));
                }
                return Ok(());
            }
            Err(e) => {
                let message = format!(
                    "cannot resolve the MLflow experiment {:?}: {e}",
                    self.experiment_name.as_deref().unwrap_or_default()
                );
                mlflow_tracing_manager::notice::visible(|| tracing::warn!("{message}"));
                self.counters
                    .traces_failed
                    .fetch_add(items.len() as u64, Ordering::Relaxed);
                return Err(ExportError::new(message).with_failed_items(items.len() as u64));
            }
        }

        // With a spool: a replay first when one is due (it may find the server back); while
        // the server is down, traces go straight to the spool.
        self.replay_spool(false, REPLAY_BUDGET).await;
        let server_down = || self.spooling.as_ref().is_some_and(Spooling::server_down);

        // Spans first, grouped by experiment, so the server has them before the trace info
        // (then it needs no traces.json).
        let span_logging = !server_down() && self.span_logging_on(&self.client).await;
        if let Some(version) = self.too_old.get() {
            let n = items.len() as u64;
            self.counters.traces_failed.fetch_add(n, Ordering::Relaxed);
            return Err(ExportError::new(format!(
                "the MLflow server {version} cannot store traces (MLflow 3.2 or later needed)"
            ))
            .with_failed_items(n));
        }
        let mut by_experiment: BTreeMap<String, Vec<&Trace>> = BTreeMap::new();
        for item in &items {
            if let Some(id) = item.trace.info.experiment_id() {
                by_experiment
                    .entry(id.to_owned())
                    .or_default()
                    .push(&item.trace);
            }
        }
        let mut span_failures: HashMap<String, ClientError> = HashMap::new();
        if span_logging && !server_down() {
            for (experiment_id, traces) in &by_experiment {
                for (id, e) in self.log_spans(&self.client, experiment_id, traces).await {
                    span_failures.insert(id.to_owned(), e);
                }
            }
        }

        let mut to_spool: Vec<(Trace, bool)> = Vec::new();
        for mut item in items {
            let trace_id = item.trace.info.trace_id.clone();
            if item.trace.info.experiment_id().is_none() {
                self.counters.traces_failed.fetch_add(1, Ordering::Relaxed);
                fail(
                    1,
                    format!(
                        "trace {trace_id}: not in an MLflow experiment ({:?})",
                        item.trace.info.trace_location
                    ),
                );
                continue;
            }
            if server_down() {
                to_spool.push((item.trace, item.remote));
                continue;
            }
            let result = if item.remote {
                // Someone else's trace: only its spans are ours to log.
                if self.span_logging.load(Ordering::Acquire) == SPAN_LOGGING_OFF {
                    mlflow_tracing_manager::notice::visible(|| {
                        tracing::warn!(
                            trace_id,
                            "spans of a distributed trace were not logged: the MLflow server cannot store spans"
                        )
                    });
                    self.counters.traces_failed.fetch_add(1, Ordering::Relaxed);
                    fail(
                        1,
                        format!(
                            "trace {trace_id}: the server cannot store spans of a distributed trace"
                        ),
                    );
                    continue;
                }
                span_failures.remove(&trace_id).map_or(Ok(()), Err)
            } else {
                self.log_trace(&self.client, &mut item.trace).await
            };
            match result {
                Ok(()) => {
                    if !item.remote {
                        self.counters.traces_logged.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) if self.spooling.is_some() && spooling::is_transient(&e) => {
                    if let Some(s) = &self.spooling {
                        s.mark_down();
                    }
                    to_spool.push((item.trace, item.remote));
                }
                Err(e) => {
                    let experiment_id = item.trace.info.experiment_id().unwrap_or_default();
                    failures::log_failure(&self.auth_reported, &trace_id, experiment_id, &e);
                    self.counters.traces_failed.fetch_add(1, Ordering::Relaxed);
                    fail(1, format!("trace {trace_id}: {e}"));
                }
            }
        }
        if !to_spool.is_empty() {
            let refs: Vec<(&Trace, bool)> = to_spool.iter().map(|(t, r)| (t, *r)).collect();
            let lost = self.spool(&refs);
            if lost > 0 {
                self.counters
                    .traces_failed
                    .fetch_add(lost, Ordering::Relaxed);
                fail(
                    lost,
                    format!("{lost} traces could not be written to the spool"),
                );
            }
        }
        match first_error {
            None => Ok(()),
            Some(message) => {
                let message = if failed > 1 {
                    format!("{failed} of {total} traces failed; first: {message}")
                } else {
                    message
                };
                Err(ExportError::new(message).with_failed_items(failed))
            }
        }
    }

    /// While the server is down and a spool takes the traces.
    fn exports_locally(&self) -> bool {
        self.spooling.as_ref().is_some_and(Spooling::server_down)
    }

    /// Replays the spool (whatever the backoff says), within a few seconds.
    async fn force_flush(&self) -> Result<(), ExportError> {
        self.replay_spool(true, REPLAY_BUDGET).await;
        Ok(())
    }

    /// As [`MlflowExporter::force_flush`]; what is left stays in the spool for the next process.
    async fn shutdown(&self) -> Result<(), ExportError> {
        self.replay_spool(true, REPLAY_BUDGET).await;
        if let Some(s) = &self.spooling
            && s.spool.has_records()
        {
            mlflow_tracing_manager::notice::visible(|| {
                tracing::warn!(
                    spool = %s.spool.dir().display(),
                    "MLflow traces remain in the spool; a later process using it will send them"
                )
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
