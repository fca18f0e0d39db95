//! Traces: StartTraceV3, OTLP span logging, the `traces.json` artifact, reading, searching and
//! tags.

use mlflow_tracing_entities::keys::tag;
use mlflow_tracing_entities::{Span, Trace, TraceData, TraceInfo, is_http_uri, json};
use percent_encoding::utf8_percent_encode;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::client::TrackingClient;
use crate::error::ClientError;
use crate::experiments::{validate_experiment_id, validate_name};
use crate::otlp_json::SpanJson;
use crate::transport::{Body, Call, ENCODE, segment, url_path};

/// A trace search ([`TrackingClient::search_traces`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SearchTraces {
    /// Experiments to search.
    pub experiment_ids: Vec<String>,
    /// MLflow filter string, e.g. `tags.team = 'a'` or `trace.status = 'OK'`.
    pub filter: Option<String>,
    /// Order, e.g. `timestamp_ms DESC`.
    pub order_by: Vec<String>,
    /// Page size (default 100).
    pub max_results: u32,
    /// Token from a previous page.
    pub page_token: Option<String>,
}

impl SearchTraces {
    /// All traces of `experiment_id`, 100 per page.
    pub fn in_experiment(experiment_id: impl Into<String>) -> Self {
        SearchTraces {
            experiment_ids: vec![experiment_id.into()],
            filter: None,
            order_by: Vec::new(),
            max_results: 100,
            page_token: None,
        }
    }

    /// Sets the filter string.
    #[must_use]
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Adds an order clause.
    #[must_use]
    pub fn order_by(mut self, clause: impl Into<String>) -> Self {
        self.order_by.push(clause.into());
        self
    }

    /// Sets the page size.
    #[must_use]
    pub fn max_results(mut self, n: u32) -> Self {
        self.max_results = n;
        self
    }

    /// Continues from a previous page.
    #[must_use]
    pub fn page_token(mut self, token: impl Into<String>) -> Self {
        self.page_token = Some(token.into());
        self
    }
}

/// One page of search results.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TracePage<T> {
    /// The traces of this page.
    pub traces: Vec<T>,
    /// The token of the next page, if any.
    pub next_page_token: Option<String>,
}

impl TrackingClient {
    /// `POST /api/3.0/mlflow/traces` (StartTraceV3, sent once the trace is finished): the info
    /// as the server stored it (with `mlflow.artifactLocation`, and
    /// `mlflow.trace.spansLocation` when the spans are in its database).
    ///
    /// # Errors
    /// [`ClientError`]; 404 `RESOURCE_DOES_NOT_EXIST` for an unknown experiment.
    pub async fn start_trace_v3(&self, info: &TraceInfo) -> Result<TraceInfo, ClientError> {
        let body = info
            .start_trace_v3_body()
            .map_err(|e| ClientError::InvalidArgument {
                what: "trace info",
                value: info.trace_id.clone(),
                reason: leak_reason(&e),
            })?;
        let call = Call::new(Method::POST, "/api/3.0/mlflow/traces").json(body);
        Ok(self.send_json::<TraceAnswer>(call).await?.trace.trace_info)
    }

    /// `POST /v1/traces`: the spans as one OTLP protobuf request into `experiment_id`; the
    /// server groups them by trace.
    ///
    /// # Errors
    /// [`ClientError`]; HTTP 501 "REST OTLP span logging is not supported" when the server's
    /// store cannot hold spans.
    pub async fn log_spans<'a>(
        &self,
        experiment_id: &str,
        spans: impl IntoIterator<Item = &'a Span>,
    ) -> Result<(), ClientError> {
        validate_experiment_id(experiment_id)?;
        self.send_otlp(
            "/v1/traces",
            ("x-mlflow-experiment-id", experiment_id.to_owned()),
            spans,
        )
        .await
    }

    /// `PUT …/traces.json` through the server's artifact proxy, under the trace's
    /// `mlflow.artifactLocation` tag (from the info [`TrackingClient::start_trace_v3`]
    /// returned): MLflow's fallback when the spans are not in the tracking store.
    ///
    /// # Errors
    /// [`ClientError`]; [`ClientError::InvalidArgument`] when the tag is missing or names an
    /// artifact store this client cannot reach (only `mlflow-artifacts:` and `http(s)`).
    pub async fn upload_trace_data(
        &self,
        info: &TraceInfo,
        data: &TraceData,
    ) -> Result<(), ClientError> {
        let url = self.trace_data_url(info)?;
        let body = json::to_python_json(data).map_err(|e| ClientError::InvalidArgument {
            what: "trace data",
            value: info.trace_id.clone(),
            reason: leak_reason(&e),
        })?;
        let mut call = Call::new(Method::PUT, url_path(&url));
        call.url = Some(url);
        call.body = Body::Text(body.into());
        self.send(call).await.map(drop)
    }

    fn trace_data_url(&self, info: &TraceInfo) -> Result<String, ClientError> {
        let location =
            info.tags
                .get(tag::ARTIFACT_LOCATION)
                .ok_or_else(|| ClientError::InvalidArgument {
                    what: "trace info",
                    value: info.trace_id.clone(),
                    reason: "no mlflow.artifactLocation tag (trace data corrupted)",
                })?;
        let encode_path = |p: &str| {
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(|s| utf8_percent_encode(s, ENCODE).to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        if let Some(rest) = location.strip_prefix("mlflow-artifacts:") {
            // `mlflow-artifacts:/path` or `mlflow-artifacts://host:port/path`: the path goes
            // through the tracking server's proxy.
            let path = match rest.strip_prefix("//") {
                Some(authority_and_path) => authority_and_path
                    .find('/')
                    .map_or("", |i| &authority_and_path[i..]),
                None => rest,
            };
            return Ok(format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{}/traces.json",
                self.base,
                encode_path(path)
            ));
        }
        if is_http_uri(location) {
            return Ok(format!("{}/traces.json", location.trim_end_matches('/')));
        }
        Err(ClientError::InvalidArgument {
            what: "artifact location",
            value: location.clone(),
            reason: "only mlflow-artifacts: and http(s) artifact locations are supported",
        })
    }

    // ----- Databricks: Unity Catalog tables -----

    /// `GET /api/3.0/mlflow/traces/{id}`: the trace info.
    ///
    /// # Errors
    /// [`ClientError`]; 404 for an unknown id.
    pub async fn get_trace_info(&self, trace_id: &str) -> Result<TraceInfo, ClientError> {
        validate_trace_id(trace_id)?;
        let call = Call::new(
            Method::GET,
            format!("/api/3.0/mlflow/traces/{}", segment(trace_id)),
        )
        .query("trace_id", trace_id);
        Ok(self.send_json::<TraceAnswer>(call).await?.trace.trace_info)
    }

    /// The whole trace, as `mlflow.get_trace` reads it: the info, then the spans from the
    /// tracking store (`GET /api/3.0/mlflow/traces/get`) or, when they are not there, from
    /// the `traces.json` artifact.
    ///
    /// # Errors
    /// [`ClientError`]; 404 for an unknown id.
    pub async fn get_trace(&self, trace_id: &str) -> Result<Trace, ClientError> {
        let info = self.get_trace_info(trace_id).await?;
        let in_store = info
            .tags
            .get(tag::SPANS_LOCATION)
            .is_some_and(|l| l == tag::SPANS_LOCATION_TRACKING_STORE || l == "ARCHIVE_REPO");
        if in_store {
            let call = Call::new(Method::GET, "/api/3.0/mlflow/traces/get")
                .query("trace_id", trace_id)
                .query("allow_partial", "False");
            let answer: FullTraceAnswer = self.send_json(call).await?;
            return answer.trace.into_trace("/api/3.0/mlflow/traces/get");
        }
        let url = self.trace_data_url(&info)?;
        let mut call = Call::new(Method::GET, url_path(&url));
        call.url = Some(url);
        let path = call.path.clone();
        let body = self.send(call).await?;
        let data: TraceData = json::parse_json_bytes(&body).map_err(|e| ClientError::Decode {
            method: "GET",
            endpoint: path,
            message: e.to_string(),
        })?;
        Ok(Trace::new(info, data.spans))
    }

    /// `GET /api/3.0/mlflow/traces/batchGet`: whole traces from the tracking store, 10 ids per
    /// request.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn batch_get_traces(&self, trace_ids: &[String]) -> Result<Vec<Trace>, ClientError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            traces: Vec<FullTrace>,
        }
        let mut traces = Vec::with_capacity(trace_ids.len());
        for chunk in trace_ids.chunks(10) {
            let mut call = Call::new(Method::GET, "/api/3.0/mlflow/traces/batchGet");
            for id in chunk {
                validate_trace_id(id)?;
                call = call.query("trace_ids", id.clone());
            }
            let answer: Answer = self.send_json(call).await?;
            for t in answer.traces {
                traces.push(t.into_trace("/api/3.0/mlflow/traces/batchGet")?);
            }
        }
        Ok(traces)
    }

    /// `POST /api/3.0/mlflow/traces/search`: one page of trace infos.
    ///
    /// # Errors
    /// [`ClientError`]; 400 `INVALID_PARAMETER_VALUE` for a bad filter.
    pub async fn search_traces(
        &self,
        search: &SearchTraces,
    ) -> Result<TracePage<TraceInfo>, ClientError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            traces: Vec<TraceInfo>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        for id in &search.experiment_ids {
            validate_experiment_id(id)?;
        }
        let locations: Vec<Value> = search
            .experiment_ids
            .iter()
            .map(|id| {
                serde_json::json!({"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": id}})
            })
            .collect();
        let mut body = serde_json::json!({
            "locations": locations,
            "max_results": search.max_results,
        });
        if let Some(filter) = &search.filter {
            body["filter"] = Value::String(filter.clone());
        }
        if !search.order_by.is_empty() {
            body["order_by"] = serde_json::json!(search.order_by);
        }
        if let Some(token) = &search.page_token {
            body["page_token"] = Value::String(token.clone());
        }
        let call = Call::new(Method::POST, "/api/3.0/mlflow/traces/search").json(body.to_string());
        let answer: Answer = self.send_json(call).await?;
        Ok(TracePage {
            traces: answer.traces,
            next_page_token: answer.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// [`TrackingClient::search_traces`] with the spans of every trace of the page
    /// (`batchGet`), as `mlflow.search_traces` does. Traces whose spans are not in the
    /// tracking store are read one by one ([`TrackingClient::get_trace`]).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn search_full_traces(
        &self,
        search: &SearchTraces,
    ) -> Result<TracePage<Trace>, ClientError> {
        let page = self.search_traces(search).await?;
        let order: Vec<String> = page.traces.iter().map(|i| i.trace_id.clone()).collect();
        let (in_store, elsewhere): (Vec<_>, Vec<_>) = page.traces.into_iter().partition(|i| {
            i.tags.get(tag::SPANS_LOCATION).map(String::as_str)
                == Some(tag::SPANS_LOCATION_TRACKING_STORE)
        });
        let ids: Vec<String> = in_store.iter().map(|i| i.trace_id.clone()).collect();
        let mut fetched = self.batch_get_traces(&ids).await?;
        for info in elsewhere {
            fetched.push(self.get_trace(&info.trace_id).await?);
        }
        // Keep the search order.
        fetched.sort_by_key(|t| {
            order
                .iter()
                .position(|id| *id == t.info.trace_id)
                .unwrap_or(usize::MAX)
        });
        Ok(TracePage {
            traces: fetched,
            next_page_token: page.next_page_token,
        })
    }

    /// `PATCH /api/2.0/mlflow/traces/{id}/tags`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn set_trace_tag(
        &self,
        trace_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), ClientError> {
        validate_trace_id(trace_id)?;
        validate_name(key)?;
        let body = serde_json::json!({"key": key, "value": value}).to_string();
        let call = Call::new(
            Method::PATCH,
            format!("/api/2.0/mlflow/traces/{}/tags", segment(trace_id)),
        )
        .json(body);
        self.send(call).await.map(drop)
    }

    /// `DELETE /api/2.0/mlflow/traces/{id}/tags` (the key in a JSON body, as MLflow sends it).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn delete_trace_tag(&self, trace_id: &str, key: &str) -> Result<(), ClientError> {
        validate_trace_id(trace_id)?;
        validate_name(key)?;
        let body = serde_json::json!({"key": key}).to_string();
        let call = Call::new(
            Method::DELETE,
            format!("/api/2.0/mlflow/traces/{}/tags", segment(trace_id)),
        )
        .json(body);
        self.send(call).await.map(drop)
    }
}

#[derive(Deserialize)]
struct TraceAnswer {
    trace: InfoOnly,
}

#[derive(Deserialize)]
struct InfoOnly {
    trace_info: TraceInfo,
}

#[derive(Deserialize)]
struct FullTraceAnswer {
    trace: FullTrace,
}

#[derive(Deserialize)]
struct FullTrace {
    trace_info: TraceInfo,
    #[serde(default)]
    spans: Vec<SpanJson>,
}

impl FullTrace {
    fn into_trace(self, endpoint: &str) -> Result<Trace, ClientError> {
        let decode = |message: String| ClientError::Decode {
            method: "GET",
            endpoint: endpoint.to_owned(),
            message,
        };
        let spans = self
            .spans
            .into_iter()
            .map(|s| {
                let proto = s.into_proto().map_err(decode)?;
                Span::from_otlp(&proto, None).map_err(|e| decode(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trace::new(self.trace_info, spans))
    }
}

/// A `GET /api/3.0/mlflow/traces/{id}` answer's info, as the client reads it (for fuzzing).
#[cfg(test)]
pub(crate) fn parse_trace_info_answer(body: &[u8]) -> Result<TraceInfo, String> {
    json::parse_json_bytes::<TraceAnswer>(body)
        .map(|a| a.trace.trace_info)
        .map_err(|e| e.to_string())
}

/// A `GET /api/3.0/mlflow/traces/get` answer, as the client reads it (for fuzzing).
#[cfg(test)]
pub(crate) fn parse_full_trace_answer(body: &[u8]) -> Result<Trace, String> {
    json::parse_json_bytes::<FullTraceAnswer>(body)
        .map_err(|e| e.to_string())?
        .trace
        .into_trace("/api/3.0/mlflow/traces/get")
        .map_err(|e| e.to_string())
}

pub(crate) fn leak_reason(e: &mlflow_tracing_entities::EntityError) -> &'static str {
    match e {
        mlflow_tracing_entities::EntityError::TooDeep { .. } => "a value is nested too deeply",
        _ => "cannot be serialized",
    }
}

pub(crate) fn validate_trace_id(id: &str) -> Result<(), ClientError> {
    if id.is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
        return Err(ClientError::InvalidArgument {
            what: "trace id",
            value: id.to_owned(),
            reason: "must be non-empty, at most 512 characters, without control characters",
        });
    }
    Ok(())
}
