//! `TrackingClient`: requests, retries, and the tracing endpoints.

use std::fmt;
use std::time::Duration;

use mlflow_tracing_entities::keys::tag;
use mlflow_tracing_entities::{Span, Trace, TraceData, TraceInfo, json, otlp};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use prost::Message as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{Auth, ClientConfig, redact_uri};
use crate::error::ClientError;
use crate::otlp_json::SpanJson;

/// Characters kept as they are in a path segment or query value (RFC 3986 unreserved).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Statuses retried with backoff, as MLflow's `requests` session does.
const RETRY_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// The version this SDK reports as `telemetry.sdk.version` and in `User-Agent`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// An MLflow experiment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Experiment {
    /// The id (digits).
    pub experiment_id: String,
    /// The name.
    #[serde(default)]
    pub name: String,
    /// Where its artifacts go (`mlflow-artifacts:/<id>` on a proxying server).
    #[serde(default)]
    pub artifact_location: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

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

enum Body {
    None,
    Json(String),
    Protobuf(Vec<u8>),
    Text(Vec<u8>),
}

/// One request to send.
struct Call {
    method: Method,
    /// The path (without query), appended to the tracking URI; shown in errors.
    path: String,
    query: Vec<(&'static str, String)>,
    body: Body,
    headers: Vec<(&'static str, String)>,
    retries: bool,
    timeout: Option<Duration>,
    /// Send to this absolute URL instead of tracking URI + path.
    url: Option<String>,
}

impl Call {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            body: Body::None,
            headers: Vec::new(),
            retries: true,
            timeout: None,
            url: None,
        }
    }

    fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    fn json(mut self, body: String) -> Self {
        self.body = Body::Json(body);
        self
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "HTTP",
    }
}

/// A client of an MLflow tracking server's REST API, for tracing. Cheap to clone.
///
/// Every call is async and retries transient failures (408, 429, 5xx gateway errors,
/// connection errors and timeouts) with MLflow's backoff schedule; other 4xx answers fail at
/// once. Must be polled inside a tokio runtime with I/O and timers enabled. Clones share one
/// connection pool, and a pooled connection belongs to the runtime that opened it: use a
/// client (and its clones) from one runtime, and make another client for another runtime (a
/// request over a connection whose runtime is not running stalls until the timeout).
#[derive(Clone)]
pub struct TrackingClient {
    http: reqwest::Client,
    base: String,
    config: ClientConfig,
    /// The cached OAuth token (OAuth client credentials only).
    token: std::sync::Arc<tokio::sync::Mutex<Option<CachedToken>>>,
}

/// An OAuth access token and when to fetch a new one.
struct CachedToken {
    value: crate::config::Secret,
    refresh_at: std::time::Instant,
}

impl fmt::Debug for TrackingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackingClient")
            .field("config", &self.config)
            .finish()
    }
}

impl TrackingClient {
    /// A client with these settings.
    ///
    /// # Errors
    /// [`ClientError::Config`] for invalid settings or unreadable certificate files.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate()?;
        let mut builder = reqwest::Client::builder()
            .user_agent(format!("mlflow-tracing-rust/{SDK_VERSION}"))
            .timeout(config.timeout)
            .pool_max_idle_per_host(10)
            .tcp_keepalive(Duration::from_secs(60));
        if config.insecure_tls {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(path) = &config.server_cert_path {
            let pem = std::fs::read(path)
                .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ClientError::Config(format!("bad CA bundle {}: {e}", path.display()))
            })?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some(path) = &config.client_cert_path {
            let pem = std::fs::read(path)
                .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", path.display())))?;
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                ClientError::Config(format!("bad client certificate {}: {e}", path.display()))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(TrackingClient {
            http,
            base: config.tracking_uri.trim_end_matches('/').to_owned(),
            config,
            token: std::sync::Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// A client configured from MLflow's environment variables.
    ///
    /// # Errors
    /// As [`ClientConfig::from_env`] and [`TrackingClient::new`].
    pub fn from_env() -> Result<Self, ClientError> {
        Self::new(ClientConfig::from_env()?)
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The tracking URI without a trailing `/` (user info redacted).
    pub fn tracking_uri(&self) -> String {
        redact_uri(&self.base)
    }

    /// The OAuth bearer token: the cached one, or a fresh one from the token endpoint (fetched
    /// again when less than a tenth of its life, and at most 5 minutes, is left).
    async fn oauth_token(
        &self,
        token_url: &str,
        client_id: &str,
        client_secret: &crate::config::Secret,
        scope: &str,
    ) -> Result<crate::config::Secret, ClientError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && std::time::Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let endpoint = url_path(token_url);
        let form = format!(
            "grant_type=client_credentials&scope={}",
            utf8_percent_encode(scope, ENCODE)
        );
        let response = self
            .http
            .post(token_url)
            .basic_auth(client_id, Some(client_secret.expose()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| ClientError::Transport {
                method: "POST",
                endpoint: endpoint.clone(),
                timeout: e.is_timeout(),
                message: format!("fetching an OAuth token: {}", error_chain(e)),
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(http_error("POST", &endpoint, status, &body));
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            method: "POST",
            endpoint,
            message: format!("OAuth token answer: {e}"),
        })?;
        let life = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let margin = (life / 10).min(Duration::from_secs(300));
        let value = crate::config::Secret::new(answer.access_token);
        *cached = Some(CachedToken {
            value: value.clone(),
            refresh_at: std::time::Instant::now() + life.saturating_sub(margin),
        });
        Ok(value)
    }

    /// Forgets the cached OAuth token (after a 401).
    async fn drop_token(&self) {
        *self.token.lock().await = None;
    }

    fn url(&self, call: &Call) -> String {
        let mut url = call
            .url
            .clone()
            .unwrap_or_else(|| format!("{}{}", self.base, call.path));
        for (i, (k, v)) in call.query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.extend(utf8_percent_encode(v, ENCODE));
        }
        url
    }

    /// Sends `call`, retrying as configured; the body of a 2xx answer.
    async fn send(&self, call: Call) -> Result<Vec<u8>, ClientError> {
        let method = method_name(&call.method);
        let url = self.url(&call);
        let max_retries = if call.retries {
            self.config.max_retries
        } else {
            0
        };
        let mut retry = 0;
        let mut token_refreshed = false;
        loop {
            let mut request = self.http.request(call.method.clone(), &url);
            if let Some(timeout) = call.timeout {
                request = request.timeout(timeout);
            }
            // Credentials only go to the tracking server itself, not to another host an
            // artifact location names.
            let auth = if call
                .url
                .as_deref()
                .is_some_and(|u| !same_origin(u, &self.base))
            {
                &Auth::None
            } else {
                &self.config.auth
            };
            request = match auth {
                Auth::None => request,
                Auth::Bearer(token) => request.bearer_auth(token.expose()),
                Auth::Basic { username, password } => {
                    request.basic_auth(username, Some(password.expose()))
                }
                Auth::OAuthClientCredentials {
                    token_url,
                    client_id,
                    client_secret,
                    scope,
                } => {
                    let token = self
                        .oauth_token(token_url, client_id, client_secret, scope)
                        .await?;
                    request.bearer_auth(token.expose())
                }
            };
            for (k, v) in &call.headers {
                request = request.header(*k, v);
            }
            request = match &call.body {
                Body::None => request,
                Body::Json(s) => request
                    .header("Content-Type", "application/json")
                    .body(s.clone()),
                Body::Protobuf(b) => request
                    .header("Content-Type", "application/x-protobuf")
                    .body(b.clone()),
                Body::Text(b) => request.header("Content-Type", "text/plain").body(b.clone()),
            };
            let wait = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if response.status().is_success() {
                        let body = response.bytes().await.map_err(|e| ClientError::Transport {
                            method,
                            endpoint: call.path.clone(),
                            timeout: e.is_timeout(),
                            message: format!("reading the answer: {}", error_chain(e)),
                        })?;
                        return Ok(body.to_vec());
                    }
                    if status == 401
                        && !token_refreshed
                        && matches!(self.config.auth, Auth::OAuthClientCredentials { .. })
                    {
                        // The token may have been revoked or expired early: fetch a new one.
                        token_refreshed = true;
                        self.drop_token().await;
                        continue;
                    }
                    if !RETRY_STATUSES.contains(&status) || retry >= max_retries {
                        let body = response.bytes().await.unwrap_or_default();
                        return Err(http_error(method, &call.path, status, &body));
                    }
                    let after = (self.config.respect_retry_after
                        && matches!(status, 413 | 429 | 503))
                    .then(|| retry_after(response.headers()))
                    .flatten();
                    after.unwrap_or_else(|| self.config.backoff(retry + 1))
                }
                Err(e) => {
                    let retryable = e.is_connect() || e.is_timeout() || e.is_request();
                    if !retryable || retry >= max_retries {
                        let timeout = e.is_timeout();
                        let mut message = error_chain(e);
                        if timeout {
                            message.push_str(
                                " (the request timed out; raise MLFLOW_HTTP_REQUEST_TIMEOUT)",
                            );
                        }
                        if retry > 0 {
                            message.push_str(&format!(" after {} retries", retry));
                        }
                        return Err(ClientError::Transport {
                            method,
                            endpoint: call.path.clone(),
                            message,
                            timeout,
                        });
                    }
                    self.config.backoff(retry + 1)
                }
            };
            retry += 1;
            tracing::debug!(
                method,
                endpoint = %call.path,
                retry,
                wait_ms = wait.as_millis() as u64,
                "retrying an MLflow request"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        call: Call,
    ) -> Result<T, ClientError> {
        let method = method_name(&call.method);
        let path = call.path.clone();
        let body = self.send(call).await?;
        let body = if body.is_empty() {
            b"{}".to_vec()
        } else {
            body
        };
        json::parse_json_bytes(&body).map_err(|e| ClientError::Decode {
            method,
            endpoint: path,
            message: e.to_string(),
        })
    }

    // ----- server -----

    /// `GET /version`: the server's MLflow version (3 s, no retries, as MLflow probes it).
    ///
    /// # Errors
    /// [`ClientError`] when the server cannot be reached or answers with an error.
    pub async fn version(&self) -> Result<String, ClientError> {
        let mut call = Call::new(Method::GET, "/version");
        call.retries = false;
        call.timeout = Some(Duration::from_secs(3));
        let body = self.send(call).await?;
        Ok(String::from_utf8_lossy(&body).trim().to_owned())
    }

    // ----- experiments -----

    /// `GET experiments/get`.
    ///
    /// # Errors
    /// [`ClientError`]; 404 for an unknown id.
    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment, ClientError> {
        validate_experiment_id(experiment_id)?;
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let call = Call::new(Method::GET, "/api/2.0/mlflow/experiments/get")
            .query("experiment_id", experiment_id);
        Ok(self.send_json::<Answer>(call).await?.experiment)
    }

    /// `GET experiments/get-by-name`; `None` when there is no such experiment.
    ///
    /// # Errors
    /// [`ClientError`] other than "does not exist".
    pub async fn get_experiment_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Experiment>, ClientError> {
        validate_name(name)?;
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let call = Call::new(Method::GET, "/api/2.0/mlflow/experiments/get-by-name")
            .query("experiment_name", name);
        match self.send_json::<Answer>(call).await {
            Ok(a) => Ok(Some(a.experiment)),
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST experiments/create`: the new experiment's id.
    ///
    /// # Errors
    /// [`ClientError`]; `RESOURCE_ALREADY_EXISTS` when the name is taken.
    pub async fn create_experiment(&self, name: &str) -> Result<String, ClientError> {
        validate_name(name)?;
        #[derive(Deserialize)]
        struct Answer {
            experiment_id: String,
        }
        let body = serde_json::json!({ "name": name }).to_string();
        let call = Call::new(Method::POST, "/api/2.0/mlflow/experiments/create").json(body);
        Ok(self.send_json::<Answer>(call).await?.experiment_id)
    }

    /// The id of the experiment named `name`, created if missing (a concurrent creation by
    /// another client is tolerated).
    ///
    /// # Errors
    /// [`ClientError`] from the lookups.
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<String, ClientError> {
        if let Some(e) = self.get_experiment_by_name(name).await? {
            return Ok(e.experiment_id);
        }
        match self.create_experiment(name).await {
            Ok(id) => Ok(id),
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => self
                .get_experiment_by_name(name)
                .await?
                .map(|e| e.experiment_id)
                .ok_or(e),
            Err(e) => Err(e),
        }
    }

    // ----- writing traces -----

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

    /// One OTLP protobuf request of `spans` (nothing is sent for none) with a routing header.
    async fn send_otlp<'a>(
        &self,
        path: &'static str,
        header: (&'static str, String),
        spans: impl IntoIterator<Item = &'a Span>,
    ) -> Result<(), ClientError> {
        let request = otlp::export_request(otlp::sdk_resource(SDK_VERSION), spans);
        if request
            .resource_spans
            .iter()
            .all(|r| r.scope_spans.iter().all(|s| s.spans.is_empty()))
        {
            return Ok(());
        }
        let mut call = Call::new(Method::POST, path);
        call.body = Body::Protobuf(request.encode_to_vec());
        call.headers.push(header);
        self.send(call).await.map(drop)
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
        call.body = Body::Text(body.into_bytes());
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
        if location.starts_with("http://") || location.starts_with("https://") {
            return Ok(format!("{}/traces.json", location.trim_end_matches('/')));
        }
        Err(ClientError::InvalidArgument {
            what: "artifact location",
            value: location.clone(),
            reason: "only mlflow-artifacts: and http(s) artifact locations are supported",
        })
    }

    // ----- Databricks: Unity Catalog tables -----

    /// `POST /api/2.0/otel/v1/traces` with `X-Databricks-UC-Table-Name: <table>`: spans into a
    /// Unity Catalog spans table, one OTLP protobuf request.
    ///
    /// # Errors
    /// [`ClientError`]; [`ClientError::InvalidArgument`] for a table name that is not
    /// `catalog.schema.table`.
    pub async fn log_spans_to_uc_table<'a>(
        &self,
        table: &str,
        spans: impl IntoIterator<Item = &'a Span>,
    ) -> Result<(), ClientError> {
        let parts: Vec<&str> = table.split('.').collect();
        if parts.len() != 3
            || parts.iter().any(|p| p.is_empty())
            || table.chars().any(char::is_control)
        {
            return Err(ClientError::InvalidArgument {
                what: "Unity Catalog table",
                value: table.to_owned(),
                reason: "must be catalog.schema.table",
            });
        }
        self.send_otlp(
            "/api/2.0/otel/v1/traces",
            ("X-Databricks-UC-Table-Name", table.to_owned()),
            spans,
        )
        .await
    }

    /// `POST /api/4.0/mlflow/traces/{location}/{otel trace id}/info` (CreateTraceInfo): the info
    /// of a trace stored in Unity Catalog, in V4 proto JSON; the stored info back.
    ///
    /// # Errors
    /// [`ClientError`]; [`ClientError::InvalidArgument`] when the info is not a V4 (Unity
    /// Catalog) trace.
    pub async fn create_trace_info_v4(&self, info: &TraceInfo) -> Result<TraceInfo, ClientError> {
        let invalid = |reason| ClientError::InvalidArgument {
            what: "trace info",
            value: info.trace_id.clone(),
            reason,
        };
        let id = info
            .mlflow_trace_id()
            .map_err(|_| invalid("not a valid trace id"))?;
        let location = id
            .location()
            .ok_or_else(|| invalid("not a Unity Catalog (V4) trace id"))?
            .to_owned();
        let body = info
            .create_trace_info_v4_body()
            .map_err(|_| invalid("not a Unity Catalog (V4) trace"))?;
        let call = Call::new(
            Method::POST,
            format!(
                "/api/4.0/mlflow/traces/{}/{}/info",
                segment(&location),
                id.otel_trace_id().to_hex()
            ),
        )
        .json(body);
        self.send_json(call).await
    }

    // ----- reading traces -----

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

/// Whether two absolute URLs have the same scheme and authority.
fn same_origin(a: &str, b: &str) -> bool {
    let origin = |u: &str| {
        let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        (scheme.to_ascii_lowercase(), authority.to_ascii_lowercase())
    };
    origin(a) == origin(b)
}

/// The path part of an absolute URL (for error messages).
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/')
        .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned())
}

fn segment(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

fn leak_reason(e: &mlflow_tracing_entities::EntityError) -> &'static str {
    match e {
        mlflow_tracing_entities::EntityError::TooDeep { .. } => "a value is nested too deeply",
        _ => "cannot be serialized",
    }
}

fn validate_experiment_id(id: &str) -> Result<(), ClientError> {
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ClientError::InvalidArgument {
            what: "experiment id",
            value: id.to_owned(),
            reason: "experiment ids are decimal digits",
        });
    }
    Ok(())
}

fn validate_trace_id(id: &str) -> Result<(), ClientError> {
    if id.is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
        return Err(ClientError::InvalidArgument {
            what: "trace id",
            value: id.to_owned(),
            reason: "must be non-empty, at most 512 characters, without control characters",
        });
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), ClientError> {
    if name.is_empty() || name.len() > 1024 || name.chars().any(|c| c == '\0') {
        return Err(ClientError::InvalidArgument {
            what: "name",
            value: name.to_owned(),
            reason: "must be non-empty, at most 1024 bytes, without NUL",
        });
    }
    Ok(())
}

/// `Retry-After` as seconds or an HTTP date, at most 120 s.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers.get("retry-after")?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(Duration::from_secs_f64(crate::config::MAX_BACKOFF)))
}

/// The error of a non-2xx answer: MLflow's `{"error_code", "message"}`, FastAPI's
/// `{"detail"}`, or the start of the body.
fn http_error(method: &'static str, path: &str, status: u16, body: &[u8]) -> ClientError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let (code, message) = match parsed.as_ref().and_then(Value::as_object) {
        Some(obj) if obj.contains_key("error_code") || obj.contains_key("message") => (
            obj.get("error_code")
                .and_then(Value::as_str)
                .map(str::to_owned),
            obj.get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        Some(obj) if obj.contains_key("detail") => (
            None,
            match &obj["detail"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        ),
        _ => {
            let text = String::from_utf8_lossy(body);
            let mut text: String = text.chars().take(500).collect();
            if text.is_empty() {
                text = "(empty body)".into();
            }
            (None, text)
        }
    };
    ClientError::Http {
        method,
        endpoint: path.to_owned(),
        status,
        code,
        message,
    }
}

/// The error and its sources, without the URL (which reqwest puts in its message).
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
