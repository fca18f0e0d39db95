//! Destinations as policies: how a trace starts (ids, location, metadata, tags) and what
//! happens when its root ends, for each [`TraceDestination`]. The trace manager asks its policy
//! and holds no destination rule of its own.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use mlflow_tracing_entities::{
    MlflowTraceId, StringMap, Trace, TraceId, TraceInfo, TraceLocation, keys,
};

use crate::destination::{ServingRequest, TraceDestination};
use crate::env;

/// What a root span's start tells the policy.
pub(crate) struct RootStart {
    pub(crate) trace_id: TraceId,
    /// An experiment given for this trace (`start_span(..).experiment_id(..)`).
    pub(crate) experiment_id: Option<String>,
    /// The root span's start, in ms since the Unix epoch (the trace's request time).
    pub(crate) now_ms: i64,
}

/// The rules of one destination.
pub(crate) trait TracePolicy: Send + Sync + fmt::Debug {
    /// The MLflow trace id and info of a new trace; `None` when the destination does not track
    /// it.
    fn start(&self, root: RootStart) -> Option<(MlflowTraceId, TraceInfo)>;

    /// Whether the trace's start gives it an `mlflow.traceName` tag (see
    /// [`TracePolicy::start_defaults`]), which a `TraceContext` scope's tag does not replace.
    fn names_traces(&self) -> bool {
        false
    }

    /// The metadata and tags every trace of this destination starts with (environment
    /// metadata, schema version, `mlflow.traceName` from the root's start name), added when
    /// the trace is finalized, so the thread that starts a trace copies none of them. They come
    /// first, in MLflow's order; a key set during the trace keeps its value.
    fn start_defaults(&self, _info: &mut TraceInfo, _root_name: &str) {}

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

/// Puts `defaults` first, in their order; a key already in `map` keeps its value (in the
/// default's place), as when the default was set at the trace's start and changed later.
fn put_first(map: &mut StringMap, defaults: &[(&str, &str)]) {
    let set = std::mem::take(map);
    let mut merged = StringMap::with_capacity(defaults.len() + set.len());
    merged.extend(
        defaults
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    merged.extend(set);
    *map = merged;
}

/// MLflow's basic metadata (environment metadata when on, then the schema version) and the
/// `mlflow.traceName` tag.
fn add_basic_metadata(
    info: &mut TraceInfo,
    name: &str,
    environment_metadata: bool,
    schema_version: &str,
) {
    let mut metadata: Vec<(&str, &str)> = Vec::with_capacity(8);
    if environment_metadata {
        metadata.extend(
            env::environment_metadata()
                .iter()
                .map(|(k, v)| (*k, v.as_str())),
        );
    }
    metadata.push((keys::metadata::SCHEMA_VERSION, schema_version));
    put_first(&mut info.trace_metadata, &metadata);
    put_first(&mut info.tags, &[(keys::tag::TRACE_NAME, name)]);
}

/// An MLflow experiment: `tr-<hex>` ids, schema version "3", basic metadata and tags.
#[derive(Debug)]
struct Experiment {
    experiment_id: String,
    environment_metadata: bool,
}

impl TracePolicy for Experiment {
    fn start(&self, root: RootStart) -> Option<(MlflowTraceId, TraceInfo)> {
        let mlflow_id = MlflowTraceId::v3(root.trace_id);
        let experiment = root
            .experiment_id
            .unwrap_or_else(|| self.experiment_id.clone());
        let info = TraceInfo::new(
            String::from(mlflow_id.clone()),
            TraceLocation::experiment(experiment),
            root.now_ms,
        );
        Some((
            mlflow_id,
            with_serving_request(info, ServingRequest::current()),
        ))
    }

    fn names_traces(&self) -> bool {
        true
    }

    fn start_defaults(&self, info: &mut TraceInfo, root_name: &str) {
        add_basic_metadata(info, root_name, self.environment_metadata, "3");
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
    fn start(&self, root: RootStart) -> Option<(MlflowTraceId, TraceInfo)> {
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
        let mlflow_id = MlflowTraceId::v3(root.trace_id);
        // As MLflow: `TraceLocation.from_experiment_id(MLFLOW_EXPERIMENT_ID)`, an experiment
        // location without an id when unset.
        let location = match root.experiment_id.or_else(|| self.experiment_id.clone()) {
            Some(e) => TraceLocation::experiment(e),
            None => TraceLocation::experiment_unset(),
        };
        let mut info = TraceInfo::new(String::from(mlflow_id.clone()), location, root.now_ms);
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
    fn start(&self, root: RootStart) -> Option<(MlflowTraceId, TraceInfo)> {
        let uc = self.location.uc_location().unwrap_or_default();
        let mlflow_id = match MlflowTraceId::v4(&uc, root.trace_id) {
            Ok(id) => id,
            Err(e) => {
                crate::notice::visible(|| {
                    tracing::warn!("invalid Unity Catalog location {uc:?}: {e}")
                });
                return None;
            }
        };
        let info = TraceInfo::new(
            String::from(mlflow_id.clone()),
            self.location.clone(),
            root.now_ms,
        );
        Some((
            mlflow_id,
            with_serving_request(info, ServingRequest::current()),
        ))
    }

    fn names_traces(&self) -> bool {
        true
    }

    fn start_defaults(&self, info: &mut TraceInfo, root_name: &str) {
        add_basic_metadata(info, root_name, self.environment_metadata, "4");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_defaults_come_first_and_values_set_during_the_trace_win() {
        let policy = TraceDestination::Experiment.policy("7".into(), false);
        let (_, mut info) = policy
            .start(RootStart {
                trace_id: TraceId::from_int(1),
                experiment_id: None,
                now_ms: 0,
            })
            .unwrap();
        // Set while the trace ran: a scope's or `update_current_trace`'s values.
        info.trace_metadata.insert("team".into(), "a".into());
        info.trace_metadata
            .insert(keys::metadata::SCHEMA_VERSION.into(), "custom".into());
        info.tags
            .insert(keys::tag::TRACE_NAME.into(), "renamed".into());
        info.tags.insert("env".into(), "prod".into());
        policy.start_defaults(&mut info, "root");
        let metadata: Vec<_> = info.trace_metadata.iter().collect();
        assert_eq!(
            metadata,
            [
                (
                    &keys::metadata::SCHEMA_VERSION.to_owned(),
                    &"custom".to_owned()
                ),
                (&"team".to_owned(), &"a".to_owned()),
            ]
        );
        let tags: Vec<_> = info.tags.iter().collect();
        assert_eq!(
            tags,
            [
                (&keys::tag::TRACE_NAME.to_owned(), &"renamed".to_owned()),
                (&"env".to_owned(), &"prod".to_owned()),
            ]
        );

        // Nothing set: the root's start name and schema version "3".
        let (_, mut info) = policy
            .start(RootStart {
                trace_id: TraceId::from_int(2),
                experiment_id: None,
                now_ms: 0,
            })
            .unwrap();
        policy.start_defaults(&mut info, "root");
        assert_eq!(info.tags[keys::tag::TRACE_NAME], "root");
        assert_eq!(info.trace_metadata[keys::metadata::SCHEMA_VERSION], "3");
    }
}
