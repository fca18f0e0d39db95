//! The MLflow tracking server's REST API, as MLflow Tracing needs it.
//!
//! [`TrackingClient`] speaks to an MLflow tracking server (`mlflow server`, 3.4 or later for
//! OTLP span logging) over reqwest with rustls: the server version, experiments (get, get by
//! name, create), StartTraceV3, OTLP span logging (`POST /v1/traces`, protobuf), the
//! `traces.json` artifact upload through the server's artifact proxy, trace info and whole
//! traces, search with `batchGet`, trace tags, and assessments (feedback and expectations). The wire format is the one MLflow 3.17's
//! Python client sends (`shared/spec/wire-protocol.md`).
//!
//! Settings come from MLflow's environment variables ([`ClientConfig::from_env`]) and can be
//! overridden in code: `MLFLOW_TRACKING_URI`, `MLFLOW_TRACKING_TOKEN` (bearer),
//! `MLFLOW_TRACKING_USERNAME`/`_PASSWORD` (basic, wins over the token),
//! `MLFLOW_TRACKING_INSECURE_TLS`, `MLFLOW_TRACKING_SERVER_CERT_PATH`,
//! `MLFLOW_TRACKING_CLIENT_CERT_PATH`, `MLFLOW_HTTP_REQUEST_TIMEOUT` (120 s),
//! `MLFLOW_HTTP_REQUEST_MAX_RETRIES` (7), `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` (2) and
//! `MLFLOW_HTTP_REQUEST_BACKOFF_JITTER` (1.0). Transient failures (408, 429, 500, 502, 503, 504,
//! connection errors, timeouts) are retried with MLflow's backoff schedule and `Retry-After`;
//! other answers fail at once with a [`ClientError`] naming the endpoint, the status and the
//! server's error code and message. Secrets never appear in `Debug` output or logs.
//!
//! ```no_run
//! # #[allow(dead_code)]
//! # async fn demo() -> Result<(), mlflow_tracing_client::ClientError> {
//! use mlflow_tracing_client::{ClientConfig, SearchTraces, TrackingClient};
//!
//! let client = TrackingClient::new(ClientConfig::new("http://127.0.0.1:5000"))?;
//! let experiment = client.get_or_create_experiment("my-agent").await?;
//! let page = client
//!     .search_full_traces(&SearchTraces::in_experiment(experiment).filter("trace.status = 'OK'"))
//!     .await?;
//! for trace in page.traces {
//!     println!("{} has {} spans", trace.info.trace_id, trace.data.spans.len());
//! }
//! # Ok(()) }
//! ```
#![doc(test(attr(deny(warnings))))]

mod assessments;
mod client;
pub mod config;
mod databricks;
mod error;
mod experiments;
#[cfg(test)]
mod fuzz;
mod otlp_json;
mod otlp_request;
mod pieces;
mod tls;
mod traces;
mod transport;

pub use assessments::{AssessmentUpdate, Expectation, Feedback};
pub use client::{SDK_VERSION, TrackingClient};
pub use config::{Auth, ClientConfig, Secret};
pub use error::ClientError;
pub use experiments::Experiment;
pub use traces::{SearchTraces, TracePage};
