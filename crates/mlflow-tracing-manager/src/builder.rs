//! [`TracerBuilder`]: a tracer's settings, from MLflow's environment variables and code.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mlflow_tracing_entities::{Span, keys};

use crate::destination::TraceDestination;
use crate::env::{self, EnvLookup};
use crate::error::ConfigError;
use crate::export::{Dispatch, TraceExporter};
use crate::limits::SpanLimits;
use crate::tracer::{Tracer, TracerSettings};

impl Tracer {
    /// A builder with MLflow's defaults (environment variables are not read; see
    /// [`TracerBuilder::from_env`]).
    pub fn builder() -> TracerBuilder {
        TracerBuilder::default()
    }
}

/// Builds a [`Tracer`]. Code settings win over environment variables.
#[must_use]
#[derive(Clone)]
pub struct TracerBuilder {
    settings: TracerSettings,
}

impl fmt::Debug for TracerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("TracerBuilder")
            .field("sampling_ratio", &s.sampling_ratio)
            .field("experiment_id", &s.experiment_id)
            .field("buffer_ttl", &s.buffer_ttl)
            .field("buffer_max_size", &s.buffer_max_size)
            .field("trace_timeout", &s.trace_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for TracerBuilder {
    fn default() -> Self {
        TracerBuilder {
            settings: TracerSettings {
                dispatch: None,
                dispatch_wrapper: None,
                exporter: None,
                sampling_ratio: 1.0,
                experiment_id: "0".to_owned(),
                buffer_ttl: Duration::from_secs(3600),
                buffer_max_size: 1000,
                trace_timeout: None,
                timeout_check_interval: Duration::from_secs(1),
                preview_max_chars: keys::PREVIEW_MAX_LENGTH_OSS,
                span_processors: Vec::new(),
                limits: SpanLimits::default(),
                environment_metadata: true,
                enabled: true,
                destination: TraceDestination::Experiment,
            },
        }
    }
}

impl TracerBuilder {
    /// MLflow's defaults overridden by the environment: `MLFLOW_EXPERIMENT_ID`,
    /// `MLFLOW_TRACE_SAMPLING_RATIO`, `MLFLOW_TRACE_BUFFER_TTL_SECONDS`,
    /// `MLFLOW_TRACE_BUFFER_MAX_SIZE`, `MLFLOW_TRACE_TIMEOUT_SECONDS`,
    /// `MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS`, `MLFLOW_TRACING_DESTINATION`, and the span
    /// limits `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` (else `OTEL_ATTRIBUTE_COUNT_LIMIT`),
    /// `OTEL_SPAN_EVENT_COUNT_LIMIT`, `OTEL_SPAN_LINK_COUNT_LIMIT` (see [`SpanLimits`]).
    ///
    /// # Errors
    /// [`ConfigError::InvalidEnv`] when a variable does not parse (MLflow raises too). A sampling
    /// ratio outside `[0, 1]` is not an error: as in MLflow it logs a warning and samples
    /// everything.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env::process_env)
    }

    pub(crate) fn from_lookup(get: EnvLookup<'_>) -> Result<Self, ConfigError> {
        let mut b = Self::default();
        b.settings.limits = SpanLimits::from_lookup(get);
        if let Some(id) = get(env::MLFLOW_EXPERIMENT_ID).filter(|s| !s.is_empty()) {
            b.settings.experiment_id = id;
        }
        if let Some(ratio) = env::env_f64(get, env::MLFLOW_TRACE_SAMPLING_RATIO)? {
            if (0.0..=1.0).contains(&ratio) {
                b.settings.sampling_ratio = ratio;
            } else {
                crate::notice::visible(|| {
                    tracing::warn!(
                        "MLFLOW_TRACE_SAMPLING_RATIO={ratio} is outside [0, 1]; sampling every trace"
                    )
                });
            }
        }
        if let Some(s) = env::env_u64(get, env::MLFLOW_TRACE_BUFFER_TTL_SECONDS)? {
            b.settings.buffer_ttl = Duration::from_secs(s);
        }
        if let Some(n) = env::env_u64(get, env::MLFLOW_TRACE_BUFFER_MAX_SIZE)? {
            b.settings.buffer_max_size = n;
        }
        // 0 means "no timeout", as in MLflow.
        if let Some(s) = env::env_u64(get, env::MLFLOW_TRACE_TIMEOUT_SECONDS)?
            && s > 0
        {
            b.settings.trace_timeout = Some(Duration::from_secs(s));
        }
        if let Some(s) = env::env_u64(get, env::MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS)? {
            b.settings.timeout_check_interval = Duration::from_secs(s);
        }
        if let Some(d) =
            get(crate::destination::MLFLOW_TRACING_DESTINATION).filter(|s| !s.is_empty())
        {
            b.settings.destination = TraceDestination::parse_uc_schema(&d)?;
        }
        Ok(b)
    }

    /// Exports through `exporter`, called inline on the thread that finishes a trace (see
    /// [`InlineDispatch`](crate::InlineDispatch)); the export runtime offers a non-blocking worker instead.
    pub fn with_exporter(mut self, exporter: impl TraceExporter) -> Self {
        self.settings.exporter = Some(Arc::new(exporter));
        self.settings.dispatch = None;
        self
    }

    /// Where traces go (default: an MLflow experiment); see [`TraceDestination`].
    pub fn with_destination(mut self, destination: TraceDestination) -> Self {
        self.settings.destination = destination;
        self
    }

    /// The destination set so far.
    pub fn destination(&self) -> &TraceDestination {
        &self.settings.destination
    }

    /// Whether an exporter or a dispatcher was given (the facade's `init` picks the MLflow
    /// server exporter from `MLFLOW_TRACKING_URI` only when not).
    pub fn has_export(&self) -> bool {
        self.settings.exporter.is_some() || self.settings.dispatch.is_some()
    }

    /// Hands finished traces to `dispatch` (e.g. the export runtime's bounded queue).
    pub fn with_dispatch(mut self, dispatch: Arc<dyn Dispatch>) -> Self {
        self.settings.dispatch = Some(dispatch);
        self.settings.exporter = None;
        self
    }

    /// Replaces the exporter given to [`TracerBuilder::with_exporter`] by a dispatcher made from
    /// it (the facade's `init` puts it behind the export runtime's worker). Without an exporter,
    /// nothing changes.
    ///
    /// # Errors
    /// Whatever `make` returns.
    pub fn map_exporter<E>(
        mut self,
        make: impl FnOnce(Arc<dyn TraceExporter>) -> Result<Arc<dyn Dispatch>, E>,
    ) -> Result<Self, E> {
        if self.settings.dispatch.is_none()
            && let Some(exporter) = self.settings.exporter.take()
        {
            self.settings.dispatch = Some(make(exporter)?);
        }
        Ok(self)
    }

    /// Replaces the dispatcher (given, or made from the exporter by
    /// [`TracerBuilder::map_exporter`]) by a wrapper made from it, e.g. notebook display in
    /// front of the export worker. Without one, nothing changes.
    pub fn map_dispatch(
        mut self,
        wrap: impl FnOnce(Arc<dyn Dispatch>) -> Arc<dyn Dispatch>,
    ) -> Self {
        if let Some(dispatch) = self.settings.dispatch.take() {
            self.settings.dispatch = Some(wrap(dispatch));
        }
        self
    }

    /// Wraps the dispatcher (given, or made from the exporter) each time a tracer is built from
    /// these settings: once for [`TracerBuilder::build`], and in an evcxr notebook once more
    /// for each cell's copy of an installed tracer (each cell links its own copy of this
    /// crate), so a wrapper can keep per-cell state (the notebook display collects the traces
    /// one cell finished). Replaces an earlier wrapper.
    pub fn with_dispatch_wrapper(
        mut self,
        wrap: impl Fn(Arc<dyn Dispatch>) -> Arc<dyn Dispatch> + Send + Sync + 'static,
    ) -> Self {
        self.settings.dispatch_wrapper = Some(Arc::new(wrap));
        self
    }

    /// Fraction of traces to record, in `[0, 1]` (MLflow's `MLFLOW_TRACE_SAMPLING_RATIO`).
    pub fn with_sampling_ratio(mut self, ratio: f64) -> Self {
        self.settings.sampling_ratio = ratio;
        self
    }

    /// The experiment new traces belong to (default `"0"`).
    pub fn with_experiment_id(mut self, experiment_id: impl Into<String>) -> Self {
        self.settings.experiment_id = experiment_id.into();
        self
    }

    /// How long an in-progress trace may stay buffered before it is evicted (default 1 h).
    pub fn with_buffer_ttl(mut self, ttl: Duration) -> Self {
        self.settings.buffer_ttl = ttl;
        self
    }

    /// How many traces may be in progress at once; the oldest is evicted beyond (default 1000).
    pub fn with_buffer_max_size(mut self, max_size: u64) -> Self {
        self.settings.buffer_max_size = max_size;
        self
    }

    /// Halts traces older than `timeout`: the root ends with ERROR and the trace is exported.
    pub fn with_trace_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.trace_timeout = timeout;
        self
    }

    /// How often the timeout is checked (default 1 s).
    pub fn with_timeout_check_interval(mut self, interval: Duration) -> Self {
        self.settings.timeout_check_interval = interval;
        self
    }

    /// Preview length in characters (1000 for OSS MLflow, 10 000 for Databricks).
    pub fn with_preview_max_chars(mut self, chars: usize) -> Self {
        self.settings.preview_max_chars = chars;
        self
    }

    /// Adds a user span processor (MLflow's `configure(span_processors=[...])`).
    pub fn with_span_processor(
        mut self,
        processor: impl Fn(&mut Span) + Send + Sync + 'static,
    ) -> Self {
        self.settings.span_processors.push(Arc::new(processor));
        self
    }

    /// How many user attributes, events and links a span keeps (MLflow's own attributes are
    /// always kept); see [`SpanLimits`].
    pub fn with_span_limits(mut self, limits: SpanLimits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// Whether to add the environment metadata (user, source, git) to every trace (default on).
    pub fn with_environment_metadata(mut self, on: bool) -> Self {
        self.settings.environment_metadata = on;
        self
    }

    /// Starts disabled (see [`Tracer::enable`]).
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.settings.enabled = enabled;
        self
    }

    /// Builds the tracer.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] for a sampling ratio outside `[0, 1]` or a zero buffer size.
    pub fn build(self) -> Result<Tracer, ConfigError> {
        if !(0.0..=1.0).contains(&self.settings.sampling_ratio) {
            return Err(ConfigError::OutOfRange {
                setting: "sampling ratio",
                allowed: "within [0, 1]",
                value: self.settings.sampling_ratio.to_string(),
            });
        }
        if self.settings.buffer_max_size == 0 {
            return Err(ConfigError::OutOfRange {
                setting: "trace buffer size",
                allowed: "at least 1",
                value: "0".into(),
            });
        }
        Ok(self.build_valid())
    }

    /// Builds from settings known to be valid (the defaults, or checked by `build`).
    pub(crate) fn build_valid(self) -> Tracer {
        Tracer::from_settings(self.settings, Arc::default(), Arc::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_settings_are_read_and_checked() {
        let env = |n: &str| match n {
            "MLFLOW_EXPERIMENT_ID" => Some("42".to_owned()),
            "MLFLOW_TRACE_SAMPLING_RATIO" => Some("0.25".to_owned()),
            "MLFLOW_TRACE_TIMEOUT_SECONDS" => Some("7".to_owned()),
            "MLFLOW_TRACE_BUFFER_MAX_SIZE" => Some("5".to_owned()),
            _ => None,
        };
        let b = TracerBuilder::from_lookup(&env).unwrap();
        assert_eq!(b.settings.experiment_id, "42");
        assert_eq!(b.settings.sampling_ratio, 0.25);
        assert_eq!(b.settings.trace_timeout, Some(Duration::from_secs(7)));
        assert_eq!(b.settings.buffer_max_size, 5);
        assert_eq!(b.settings.buffer_ttl, Duration::from_secs(3600));

        let out_of_range = |n: &str| (n == "MLFLOW_TRACE_SAMPLING_RATIO").then(|| "2".to_owned());
        assert_eq!(
            TracerBuilder::from_lookup(&out_of_range)
                .unwrap()
                .settings
                .sampling_ratio,
            1.0
        );
        let garbage = |n: &str| (n == "MLFLOW_TRACE_BUFFER_TTL_SECONDS").then(|| "soon".to_owned());
        assert!(matches!(
            TracerBuilder::from_lookup(&garbage),
            Err(ConfigError::InvalidEnv {
                name: "MLFLOW_TRACE_BUFFER_TTL_SECONDS",
                ..
            })
        ));
        assert!(Tracer::builder().with_sampling_ratio(1.5).build().is_err());
    }
}
