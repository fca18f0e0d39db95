//! The inference-table buffer of MLflow Tracing for Rust, for model-serving hosts.
//!
//! In Databricks model serving, MLflow keeps each finished trace in a TTL cache keyed by the
//! serving request id, and the serving container pops it (`pop_trace(request_id)`) to write the
//! inference table. [`InferenceTableBuffer`] is that cache: a [`Dispatch`] that stores each
//! finished trace, in `Trace.to_json()` form (MLflow's `trace.to_dict()`), under its
//! `client_request_id`, on the thread that finished it, so `pop_trace` sees the trace as soon
//! as the request's root span has ended. It is a moka cache with MLflow's limits
//! (`MLFLOW_TRACE_BUFFER_TTL_SECONDS` = 3600, `MLFLOW_TRACE_BUFFER_MAX_SIZE` = 1000 traces);
//! expired and evicted traces are counted.
//!
//! Use it with a tracer whose destination is
//! [`TraceDestination::InferenceTable`](mlflow_tracing_manager::TraceDestination), and attach a
//! [`ServingRequest`](mlflow_tracing_manager::ServingRequest) (from the `X-Request-Id` header)
//! around each request. Optionally, [`InferenceTableBuffer::with_forward`] also hands every
//! trace that has an experiment to another dispatcher (the facade passes the export runtime's
//! worker with the MLflow server exporter when `MLFLOW_EXPERIMENT_ID` is set), which never delays
//! `pop_trace`.
//!
//! ```
//! use std::sync::Arc;
//! use mlflow_tracing_manager::{ServingRequest, TraceDestination, Tracer, start_span};
//! use mlflow_tracing_exporter_inference_table::InferenceTableBuffer;
//!
//! let buffer = InferenceTableBuffer::new(std::time::Duration::from_secs(3600), 1000);
//! let tracer = Tracer::builder()
//!     .with_destination(TraceDestination::InferenceTable { experiment_id: None })
//!     .with_dispatch(Arc::new(buffer.clone()))
//!     .build()?;
//! let request = ServingRequest::from_headers([("X-Request-Id", "req-1")]).unwrap();
//! tracer.in_scope(|| request.in_scope(|| drop(start_span("predict").start())));
//! let json = buffer.pop_trace("req-1").expect("buffered");
//! let trace = mlflow_tracing_entities::Trace::from_json(&json)?;
//! assert_eq!(trace.info.client_request_id.as_deref(), Some("req-1"));
//! assert!(buffer.pop_trace("req-1").is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(test(attr(deny(warnings))))]

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mlflow_tracing_manager::{
    ConfigError, Dispatch, ExportItem, LifecycleError, MLFLOW_TRACE_BUFFER_MAX_SIZE,
    MLFLOW_TRACE_BUFFER_TTL_SECONDS, read_env,
};
use moka::notification::RemovalCause;
use moka::sync::Cache;

mlflow_tracing_manager::counter_set! {
    /// Counters of an [`InferenceTableBuffer`].
    pub struct InferenceTableStats;
    struct Counters;
    counters {
        /// Traces stored.
        buffered,
        /// Traces returned by `pop_trace`.
        popped,
        /// Traces removed unpopped because they outlived the TTL.
        expired,
        /// Traces removed unpopped because the buffer was full.
        evicted,
        /// Traces not stored: no request id, a remote (continued) trace, or not serializable.
        rejected,
        /// Traces handed to the forward dispatcher.
        forwarded,
    }
    extra {
        /// Traces in the buffer now.
        len: u64,
    }
}

struct Inner {
    cache: Cache<String, Arc<str>>,
    counters: Arc<Counters>,
    forward: Option<Arc<dyn Dispatch>>,
}

/// The buffer of finished traces by serving request id (see the crate docs). Cheap to clone.
#[derive(Clone)]
pub struct InferenceTableBuffer {
    inner: Arc<Inner>,
}

impl fmt::Debug for InferenceTableBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InferenceTableBuffer")
            .field("stats", &self.stats())
            .field("forward", &self.inner.forward)
            .finish()
    }
}

impl InferenceTableBuffer {
    /// A buffer keeping each trace at most `ttl` (at most 100 years), and at most `max_size`
    /// traces.
    pub fn new(ttl: Duration, max_size: u64) -> Self {
        // moka refuses (panics on) a TTL above 1000 years.
        let ttl = ttl.min(Duration::from_secs(100 * 365 * 24 * 3600));
        let counters = Arc::new(Counters::default());
        let listener_counters = counters.clone();
        let cache = Cache::builder()
            .max_capacity(max_size)
            .time_to_live(ttl)
            .eviction_listener(move |key: Arc<String>, _value, cause| {
                let counter = match cause {
                    RemovalCause::Expired => &listener_counters.expired,
                    RemovalCause::Size => &listener_counters.evicted,
                    // Popped or replaced: not a loss.
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(request_id = %key, ?cause, "inference-table trace removed unpopped");
            })
            .build();
        InferenceTableBuffer {
            inner: Arc::new(Inner {
                cache,
                counters,
                forward: None,
            }),
        }
    }

    /// A buffer with MLflow's limits from `MLFLOW_TRACE_BUFFER_TTL_SECONDS` (3600) and
    /// `MLFLOW_TRACE_BUFFER_MAX_SIZE` (1000).
    ///
    /// # Errors
    /// [`ConfigError`] when a variable does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        let ttl =
            read_env::<u64>(MLFLOW_TRACE_BUFFER_TTL_SECONDS, "integer (seconds)")?.unwrap_or(3600);
        let max = read_env::<u64>(MLFLOW_TRACE_BUFFER_MAX_SIZE, "integer")?.unwrap_or(1000);
        Ok(Self::new(Duration::from_secs(ttl), max))
    }

    /// Also hands each trace that has an experiment to `forward` (e.g. the export runtime's
    /// worker running the MLflow server exporter), after storing it.
    #[must_use]
    pub fn with_forward(self, forward: Arc<dyn Dispatch>) -> Self {
        let inner = Arc::new(Inner {
            cache: self.inner.cache.clone(),
            counters: self.inner.counters.clone(),
            forward: Some(forward),
        });
        InferenceTableBuffer { inner }
    }

    /// Removes and returns the trace of `request_id`, as `Trace.to_json()` text (parse it with
    /// `mlflow_tracing_entities::Trace::from_json`); `None` when there is none (never stored,
    /// popped already, expired or evicted).
    pub fn pop_trace(&self, request_id: &str) -> Option<String> {
        // `get` honours the TTL (`remove` alone would return an expired entry); of concurrent
        // pops, only one gets the value from `remove`.
        let live = self.inner.cache.get(request_id).is_some();
        match live.then(|| self.inner.cache.remove(request_id)).flatten() {
            Some(json) => {
                self.inner.counters.popped.fetch_add(1, Ordering::Relaxed);
                Some(json.to_string())
            }
            None => {
                tracing::debug!(request_id, "no inference-table trace for this request id");
                None
            }
        }
    }

    /// The counters now (pending expiries are applied first).
    pub fn stats(&self) -> InferenceTableStats {
        self.inner.cache.run_pending_tasks();
        let mut stats = self.inner.counters.snapshot();
        stats.len = self.inner.cache.entry_count();
        stats
    }

    fn reject(&self, why: &str, trace_id: &str) {
        self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
        mlflow_tracing_manager::notice::visible(|| {
            tracing::warn!(trace_id, "inference-table trace not buffered: {why}")
        });
    }
}

impl Dispatch for InferenceTableBuffer {
    fn dispatch(&self, item: ExportItem) {
        let ExportItem::Trace(item) = item else {
            return;
        };
        let trace = &item.trace;
        if item.remote {
            self.reject(
                "a trace continued from a remote caller",
                &trace.info.trace_id,
            );
            return;
        }
        let Some(request_id) = trace.info.client_request_id.clone() else {
            self.reject("no serving request id", &trace.info.trace_id);
            return;
        };
        match trace.to_json() {
            Ok(json) => {
                self.inner.cache.insert(request_id, Arc::from(json));
                self.inner.counters.buffered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.reject(&format!("cannot serialize it: {e}"), &trace.info.trace_id);
                return;
            }
        }
        if let Some(forward) = &self.inner.forward
            && trace.info.experiment_id().is_some()
        {
            self.inner
                .counters
                .forwarded
                .fetch_add(1, Ordering::Relaxed);
            forward.dispatch(ExportItem::Trace(item));
        }
    }

    fn wants_spans(&self) -> bool {
        false
    }

    fn force_flush(&self, timeout: Duration) -> Result<(), LifecycleError> {
        match &self.inner.forward {
            Some(f) => f.force_flush(timeout),
            None => Ok(()),
        }
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), LifecycleError> {
        match &self.inner.forward {
            Some(f) => f.shutdown(timeout),
            None => Ok(()),
        }
    }
}
