//! The errors of this crate: configuration, export, lifecycle and span API misuse.

use std::time::Duration;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable holds a value of the wrong kind (MLflow raises here too).
    #[error("environment variable {name}={value:?} is not a valid {expected}")]
    InvalidEnv {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What was expected, e.g. `boolean (true/false/1/0)`.
        expected: &'static str,
    },
    /// A setting outside its allowed range.
    #[error("{setting} must be {allowed}, got {value}")]
    OutOfRange {
        /// The setting, e.g. `sampling ratio`.
        setting: &'static str,
        /// The allowed range, e.g. `within [0, 1]`.
        allowed: &'static str,
        /// The rejected value.
        value: String,
    },
}

/// A failed export, as reported by a [`TraceExporter`](crate::TraceExporter).
///
/// Exporters keep their own error enums and convert into this one with [`ExportError::new`].
/// When only some items of a batch failed, [`ExportError::with_failed_items`] says how many, so
/// the others are counted as exported.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ExportError {
    error: Box<dyn std::error::Error + Send + Sync + 'static>,
    failed_items: Option<u64>,
}

impl ExportError {
    /// Wraps an exporter's error (every item of the batch failed).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        ExportError {
            error: error.into(),
            failed_items: None,
        }
    }

    /// Says that only `n` items of the batch failed.
    #[must_use]
    pub fn with_failed_items(mut self, n: u64) -> Self {
        self.failed_items = Some(n);
        self
    }

    /// How many items failed, when not all of them did.
    pub fn failed_items(&self) -> Option<u64> {
        self.failed_items
    }

    /// The exporter's error.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }
}

/// The outcome of `force_flush` and `shutdown`, shared by every layer of the SDK.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LifecycleError {
    /// The component was already shut down.
    #[error("already shut down")]
    AlreadyShutdown,
    /// The operation did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Something failed inside; the message says what.
    #[error("internal failure: {0}")]
    InternalFailure(String),
}

/// Misuse of the span API that MLflow reports as an error or a warning.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpanApiError {
    /// There is no active span (e.g. `update_current_trace` outside any span).
    #[error("no active span: call this inside a traced function or a started span")]
    NoActiveSpan,
    /// The trace of the active span has already been finished (or evicted) and cannot change.
    #[error("trace {0} is no longer in progress")]
    TraceNotInProgress(String),
    /// A trace state other than `OK` or `ERROR` was given.
    #[error("invalid trace state {0:?}: only OK and ERROR can be set")]
    InvalidState(String),
    /// Incoming headers carry no `traceparent`.
    #[error("no traceparent header in the request headers")]
    MissingTraceparent,
    /// The `traceparent` header cannot be parsed.
    #[error("invalid traceparent header {0:?}")]
    InvalidTraceparent(String),
    /// A value given as JSON text is not JSON.
    #[error("the value of attribute {key:?} is not JSON: {reason}")]
    InvalidJson {
        /// The attribute.
        key: String,
        /// What the parser said.
        reason: String,
    },
}
