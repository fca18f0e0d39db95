//! [`WorkerConfig`]: the export runtime's settings, from MLflow's environment variables.

use std::time::Duration;

use mlflow_tracing_manager::{ConfigError, read_env, read_env_bool};

/// Settings of an [`ExportWorker`](crate::ExportWorker) (MLflow's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Capacity of the queue (`MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE`, 1000).
    pub max_queue_size: usize,
    /// Exports running at once (`MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS`, 10).
    pub max_concurrent_exports: usize,
    /// Time limit of one export (`MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT`, 500 s: long enough
    /// for the HTTP client's own retries and backoff, as MLflow allows StartTraceV3).
    pub export_timeout: Duration,
    /// Items per export (`MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE`, 5); 1 means no
    /// batching.
    pub max_batch_size: usize,
    /// Longest wait of a queued item for its batch to fill
    /// (`MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS`, 5000 ms).
    pub max_batch_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_queue_size: 1000,
            max_concurrent_exports: 10,
            export_timeout: Duration::from_secs(500),
            max_batch_size: 5,
            max_batch_interval: Duration::from_millis(5000),
        }
    }
}

/// `MLFLOW_ENABLE_ASYNC_TRACE_LOGGING`: whether exports go through the worker (default true);
/// `false` exports on the caller's thread, as MLflow does (slow).
pub const MLFLOW_ENABLE_ASYNC_TRACE_LOGGING: &str = "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING";
/// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE`.
pub const MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE: &str =
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE";
/// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS`.
pub const MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS: &str = "MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS";

/// `MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT` (seconds): the time limit of one export.
pub const MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT: &str =
    "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT";

/// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE`.
pub const MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE: &str =
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE";
/// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS`.
pub const MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS: &str =
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS";

/// Whether async export is on (`MLFLOW_ENABLE_ASYNC_TRACE_LOGGING`; default true, except in an
/// evcxr notebook kernel, where each trace is exported before the span that ends it returns: the
/// notebook display loads the trace from the server, and the kernel exits without running
/// destructors, so nothing may wait in a queue).
///
/// # Errors
/// [`ConfigError`] when the variable is not a boolean.
pub fn async_logging_enabled() -> Result<bool, ConfigError> {
    Ok(read_env_bool(MLFLOW_ENABLE_ASYNC_TRACE_LOGGING)?
        .unwrap_or(!mlflow_tracing_manager::process_global::in_evcxr()))
}

impl WorkerConfig {
    /// MLflow's defaults overridden by `MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE` and
    /// `MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS`.
    ///
    /// # Errors
    /// [`ConfigError`] when a variable does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(n) = read_env(
            MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE,
            "positive integer",
        )? {
            config.max_queue_size = n;
        }
        if let Some(n) = read_env(MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS, "positive integer")? {
            config.max_concurrent_exports = n;
        }
        if let Some(n) = read_env(
            MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE,
            "positive integer",
        )? {
            config.max_batch_size = n;
        }
        if let Some(secs) = read_env::<u64>(
            MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT,
            "integer (seconds)",
        )? {
            config.export_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(ms) = read_env(
            MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS,
            "integer (ms)",
        )? {
            config.max_batch_interval = Duration::from_millis(ms);
        }
        Ok(config)
    }

    /// Sets [`WorkerConfig::max_queue_size`].
    #[must_use]
    pub fn with_max_queue_size(mut self, n: usize) -> Self {
        self.max_queue_size = n;
        self
    }
    /// Sets [`WorkerConfig::max_concurrent_exports`].
    #[must_use]
    pub fn with_max_concurrent_exports(mut self, n: usize) -> Self {
        self.max_concurrent_exports = n;
        self
    }
    /// Sets [`WorkerConfig::max_batch_size`] and [`WorkerConfig::max_batch_interval`].
    #[must_use]
    pub fn with_batching(mut self, size: usize, interval: Duration) -> Self {
        self.max_batch_size = size;
        self.max_batch_interval = interval;
        self
    }
    /// Sets [`WorkerConfig::export_timeout`].
    #[must_use]
    pub fn with_export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = timeout;
        self
    }
}
