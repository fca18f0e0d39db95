//! Where a trace is stored: an MLflow experiment, a Unity Catalog schema or table prefix, a
//! (legacy) inference table; and the `to_dict` / proto-JSON forms of those locations.

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::short;

/// Default spans table of a Unity Catalog schema location.
pub const DEFAULT_UC_SPANS_TABLE: &str = "mlflow_experiment_trace_otel_spans";
/// Default logs table of a Unity Catalog schema location.
pub const DEFAULT_UC_LOGS_TABLE: &str = "mlflow_experiment_trace_otel_logs";

/// A Unity Catalog schema (`catalog.schema`) holding OpenTelemetry span and log tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UcSchemaLocation {
    /// Catalog.
    pub catalog_name: String,
    /// Schema.
    pub schema_name: String,
    /// Spans table name (unqualified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otel_spans_table_name: Option<String>,
    /// Logs table name (unqualified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otel_logs_table_name: Option<String>,
}

impl UcSchemaLocation {
    /// `catalog.schema` with MLflow's default table names.
    pub fn new(catalog_name: impl Into<String>, schema_name: impl Into<String>) -> Self {
        UcSchemaLocation {
            catalog_name: catalog_name.into(),
            schema_name: schema_name.into(),
            otel_spans_table_name: Some(DEFAULT_UC_SPANS_TABLE.into()),
            otel_logs_table_name: Some(DEFAULT_UC_LOGS_TABLE.into()),
        }
    }

    /// `catalog.schema`.
    pub fn schema_location(&self) -> String {
        format!("{}.{}", self.catalog_name, self.schema_name)
    }

    /// `catalog.schema.<spans table>`.
    pub fn full_otel_spans_table_name(&self) -> String {
        let table = self
            .otel_spans_table_name
            .as_deref()
            .unwrap_or(DEFAULT_UC_SPANS_TABLE);
        format!("{}.{}.{}", self.catalog_name, self.schema_name, table)
    }
}

/// A Unity Catalog table prefix (`catalog.schema.prefix`); table names come from the backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UcTablePrefixLocation {
    /// Catalog.
    pub catalog_name: String,
    /// Schema.
    pub schema_name: String,
    /// Table prefix.
    pub table_prefix: String,
    /// Fully qualified spans table, if the backend provided it.
    #[serde(
        default,
        alias = "otel_spans_table_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub spans_table_name: Option<String>,
    /// Fully qualified logs table, if the backend provided it.
    #[serde(
        default,
        alias = "otel_logs_table_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub logs_table_name: Option<String>,
    /// Fully qualified annotations table, if the backend provided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations_table_name: Option<String>,
}

impl UcTablePrefixLocation {
    /// `catalog.schema.prefix` with no table names yet.
    pub fn new(
        catalog: impl Into<String>,
        schema: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        UcTablePrefixLocation {
            catalog_name: catalog.into(),
            schema_name: schema.into(),
            table_prefix: prefix.into(),
            spans_table_name: None,
            logs_table_name: None,
            annotations_table_name: None,
        }
    }

    /// `catalog.schema.prefix`.
    pub fn full_table_prefix(&self) -> String {
        format!(
            "{}.{}.{}",
            self.catalog_name, self.schema_name, self.table_prefix
        )
    }
}

/// Where a trace is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceLocation {
    /// An MLflow experiment.
    MlflowExperiment {
        /// Experiment id, e.g. `"0"`.
        experiment_id: String,
    },
    /// A Databricks inference table (deprecated in MLflow 3.7).
    InferenceTable {
        /// `catalog.schema.table`.
        full_table_name: String,
    },
    /// A Unity Catalog schema.
    UcSchema(UcSchemaLocation),
    /// A Unity Catalog table prefix.
    UcTablePrefix(UcTablePrefixLocation),
    /// Not specified.
    Unspecified,
}

impl TraceLocation {
    /// An experiment location.
    pub fn experiment(experiment_id: impl Into<String>) -> Self {
        TraceLocation::MlflowExperiment {
            experiment_id: experiment_id.into(),
        }
    }

    /// An experiment location without an experiment id (Python's
    /// `TraceLocation.from_experiment_id(None)`, which model serving writes when
    /// `MLFLOW_EXPERIMENT_ID` is unset): `{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {}}`.
    pub fn experiment_unset() -> Self {
        Self::experiment("")
    }

    /// The experiment id, for experiment locations that have one.
    pub fn experiment_id(&self) -> Option<&str> {
        match self {
            TraceLocation::MlflowExperiment { experiment_id } if !experiment_id.is_empty() => {
                Some(experiment_id)
            }
            _ => None,
        }
    }

    /// The `<location>` of V4 trace ids: `catalog.schema` or `catalog.schema.prefix`.
    pub fn uc_location(&self) -> Option<String> {
        match self {
            TraceLocation::UcSchema(l) => Some(l.schema_location()),
            TraceLocation::UcTablePrefix(l) => Some(l.full_table_prefix()),
            _ => None,
        }
    }

    /// Whether traces here use the V4 (Unity Catalog) protocol.
    pub fn is_uc(&self) -> bool {
        matches!(
            self,
            TraceLocation::UcSchema(_) | TraceLocation::UcTablePrefix(_)
        )
    }

    /// The `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            TraceLocation::MlflowExperiment { .. } => "MLFLOW_EXPERIMENT",
            TraceLocation::InferenceTable { .. } => "INFERENCE_TABLE",
            TraceLocation::UcSchema(_) => "UC_SCHEMA",
            TraceLocation::UcTablePrefix(_) => "UC_TABLE_PREFIX",
            TraceLocation::Unspecified => "TRACE_LOCATION_TYPE_UNSPECIFIED",
        }
    }
}

#[derive(Serialize)]
struct ExperimentPayload<'a> {
    experiment_id: &'a str,
}

#[derive(Serialize)]
struct InferenceTablePayload<'a> {
    full_table_name: &'a str,
}

impl Serialize for TraceLocation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.type_name())?;
        match self {
            // Python omits a `None` experiment id: `"mlflow_experiment": {}`.
            TraceLocation::MlflowExperiment { experiment_id } if experiment_id.is_empty() => {
                m.serialize_entry("mlflow_experiment", &serde_json::Map::new())?;
            }
            TraceLocation::MlflowExperiment { experiment_id } => {
                m.serialize_entry("mlflow_experiment", &ExperimentPayload { experiment_id })?;
            }
            TraceLocation::InferenceTable { full_table_name } => {
                m.serialize_entry(
                    "inference_table",
                    &InferenceTablePayload { full_table_name },
                )?;
            }
            TraceLocation::UcSchema(l) => m.serialize_entry("uc_schema", l)?,
            TraceLocation::UcTablePrefix(l) => m.serialize_entry("uc_table_prefix", l)?,
            TraceLocation::Unspecified => {}
        }
        m.end()
    }
}

#[derive(Deserialize)]
struct AnyLocation {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    mlflow_experiment: Option<AnyExperiment>,
    #[serde(default)]
    inference_table: Option<AnyInferenceTable>,
    #[serde(default)]
    uc_schema: Option<UcSchemaLocation>,
    #[serde(default)]
    uc_table_prefix: Option<UcTablePrefixLocation>,
}

#[derive(Deserialize)]
struct AnyExperiment {
    #[serde(default)]
    experiment_id: String,
}

#[derive(Deserialize)]
struct AnyInferenceTable {
    #[serde(default)]
    full_table_name: String,
}

impl<'de> Deserialize<'de> for TraceLocation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut raw = AnyLocation::deserialize(d)?;
        let kind = raw.kind.take();
        let loc = match (kind.as_deref(), raw) {
            (
                Some("MLFLOW_EXPERIMENT") | None,
                AnyLocation {
                    mlflow_experiment: Some(e),
                    ..
                },
            ) => TraceLocation::MlflowExperiment {
                experiment_id: e.experiment_id,
            },
            (
                Some("INFERENCE_TABLE") | None,
                AnyLocation {
                    inference_table: Some(t),
                    ..
                },
            ) => TraceLocation::InferenceTable {
                full_table_name: t.full_table_name,
            },
            (
                Some("UC_SCHEMA") | None,
                AnyLocation {
                    uc_schema: Some(l), ..
                },
            ) => TraceLocation::UcSchema(l),
            (
                Some("UC_TABLE_PREFIX") | None,
                AnyLocation {
                    uc_table_prefix: Some(l),
                    ..
                },
            ) => TraceLocation::UcTablePrefix(l),
            (Some("TRACE_LOCATION_TYPE_UNSPECIFIED") | None, _) => TraceLocation::Unspecified,
            (Some(other), _) => {
                return Err(serde::de::Error::custom(format!(
                    "trace location of type {:?} has no matching payload",
                    short(other)
                )));
            }
        };
        Ok(loc)
    }
}
