//! The exporter's durable spool (opt-in): traces the server could not take after the client's
//! retries are written to a [`Spool`] instead of being dropped, and replayed when the server
//! answers again (by this process, or by the next one using the same directory).
//!
//! While the server is unreachable, new traces go straight to the spool (no retry budget spent
//! per batch, so the queue never backs up); a replay is tried at most once per backoff period
//! (2 s doubling to 60 s) with a client that does not retry, record by record, oldest first.
//! Replay is idempotent on the server: the same trace id and span ids are merged, not
//! duplicated.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use mlflow_tracing_client::{ClientError, TrackingClient};
use mlflow_tracing_entities::Trace;
use mlflow_tracing_spool::Spool;

pub use mlflow_tracing_spool::{SpoolError, SpoolStats};

/// `MLFLOW_TRACING_SPOOL_DIR`: the spool directory (unset: no spool). Not an MLflow setting;
/// this SDK's own.
pub const MLFLOW_TRACING_SPOOL_DIR: &str = "MLFLOW_TRACING_SPOOL_DIR";
/// `MLFLOW_TRACING_SPOOL_MAX_BYTES`: the spool's cap (default 256 MiB).
pub const MLFLOW_TRACING_SPOOL_MAX_BYTES: &str = "MLFLOW_TRACING_SPOOL_MAX_BYTES";
/// The default cap.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;

const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The time limit of one replay request (a blackholed server must not hold a flush long).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A record: `T` (a trace: spans and info) or `R` (a remote trace: spans only), then the
/// trace's JSON (`Trace.to_json()`).
pub(crate) fn encode(trace: &Trace, remote: bool) -> Option<Vec<u8>> {
    let json = trace.to_json().ok()?;
    let mut out = Vec::with_capacity(json.len() + 1);
    out.push(if remote { b'R' } else { b'T' });
    out.extend_from_slice(json.as_bytes());
    Some(out)
}

fn decode(record: &[u8]) -> Option<(Trace, bool)> {
    let (kind, json) = record.split_first()?;
    let remote = match kind {
        b'T' => false,
        b'R' => true,
        _ => return None,
    };
    Trace::from_json_bytes(json).ok().map(|t| (t, remote))
}

/// Whether an error says the server may take the trace later (no answer, 5xx, 429, 408),
/// rather than that it refuses it.
pub(crate) fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport { .. } => true,
        ClientError::Http { status, .. } => *status >= 500 || matches!(status, 408 | 429),
        _ => false,
    }
}

/// The spool and the exporter's view of the server's health.
#[derive(Debug)]
pub(crate) struct Spooling {
    pub(crate) spool: Spool,
    /// A client that does not retry: a replay attempt costs one request.
    probe: TrackingClient,
    /// The server did not answer: new traces go to the spool until a replay succeeds.
    down: AtomicBool,
    /// The process is ending: everything goes to the spool, no replay is tried.
    draining: AtomicBool,
    /// When the next replay may start, and the backoff after it.
    schedule: Mutex<(Instant, Duration)>,
    /// One replay at a time.
    replaying: tokio::sync::Mutex<()>,
}

/// What one replay did.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// Traces the server refused for good (counted as failed).
    pub(crate) refused: u64,
}

impl Spooling {
    pub(crate) fn open(
        dir: PathBuf,
        max_bytes: u64,
        client: &TrackingClient,
    ) -> Result<Self, SpoolError> {
        let mut config = client.config().clone();
        config.max_retries = 0;
        config.timeout = config.timeout.min(PROBE_TIMEOUT);
        let probe = TrackingClient::new(config).unwrap_or_else(|_| client.clone());
        Ok(Spooling {
            spool: Spool::open(dir, max_bytes)?,
            probe,
            down: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            schedule: Mutex::new((Instant::now(), FIRST_BACKOFF)),
            replaying: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether new traces should skip the server.
    pub(crate) fn server_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// The server failed: spool new traces until a replay goes through.
    pub(crate) fn mark_down(&self) {
        if !self.down.swap(true, Ordering::AcqRel) {
            mlflow_tracing_manager::notice::visible(|| {
                tracing::warn!(
                    spool = %self.spool.dir().display(),
                    "the MLflow server is unreachable: traces are written to the spool and sent when it answers again"
                )
            });
        }
        let mut schedule = self.schedule.lock().unwrap_or_else(PoisonError::into_inner);
        let backoff = schedule.1;
        *schedule = (Instant::now() + backoff, (backoff * 2).min(MAX_BACKOFF));
    }

    fn mark_up(&self) {
        if self.draining.load(Ordering::Acquire) {
            return;
        }
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("the MLflow server answers again: spooled traces are being sent");
        }
        *self.schedule.lock().unwrap_or_else(PoisonError::into_inner) =
            (Instant::now(), FIRST_BACKOFF);
    }

    /// Writes traces to the spool; the ones that could not be written.
    pub(crate) fn write(&self, records: &[Vec<u8>]) -> Result<(), SpoolError> {
        self.spool.append(records.iter().map(Vec::as_slice))
    }

    /// The process is ending: from now on everything goes to the spool and nothing waits on
    /// the network (no replay either).
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.down.store(true, Ordering::Release);
    }

    /// Whether a replay is due (spooled records wait and the backoff has passed); `force`
    /// ignores the backoff (flush and shutdown). Never while draining.
    pub(crate) fn replay_due(&self, force: bool) -> bool {
        if self.draining.load(Ordering::Acquire) {
            return false;
        }
        let due = force
            || Instant::now()
                >= self
                    .schedule
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
        due && self.spool.has_records()
    }

    /// Replays what waits, through `deliver` (the exporter's normal path on the probe client),
    /// until the spool is empty, the server fails again, or `budget` is spent.
    pub(crate) async fn replay<F, Fut>(&self, budget: Duration, deliver: F) -> Replayed
    where
        F: Fn(TrackingClient, Trace, bool) -> Fut,
        Fut: Future<Output = Result<(), ClientError>>,
    {
        let mut outcome = Replayed::default();
        let Ok(_one) = self.replaying.try_lock() else {
            return outcome;
        };
        let started = Instant::now();
        loop {
            let claim = match self.spool.claim() {
                Ok(Some(claim)) => claim,
                Ok(None) => {
                    self.mark_up();
                    return outcome;
                }
                Err(e) => {
                    mlflow_tracing_manager::notice::visible(|| {
                        tracing::warn!("cannot read the MLflow trace spool: {e}")
                    });
                    return outcome;
                }
            };
            let mut delivered = 0;
            let mut stopped = false;
            for record in claim.records() {
                if started.elapsed() > budget {
                    stopped = true;
                    break;
                }
                let Some((trace, remote)) = decode(record) else {
                    mlflow_tracing_manager::notice::visible(|| {
                        tracing::warn!("an unreadable trace in the MLflow trace spool was skipped")
                    });
                    outcome.refused += 1;
                    delivered += 1;
                    continue;
                };
                let trace_id = trace.info.trace_id.clone();
                match deliver(self.probe.clone(), trace, remote).await {
                    Ok(()) => delivered += 1,
                    Err(e) if is_transient(&e) => {
                        tracing::debug!(trace_id, "spool replay stopped: {e}");
                        self.mark_down();
                        stopped = true;
                        break;
                    }
                    Err(e) => {
                        mlflow_tracing_manager::notice::visible(|| {
                            tracing::warn!(
                                trace_id,
                                "a spooled trace was refused by the server: {e}"
                            )
                        });
                        outcome.refused += 1;
                        delivered += 1;
                    }
                }
            }
            if let Err(e) = claim.keep_from(delivered) {
                mlflow_tracing_manager::notice::visible(|| {
                    tracing::warn!("cannot update the MLflow trace spool: {e}")
                });
                return outcome;
            }
            if stopped {
                return outcome;
            }
        }
    }
}
