//! `TraceInfo` (V3, and V4 for Unity Catalog locations), `TraceState` and `TraceLocation`
//! (`entities/trace_info.py`, `trace_state.py`, `trace_location.py`).
//!
//! Two JSON forms, both through serde:
//! - the `TraceInfo.to_dict()` form inside `Trace.to_json()` (`execution_duration_ms` integer),
//!   which is the `Serialize` impl of [`TraceInfo`];
//! - the proto-JSON form of REST bodies such as StartTraceV3 (`"execution_duration": "0.139s"`),
//!   written by [`TraceInfo::proto_json`].
//!
//! Both write fields in protobuf field-number order, the RFC 3339 `request_time` with 0 or 3
//! fractional digits, and apply MLflow's truncation (metadata keys/values 250 characters, tag
//! keys 250 and values 4096). Reading accepts either form (and V2's `request_id` dicts).

use std::fmt;
use std::str::FromStr;

use indexmap::IndexMap;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{EntityError, Result, short};
use crate::keys::{
    MAX_CHARS_IN_TRACE_INFO_METADATA, MAX_CHARS_IN_TRACE_INFO_TAGS_KEY,
    MAX_CHARS_IN_TRACE_INFO_TAGS_VALUE,
};
use crate::span_kinds::SpanStatusCode;
use crate::token_usage::TokenUsage;
use crate::trace_location::TraceLocation;

/// The state of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TraceState {
    /// Unknown (also what unknown strings read as).
    #[default]
    StateUnspecified,
    /// Finished successfully.
    Ok,
    /// Finished with an error.
    Error,
    /// Root span still running.
    InProgress,
}

impl TraceState {
    /// The enum name MLflow writes.
    pub const fn as_str(self) -> &'static str {
        match self {
            TraceState::StateUnspecified => "STATE_UNSPECIFIED",
            TraceState::Ok => "OK",
            TraceState::Error => "ERROR",
            TraceState::InProgress => "IN_PROGRESS",
        }
    }

    /// The state of a finished trace from its root span's status: ERROR stays ERROR, OK and
    /// UNSET become OK (`update_trace_state_from_span_conditionally`).
    pub const fn from_root_status(code: SpanStatusCode) -> Self {
        match code {
            SpanStatusCode::Error => TraceState::Error,
            SpanStatusCode::Ok | SpanStatusCode::Unset => TraceState::Ok,
        }
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TraceState {
    type Err = EntityError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "STATE_UNSPECIFIED" | "TRACE_STATUS_UNSPECIFIED" => Ok(TraceState::StateUnspecified),
            "OK" => Ok(TraceState::Ok),
            "ERROR" => Ok(TraceState::Error),
            "IN_PROGRESS" => Ok(TraceState::InProgress),
            _ => Err(EntityError::InvalidField {
                field: "state",
                reason: format!("unknown state {:?}", short(s)),
            }),
        }
    }
}

impl Serialize for TraceState {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TraceState {
    /// Unknown names read as `STATE_UNSPECIFIED` (what the server does with them), so that a
    /// newer server's state does not make a whole trace unreadable.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(s.parse().unwrap_or_default())
    }
}

/// Formats ms since the epoch as protobuf-JSON `Timestamp`: `2023-11-14T22:13:20Z` or
/// `2023-11-14T22:13:20.123Z`.
pub fn format_request_time(ms: i64) -> String {
    let ts = prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    };
    ts.to_string()
}

/// Parses an RFC 3339 timestamp into ms since the epoch (sub-millisecond digits truncated, as
/// protobuf's `ToMilliseconds` does).
///
/// # Errors
/// [`EntityError::InvalidField`] for anything that is not RFC 3339.
pub fn parse_request_time(s: &str) -> Result<i64> {
    let ts: prost_types::Timestamp = s.parse().map_err(|_| EntityError::InvalidField {
        field: "request_time",
        reason: format!("{:?} is not an RFC 3339 timestamp", short(s)),
    })?;
    Ok(ts
        .seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000))
}

/// Formats ms as protobuf-JSON `Duration`: `0s`, `1s`, `0.139s`, `61.234s`.
pub fn format_duration_ms(ms: i64) -> String {
    let d = prost_types::Duration {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    };
    d.to_string()
}

/// Parses a protobuf-JSON `Duration` (`"0.139s"`) into ms (truncated).
///
/// # Errors
/// [`EntityError::InvalidField`] if it is not a duration.
pub fn parse_duration_ms(s: &str) -> Result<i64> {
    let d: prost_types::Duration = s.parse().map_err(|_| EntityError::InvalidField {
        field: "execution_duration",
        reason: format!("{:?} is not a duration such as \"0.139s\"", short(s)),
    })?;
    Ok(d.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(d.nanos) / 1_000_000))
}

/// The metadata and tags of a trace, as an insertion-ordered map (Python dict order).
pub type StringMap = IndexMap<String, String>;

/// Everything about a trace except its spans.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TraceInfo {
    /// `tr-<hex>` or `trace:/<location>/<hex>`; kept as a string because servers hold ids of
    /// older formats too (see [`TraceInfo::mlflow_trace_id`]).
    pub trace_id: String,
    /// Caller-supplied request id.
    pub client_request_id: Option<String>,
    /// Where the trace is stored.
    pub trace_location: TraceLocation,
    /// Root span start, ms since the epoch.
    pub request_time: i64,
    /// Root span duration in ms; `None` while in progress.
    pub execution_duration: Option<i64>,
    /// State.
    pub state: TraceState,
    /// Request preview.
    pub request_preview: Option<String>,
    /// Response preview.
    pub response_preview: Option<String>,
    /// Immutable key/values.
    pub trace_metadata: StringMap,
    /// Mutable key/values.
    pub tags: StringMap,
    /// Assessments (feedback/expectations), kept as JSON.
    pub assessments: Vec<Value>,
}

impl TraceInfo {
    /// A new in-progress trace info.
    pub fn new(
        trace_id: impl Into<String>,
        trace_location: TraceLocation,
        request_time_ms: i64,
    ) -> Self {
        TraceInfo {
            trace_id: trace_id.into(),
            client_request_id: None,
            trace_location,
            request_time: request_time_ms,
            execution_duration: None,
            state: TraceState::InProgress,
            request_preview: None,
            response_preview: None,
            trace_metadata: StringMap::new(),
            tags: StringMap::new(),
            assessments: Vec::new(),
        }
    }

    /// The parsed trace id.
    ///
    /// # Errors
    /// [`EntityError::InvalidId`] for ids that are not `tr-…`/`trace:/…` (e.g. V2 request ids).
    pub fn mlflow_trace_id(&self) -> Result<crate::ids::MlflowTraceId> {
        self.trace_id.parse()
    }

    /// The experiment id, for experiment locations.
    pub fn experiment_id(&self) -> Option<&str> {
        self.trace_location.experiment_id()
    }

    /// Parsed `mlflow.trace.tokenUsage`.
    pub fn token_usage(&self) -> Option<TokenUsage> {
        let text = self
            .trace_metadata
            .get(crate::keys::metadata::TOKEN_USAGE)?;
        TokenUsage::from_value(&crate::json::parse_json(text).ok()?)
    }

    /// The proto-JSON form used in REST bodies (`execution_duration` as `"0.139s"`).
    pub fn proto_json(&self) -> ProtoJson<'_> {
        ProtoJson(self)
    }

    /// The exact body Python sends to `POST /api/3.0/mlflow/traces` (StartTraceV3):
    /// `{"trace": {"trace_info": …}}`, ASCII-escaped, Python separators.
    ///
    /// # Errors
    /// Practically none (all values are strings and numbers); kept for nesting-limit safety of
    /// assessments.
    pub fn start_trace_v3_body(&self) -> Result<String> {
        #[derive(Serialize)]
        struct TraceWrap<'a> {
            trace_info: ProtoJson<'a>,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            trace: TraceWrap<'a>,
        }
        crate::json::to_python_json(&Body {
            trace: TraceWrap {
                trace_info: self.proto_json(),
            },
        })
    }

    /// The body Python's Databricks store sends to
    /// `POST /api/4.0/mlflow/traces/{location}/{otel trace id}/info` (CreateTraceInfo): the V4
    /// proto JSON of the info, whose `trace_id` is the bare 32-hex OpenTelemetry id.
    ///
    /// # Errors
    /// [`EntityError`] when the trace id is not a V4 id of a Unity Catalog location.
    pub fn create_trace_info_v4_body(&self) -> Result<String> {
        let id = self.mlflow_trace_id()?;
        if id.location().is_none() || !self.trace_location.is_uc() {
            return Err(EntityError::InvalidField {
                field: "trace_id",
                reason: format!("{} is not a Unity Catalog (V4) trace id", self.trace_id),
            });
        }
        let mut bare = self.clone();
        bare.trace_id = id.otel_trace_id().to_hex();
        crate::json::to_python_json(&bare.proto_json())
    }

    fn write<S: Serializer>(
        &self,
        s: S,
        proto_duration: bool,
    ) -> std::result::Result<S::Ok, S::Error> {
        let v4 = self.trace_location.is_uc();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("trace_id", &self.trace_id)?;
        if let Some(id) = &self.client_request_id {
            m.serialize_entry("client_request_id", id)?;
        }
        m.serialize_entry("trace_location", &self.trace_location)?;
        let previews = |m: &mut S::SerializeMap| -> std::result::Result<(), S::Error> {
            if let Some(p) = &self.request_preview {
                m.serialize_entry("request_preview", p)?;
            }
            if let Some(p) = &self.response_preview {
                m.serialize_entry("response_preview", p)?;
            }
            Ok(())
        };
        // V4's proto numbers the previews 4 and 5; V3's 12 and 13.
        if v4 {
            previews(&mut m)?;
        }
        m.serialize_entry("request_time", &format_request_time(self.request_time))?;
        if proto_duration && let Some(d) = self.execution_duration {
            m.serialize_entry("execution_duration", &format_duration_ms(d))?;
        }
        m.serialize_entry("state", &self.state)?;
        if !self.trace_metadata.is_empty() {
            m.serialize_entry(
                "trace_metadata",
                &Truncated(
                    &self.trace_metadata,
                    MAX_CHARS_IN_TRACE_INFO_METADATA,
                    MAX_CHARS_IN_TRACE_INFO_METADATA,
                ),
            )?;
        }
        if !self.assessments.is_empty() {
            m.serialize_entry("assessments", &self.assessments)?;
        }
        if !self.tags.is_empty() {
            m.serialize_entry(
                "tags",
                &Truncated(
                    &self.tags,
                    MAX_CHARS_IN_TRACE_INFO_TAGS_KEY,
                    MAX_CHARS_IN_TRACE_INFO_TAGS_VALUE,
                ),
            )?;
        }
        if !v4 {
            previews(&mut m)?;
        }
        if !proto_duration && let Some(d) = self.execution_duration {
            m.serialize_entry("execution_duration_ms", &d)?;
        }
        m.end()
    }
}

/// Cuts `s` to at most `max` characters (Python `s[:max]`, no suffix).
pub(crate) fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

struct Truncated<'a>(&'a StringMap, usize, usize);

impl Serialize for Truncated<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (cut(k, self.1), cut(v, self.2))))
    }
}

/// [`TraceInfo`] in the proto-JSON form of REST bodies. See [`TraceInfo::proto_json`].
#[derive(Clone, Copy, Debug)]
pub struct ProtoJson<'a>(&'a TraceInfo);

impl Serialize for ProtoJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.write(s, true)
    }
}

impl Serialize for TraceInfo {
    /// The `TraceInfo.to_dict()` form.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.write(s, false)
    }
}

/// A timestamp field that may be RFC 3339 text or an integer of ms.
#[derive(Deserialize)]
#[serde(untagged)]
enum TimeField {
    Ms(i64),
    Text(String),
}

#[derive(Deserialize)]
struct AnyTraceInfo {
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    client_request_id: Option<String>,
    #[serde(default)]
    trace_location: Option<TraceLocation>,
    #[serde(default)]
    request_time: Option<TimeField>,
    #[serde(default)]
    execution_duration: Option<TimeField>,
    #[serde(default)]
    execution_duration_ms: Option<i64>,
    #[serde(default)]
    state: Option<TraceState>,
    #[serde(default)]
    request_preview: Option<String>,
    #[serde(default)]
    response_preview: Option<String>,
    #[serde(default)]
    trace_metadata: Option<StringMap>,
    #[serde(default)]
    tags: Option<StringMap>,
    #[serde(default)]
    assessments: Option<Vec<Value>>,
    // V2 (`request_id` dicts).
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    experiment_id: Option<String>,
    #[serde(default)]
    timestamp_ms: Option<i64>,
    #[serde(default)]
    execution_time_ms: Option<i64>,
    #[serde(default)]
    status: Option<TraceState>,
    #[serde(default)]
    request_metadata: Option<StringMap>,
}

impl TryFrom<AnyTraceInfo> for TraceInfo {
    type Error = EntityError;

    fn try_from(raw: AnyTraceInfo) -> Result<Self> {
        let time = |f: Option<TimeField>, parse: fn(&str) -> Result<i64>| -> Result<Option<i64>> {
            match f {
                None => Ok(None),
                Some(TimeField::Ms(v)) => Ok(Some(v)),
                Some(TimeField::Text(s)) => parse(&s).map(Some),
            }
        };
        let trace_id =
            raw.trace_id
                .or(raw.request_id)
                .ok_or_else(|| EntityError::InvalidField {
                    field: "trace_info",
                    reason: "missing `trace_id`".into(),
                })?;
        let trace_location = match (raw.trace_location, raw.experiment_id) {
            (Some(l), _) => l,
            (None, Some(e)) => TraceLocation::experiment(e),
            (None, None) => TraceLocation::Unspecified,
        };
        Ok(TraceInfo {
            trace_id,
            client_request_id: raw.client_request_id,
            trace_location,
            request_time: time(raw.request_time, parse_request_time)?
                .or(raw.timestamp_ms)
                .unwrap_or(0),
            execution_duration: raw
                .execution_duration_ms
                .or(time(raw.execution_duration, parse_duration_ms)?)
                .or(raw.execution_time_ms),
            state: raw.state.or(raw.status).unwrap_or_default(),
            request_preview: raw.request_preview,
            response_preview: raw.response_preview,
            trace_metadata: raw
                .trace_metadata
                .or(raw.request_metadata)
                .unwrap_or_default(),
            tags: raw.tags.unwrap_or_default(),
            assessments: raw.assessments.unwrap_or_default(),
        })
    }
}

impl<'de> Deserialize<'de> for TraceInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        TraceInfo::try_from(AnyTraceInfo::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace_location::{UcSchemaLocation, UcTablePrefixLocation};

    fn info(location: TraceLocation, id: &str) -> TraceInfo {
        let mut i = TraceInfo::new(id, location, 1_700_000_000_123);
        i.state = TraceState::Ok;
        i.execution_duration = Some(61_234);
        i.client_request_id = Some("c1".into());
        i.request_preview = Some("rq".into());
        i.response_preview = Some("rs".into());
        i.trace_metadata.insert("a".into(), "b".into());
        i.tags.insert("t".into(), "v".into());
        i
    }

    #[test]
    fn v3_dict_and_proto_forms() {
        let i = info(
            TraceLocation::experiment("3"),
            "tr-0123456789abcdef0123456789abcdef",
        );
        assert_eq!(
            crate::json::to_python_json(&i).unwrap(),
            r#"{"trace_id": "tr-0123456789abcdef0123456789abcdef", "client_request_id": "c1", "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "3"}}, "request_time": "2023-11-14T22:13:20.123Z", "state": "OK", "trace_metadata": {"a": "b"}, "tags": {"t": "v"}, "request_preview": "rq", "response_preview": "rs", "execution_duration_ms": 61234}"#
        );
        assert_eq!(
            crate::json::to_python_json(&i.proto_json()).unwrap(),
            r#"{"trace_id": "tr-0123456789abcdef0123456789abcdef", "client_request_id": "c1", "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "3"}}, "request_time": "2023-11-14T22:13:20.123Z", "execution_duration": "61.234s", "state": "OK", "trace_metadata": {"a": "b"}, "tags": {"t": "v"}, "request_preview": "rq", "response_preview": "rs"}"#
        );
        // Both forms read back to the same info.
        let a: TraceInfo =
            crate::json::parse_json(&crate::json::to_python_json(&i).unwrap()).unwrap();
        let b: TraceInfo =
            crate::json::parse_json(&crate::json::to_python_json(&i.proto_json()).unwrap())
                .unwrap();
        assert_eq!(a, i);
        assert_eq!(b, i);
    }

    /// Output of MLflow 3.17.2's `TraceInfo.to_dict()` for the same V4 info (previews first).
    #[test]
    fn v4_dict_form_matches_python() {
        let i = info(
            TraceLocation::UcSchema(UcSchemaLocation::new("cat", "sch")),
            "trace:/cat.sch/0123456789abcdef0123456789abcdef",
        );
        let mut i = i;
        i.execution_duration = Some(5);
        assert_eq!(
            crate::json::to_python_json(&i).unwrap(),
            r#"{"trace_id": "trace:/cat.sch/0123456789abcdef0123456789abcdef", "client_request_id": "c1", "trace_location": {"type": "UC_SCHEMA", "uc_schema": {"catalog_name": "cat", "schema_name": "sch", "otel_spans_table_name": "mlflow_experiment_trace_otel_spans", "otel_logs_table_name": "mlflow_experiment_trace_otel_logs"}}, "request_preview": "rq", "response_preview": "rs", "request_time": "2023-11-14T22:13:20.123Z", "state": "OK", "trace_metadata": {"a": "b"}, "tags": {"t": "v"}, "execution_duration_ms": 5}"#
        );
        let p = TraceInfo::new(
            "trace:/cat.sch.pfx/0123456789abcdef0123456789abcdef",
            TraceLocation::UcTablePrefix(UcTablePrefixLocation::new("cat", "sch", "pfx")),
            1_700_000_000_000,
        );
        assert_eq!(
            crate::json::to_python_json(&p).unwrap(),
            r#"{"trace_id": "trace:/cat.sch.pfx/0123456789abcdef0123456789abcdef", "trace_location": {"type": "UC_TABLE_PREFIX", "uc_table_prefix": {"catalog_name": "cat", "schema_name": "sch", "table_prefix": "pfx"}}, "request_time": "2023-11-14T22:13:20Z", "state": "IN_PROGRESS"}"#
        );
        assert_eq!(
            p.trace_location.uc_location().as_deref(),
            Some("cat.sch.pfx")
        );
    }

    #[test]
    fn truncation_on_write() {
        let mut i = info(
            TraceLocation::experiment("0"),
            "tr-0123456789abcdef0123456789abcdef",
        );
        i.trace_metadata.insert("k".repeat(251), "é".repeat(300));
        i.tags.insert("t".repeat(300), "v".repeat(5000));
        let back: TraceInfo =
            crate::json::parse_json(&crate::json::to_python_json(&i).unwrap()).unwrap();
        assert_eq!(
            back.trace_metadata["k".repeat(250).as_str()],
            "é".repeat(250)
        );
        assert_eq!(back.tags["t".repeat(250).as_str()].len(), 4096);
        // Short values are untouched.
        assert_eq!(back.trace_metadata["a"], "b");
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(
            format_request_time(1_700_000_000_000),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            format_request_time(1_700_000_000_001),
            "2023-11-14T22:13:20.001Z"
        );
        assert_eq!(
            parse_request_time("2023-11-14T22:13:20.123456Z").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_request_time("2023-11-14T23:13:20+01:00").unwrap(),
            1_700_000_000_000
        );
        assert!(
            parse_request_time("yesterday")
                .unwrap_err()
                .to_string()
                .contains("RFC 3339")
        );
        for (ms, s) in [
            (0, "0s"),
            (1000, "1s"),
            (139, "0.139s"),
            (61_234, "61.234s"),
        ] {
            assert_eq!(format_duration_ms(ms), s);
            assert_eq!(parse_duration_ms(s).unwrap(), ms);
        }
        assert!(parse_duration_ms("1 minute").is_err());
    }

    #[test]
    fn lenient_reading() {
        // Unknown states read as unspecified; V2 dicts are converted.
        let i: TraceInfo =
            crate::json::parse_json(r#"{"trace_id": "x", "state": "PAUSED"}"#).unwrap();
        assert_eq!(i.state, TraceState::StateUnspecified);
        let v2: TraceInfo = crate::json::parse_json(
            r#"{"request_id": "abc", "experiment_id": "2", "timestamp_ms": 5, "execution_time_ms": 7, "status": "OK", "request_metadata": {"m": "1"}, "tags": {}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                v2.trace_id.as_str(),
                v2.experiment_id(),
                v2.request_time,
                v2.execution_duration
            ),
            ("abc", Some("2"), 5, Some(7))
        );
        assert_eq!(v2.state, TraceState::Ok);
        assert!(
            crate::json::parse_json::<TraceInfo>("{}")
                .unwrap_err()
                .to_string()
                .contains("trace_id")
        );
        assert!(
            crate::json::parse_json::<TraceInfo>(r#"{"trace_id": "x", "request_time": "soon"}"#)
                .is_err()
        );
    }
}
