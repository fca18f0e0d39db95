//! The OTLP exporter of MLflow Tracing for Rust: finished traces' spans to any OpenTelemetry
//! collector (or other OTLP/HTTP receiver), as MLflow's Python SDK sends them when
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set.
//!
//! [`OtlpExporter`] is a [`TraceExporter`]: the export runtime batches, bounds and counts its
//! work like any other destination's. Spans carry MLflow's attributes (`mlflow.spanInputs`,
//! `mlflow.traceRequestId`, …), so an MLflow server behind the collector still reads them.
//!
//! Settings (MLflow's rules, `mlflow/tracing/utils/otlp.py`):
//! - the endpoint: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`; the exporter is used only when one is set
//!   and `MLFLOW_ENABLE_OTLP_EXPORTER` is not `false`;
//! - headers: `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`
//!   (`key=value,key2=value2`, values percent-decoded, as the OpenTelemetry SDK reads them);
//! - the protocol: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`.
//!   Only `http/protobuf` is supported: MLflow's default, `grpc`, is refused with a
//!   [`OtlpConfigError`] saying what to set (this SDK has no gRPC stack);
//! - the time limit of one request: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
//!   `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds, default 10 000).
//!
//! Whether traces go to the OTLP endpoint only, or also to the tracking server
//! (`MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT`), is the facade's `init`'s decision.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mlflow_tracing_entities::otlp::{export_request, sdk_resource};
use mlflow_tracing_manager::{ExportError, ExportItem, TraceExporter, async_trait};
use prost::Message as _;

/// At most this many spans per request (a single trace's spans are never split).
const MAX_SPANS_PER_REQUEST: usize = 1000;

/// An OTLP setting that cannot be used, with what to set instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OtlpConfigError(String);

impl OtlpConfigError {
    fn new(message: impl Into<String>) -> Self {
        OtlpConfigError(message.into())
    }
}

/// The counters of an [`OtlpExporter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpExporterStats {
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (no answer or a non-2xx status).
    pub failed_requests: u64,
    /// Spans the receiver accepted.
    pub spans_exported: u64,
    /// Traces whose spans could not be delivered.
    pub traces_failed: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    failed_requests: AtomicU64,
    spans_exported: AtomicU64,
    traces_failed: AtomicU64,
}

/// Sends finished traces' spans to an OTLP/HTTP receiver (see the crate docs).
pub struct OtlpExporter {
    http: reqwest::Client,
    endpoint: String,
    headers: Vec<(String, String)>,
    counters: Counters,
}

impl fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may be credentials: only their names.
        f.debug_struct("OtlpExporter")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn var(get: &impl Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    get(key).filter(|v| !v.trim().is_empty())
}

/// `key=value,key2=value2` as the OpenTelemetry SDK reads OTLP headers (values percent-decoded).
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, OtlpConfigError> {
    let mut headers = Vec::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            OtlpConfigError::new(format!(
                "OTLP headers: {:?} is not key=value",
                pair.split_once('=').map_or(pair, |(k, _)| k)
            ))
        })?;
        let value = percent_encoding::percent_decode_str(v.trim())
            .decode_utf8()
            .map_err(|_| OtlpConfigError::new("OTLP headers: a value is not UTF-8"))?;
        let (k, value) = (k.trim().to_owned(), value.into_owned());
        if k.is_empty()
            || k.chars().any(|c| c.is_control())
            || value.chars().any(|c| c.is_control())
        {
            return Err(OtlpConfigError::new(
                "OTLP headers: a header name is empty, or a name or value has control characters",
            ));
        }
        headers.push((k, value));
    }
    Ok(headers)
}

impl OtlpExporter {
    /// An exporter from the process environment; `None` when no OTLP endpoint is set (or
    /// `MLFLOW_ENABLE_OTLP_EXPORTER=false`).
    ///
    /// # Errors
    /// [`OtlpConfigError`] for an unsupported protocol, malformed headers or timeout.
    pub fn from_env() -> Result<Option<Self>, OtlpConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`OtlpExporter::from_env`], reading variables through `get`.
    ///
    /// # Errors
    /// As [`OtlpExporter::from_env`].
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, OtlpConfigError> {
        let enabled = var(&get, "MLFLOW_ENABLE_OTLP_EXPORTER")
            .is_none_or(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0"));
        let endpoint = match (
            var(&get, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var(&get, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(full), _) => full,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        if !enabled {
            return Ok(None);
        }
        let protocol = var(&get, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var(&get, "OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "grpc".to_owned());
        if protocol.trim() != "http/protobuf" {
            return Err(OtlpConfigError::new(format!(
                "OTLP protocol {protocol:?} is not supported by this SDK: set \
                 OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf (and an http(s) endpoint, \
                 usually port 4318 of a collector)"
            )));
        }
        let headers = match var(&get, "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or_else(|| var(&get, "OTEL_EXPORTER_OTLP_HEADERS"))
        {
            Some(text) => parse_headers(&text)?,
            None => Vec::new(),
        };
        let timeout_ms = match var(&get, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| var(&get, "OTEL_EXPORTER_OTLP_TIMEOUT"))
        {
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                OtlpConfigError::new(format!(
                    "OTLP timeout {v:?} is not a number of milliseconds"
                ))
            })?,
            None => 10_000,
        };
        Self::new(endpoint, headers, Duration::from_millis(timeout_ms)).map(Some)
    }

    /// An exporter to `endpoint` (the full URL, `…/v1/traces`) with these headers.
    ///
    /// # Errors
    /// [`OtlpConfigError`] when the endpoint is not http(s) or the HTTP client cannot be built.
    pub fn new(
        endpoint: impl Into<String>,
        headers: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<Self, OtlpConfigError> {
        let endpoint = endpoint.into();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(OtlpConfigError::new(format!(
                "the OTLP endpoint must be http:// or https:// (got {endpoint:?})"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| OtlpConfigError::new(format!("cannot build the OTLP client: {e}")))?;
        Ok(OtlpExporter {
            http,
            endpoint,
            headers,
            counters: Counters::default(),
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The counters now.
    pub fn stats(&self) -> OtlpExporterStats {
        let c = &self.counters;
        OtlpExporterStats {
            requests: c.requests.load(Ordering::Relaxed),
            failed_requests: c.failed_requests.load(Ordering::Relaxed),
            spans_exported: c.spans_exported.load(Ordering::Relaxed),
            traces_failed: c.traces_failed.load(Ordering::Relaxed),
        }
    }

    /// One request of these traces' spans; the error, if it failed.
    async fn send(&self, traces: &[&mlflow_tracing_entities::Trace]) -> Result<(), String> {
        let request = export_request(
            sdk_resource(env!("CARGO_PKG_VERSION")),
            traces.iter().flat_map(|t| t.data.spans.iter()),
        );
        let body = request.encode_to_vec();
        drop(request);
        let mut call = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/x-protobuf");
        for (k, v) in &self.headers {
            call = call.header(k.as_str(), v.as_str());
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let result = match call.body(body).send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => Err(format!("HTTP {}", answer.status().as_u16())),
            Err(e) => Err(e.without_url().to_string()),
        };
        if result.is_err() {
            self.counters
                .failed_requests
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

#[async_trait]
impl TraceExporter for OtlpExporter {
    async fn export(&self, batch: Vec<ExportItem>) -> Result<(), ExportError> {
        let traces: Vec<_> = batch
            .iter()
            .filter_map(|item| match item {
                ExportItem::Trace(t) => Some(&t.trace),
                _ => None,
            })
            .collect();
        let mut failed = 0u64;
        let mut first_error = None;
        let mut chunk: Vec<&mlflow_tracing_entities::Trace> = Vec::new();
        let mut spans = 0;
        let mut chunks = Vec::new();
        for trace in traces {
            if spans > 0 && spans + trace.data.spans.len() > MAX_SPANS_PER_REQUEST {
                chunks.push(std::mem::take(&mut chunk));
                spans = 0;
            }
            spans += trace.data.spans.len();
            chunk.push(trace);
        }
        chunks.push(chunk);
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            match self.send(chunk).await {
                Ok(()) => {
                    let n: usize = chunk.iter().map(|t| t.data.spans.len()).sum();
                    self.counters
                        .spans_exported
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    failed += chunk.len() as u64;
                    first_error.get_or_insert(e);
                }
            }
        }
        self.counters
            .traces_failed
            .fetch_add(failed, Ordering::Relaxed);
        match first_error {
            None => Ok(()),
            Some(e) => {
                let message = format!("OTLP export to {} failed: {e}", self.endpoint);
                mlflow_tracing_manager::notice::visible(|| tracing::warn!("{message}"));
                Err(ExportError::new(message).with_failed_items(failed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn endpoints_headers_and_protocols_follow_mlflows_rules() {
        assert!(OtlpExporter::from_lookup(lookup(&[])).unwrap().is_none());
        let http = ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        let e = OtlpExporter::from_lookup(lookup(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
            http,
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(e.endpoint(), "http://c:4318/v1/traces");
        let e = OtlpExporter::from_lookup(lookup(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/custom"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "x-mlflow-experiment-id=7, auth=a%20b",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "ignored=1"),
            http,
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(e.endpoint(), "http://t:1/custom");
        assert_eq!(
            e.headers,
            [
                ("x-mlflow-experiment-id".to_owned(), "7".to_owned()),
                ("auth".to_owned(), "a b".to_owned())
            ]
        );
        // Secrets stay out of Debug.
        assert!(!format!("{e:?}").contains("a b"));
        // MLflow's default protocol is gRPC: refused, saying what to set.
        let err = OtlpExporter::from_lookup(lookup(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://t:4317",
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("http/protobuf"), "{err}");
        assert!(
            OtlpExporter::from_lookup(lookup(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t"),
                ("MLFLOW_ENABLE_OTLP_EXPORTER", "false"),
            ]))
            .unwrap()
            .is_none()
        );
        assert!(parse_headers("novalue").is_err());
        assert!(parse_headers("a=b%0d%0aX: y").is_err());
    }
}
