//! Destinations as policies: how a trace starts (ids, location, metadata, tags) and what
//! happens when its root ends, for each [`TraceDestination`]. The trace manager asks its policy
//! and holds no destination rule of its own.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use mlflow_tracing_entities::{MlflowTraceId, Trace, TraceId, TraceInfo, TraceLocation, keys};

use crate::destination::{ServingRequest, TraceDestination};
use crate::env;

/// What a root span's start tells the policy.
pub(crate) struct RootStart<'a> {
    pub(crate) trace_id: TraceId,
    /// The root span's name (`mlflow.traceName`).
    pub(crate) name: &'a str,
    /// An experiment given for this trace (`start_span(..).experiment_id(..)`).
    pub(crate) experiment_id: Option<String>,
    /// Ms since the Unix epoch.
    pub(crate) now_ms: i64,
}

/// The rules of one destination.
pub(crate) trait TracePolicy: Send + Sync + fmt::Debug {
    /// The MLflow trace id and info of a new trace; `None` when the destination does not track
    /// it.
    fn start(&self, root: RootStart<'_>) -> Option<(String, TraceInfo)>;

    /// Where the spans this process makes in a trace continued from another process go (MLflow
    /// logs them to the experiment of the process that made them).
    fn remote_location(&self) -> TraceLocation;

    /// Attributes set on the root span when it ends, from the trace's info.
    fn root_end_attributes(&self, _info: &TraceInfo) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The root-end rules applied to the complete trace (timing, state, previews, usage).
    fn finalize(&self, trace: &mut Trace, preview_max_chars: usize) {
        trace.finalize(preview_max_chars);
    }
}

impl TraceDestination {
    /// The policy of this destination, for a tracer whose default experiment is
    /// `experiment_id`.
    pub(crate) fn policy(
        &self,
        experiment_id: String,
        environment_metadata: bool,
    ) -> Box<dyn TracePolicy> {
        match self {
            TraceDestination::InferenceTable { experiment_id } => Box::new(InferenceTable {
                experiment_id: experiment_id.clone(),
                warned_no_request_id: AtomicBool::new(false),
            }),
            TraceDestination::UnityCatalog(location) => Box::new(UnityCatalog {
                location: location.clone(),
                environment_metadata,
            }),
            _ => Box::new(Experiment {
                experiment_id,
                environment_metadata,
            }),
        }
    }
}

/// The serving request's id becomes the trace's `client_request_id`, whatever the destination.
fn with_serving_request(mut info: TraceInfo, request: Option<ServingRequest>) -> TraceInfo {
    if let Some(request) = request {
        info.client_request_id = Some(request.request_id);
    }
    info
}

/// Environment metadata and the `mlflow.traceName` tag (MLflow's basic metadata and tags).
fn add_basic_metadata(info: &mut TraceInfo, name: &str, environment_metadata: bool) {
    if environment_metadata {
        for (k, v) in env::environment_metadata() {
            info.trace_metadata.insert((*k).to_owned(), v.clone());
        }
    }
    info.tags
        .insert(keys::tag::TRACE_NAME.into(), name.to_owned());
}

/// An MLflow experiment: `tr-<hex>` ids, schema version "3", basic metadata and tags.
#[derive(Debug)]
struct Experiment {
    experiment_id: String,
    environment_metadata: bool,
}

impl TracePolicy for Experiment {
    fn start(&self, root: RootStart<'_>) -> Option<(String, TraceInfo)> {
        let mlflow_id = String::from(MlflowTraceId::v3(root.trace_id));
        let experiment = root
            .experiment_id
            .unwrap_or_else(|| self.experiment_id.clone());
        let mut info = TraceInfo::new(
            mlflow_id.clone(),
            TraceLocation::experiment(experiment),
            root.now_ms,
        );
        add_basic_metadata(&mut info, root.name, self.environment_metadata);
        info.trace_metadata
            .insert(keys::metadata::SCHEMA_VERSION.into(), "3".into());
        Some((
            mlflow_id,
            with_serving_request(info, ServingRequest::current()),
        ))
    }

    fn remote_location(&self) -> TraceLocation {
        TraceLocation::experiment(self.experiment_id.clone())
    }
}

/// A model-serving inference table (MLflow's inference-table processor).
#[derive(Debug)]
struct InferenceTable {
    experiment_id: Option<String>,
    /// Whether the missing-request-id warning was logged.
    warned_no_request_id: AtomicBool,
}

impl TracePolicy for InferenceTable {
    fn start(&self, root: RootStart<'_>) -> Option<(String, TraceInfo)> {
        let Some(request) = ServingRequest::current() else {
            if !self.warned_no_request_id.swap(true, Ordering::Relaxed) {
                crate::notice::visible(|| {
                    tracing::warn!(
                        "no serving request id (X-Request-Id) for a trace of the inference table; it \
                     is not recorded. Attach a ServingRequest around request handling"
                    )
                });
            }
            return None;
        };
        let mlflow_id = String::from(MlflowTraceId::v3(root.trace_id));
        // As MLflow: `TraceLocation.from_experiment_id(MLFLOW_EXPERIMENT_ID)`, an experiment
        // location without an id when unset.
        let location = match root.experiment_id.or_else(|| self.experiment_id.clone()) {
            Some(e) => TraceLocation::experiment(e),
            None => TraceLocation::experiment_unset(),
        };
        let mut info = TraceInfo::new(mlflow_id.clone(), location, root.now_ms);
        // MLflow's order: schema version, endpoint, model.
        info.trace_metadata
            .insert(keys::metadata::SCHEMA_VERSION.into(), "3".into());
        info.trace_metadata.insert(
            keys::metadata::MODEL_SERVING_ENDPOINT_NAME.into(),
            request.endpoint_name.clone().unwrap_or_default(),
        );
        if let Some(model) = &request.model_id {
            info.trace_metadata
                .insert(keys::metadata::MODEL_ID.into(), model.clone());
        }
        Some((mlflow_id, with_serving_request(info, Some(request))))
    }

    fn remote_location(&self) -> TraceLocation {
        self.experiment_id
            .as_ref()
            .map_or_else(TraceLocation::experiment_unset, TraceLocation::experiment)
    }

    fn finalize(&self, trace: &mut Trace, preview_max_chars: usize) {
        trace.finalize_inference_table(preview_max_chars);
    }
}

/// A Unity Catalog schema or table prefix: V4 ids, schema version "4", and the trace's user and
/// session on the root span.
#[derive(Debug)]
struct UnityCatalog {
    location: TraceLocation,
    environment_metadata: bool,
}

impl TracePolicy for UnityCatalog {
    fn start(&self, root: RootStart<'_>) -> Option<(String, TraceInfo)> {
        let uc = self.location.uc_location().unwrap_or_default();
        let mlflow_id = match MlflowTraceId::v4(&uc, root.trace_id) {
            Ok(id) => id.to_string(),
            Err(e) => {
                crate::notice::visible(|| {
                    tracing::warn!("invalid Unity Catalog location {uc:?}: {e}")
                });
                return None;
            }
        };
        let mut info = TraceInfo::new(mlflow_id.clone(), self.location.clone(), root.now_ms);
        add_basic_metadata(&mut info, root.name, self.environment_metadata);
        info.trace_metadata
            .insert(keys::metadata::SCHEMA_VERSION.into(), "4".into());
        Some((
            mlflow_id,
            with_serving_request(info, ServingRequest::current()),
        ))
    }

    fn remote_location(&self) -> TraceLocation {
        self.location.clone()
    }

    /// MLflow's UC processor: the trace's user and session as root span attributes, raw (not
    /// JSON-encoded).
    fn root_end_attributes(&self, info: &TraceInfo) -> Vec<(&'static str, String)> {
        [
            (keys::metadata::TRACE_USER, "user.id"),
            (keys::metadata::TRACE_SESSION, "session.id"),
        ]
        .into_iter()
        .filter_map(|(from, to)| {
            let value = info.trace_metadata.get(from)?;
            (!value.is_empty()).then(|| (to, value.clone()))
        })
        .collect()
    }
}
