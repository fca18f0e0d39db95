//! Sending requests: URLs, auth headers, bodies, MLflow's retry schedule and the mapping of
//! answers to [`ClientError`].

use std::time::Duration;

use bytes::Bytes;
use mlflow_tracing_entities::json;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::Value;

use crate::client::TrackingClient;
use crate::config::Auth;
use crate::error::ClientError;
use crate::pieces::FedBody;

/// Characters kept as they are in a path segment or query value (RFC 3986 unreserved).
pub(crate) const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Statuses retried with backoff, as MLflow's `requests` session does.
const RETRY_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// A protobuf request body, made again for each attempt of a request
/// ([`TrackingClient::send_with`]).
pub(crate) trait ProtobufBody: Sync {
    /// The body of one attempt, made as the connection writes it. It only moves while its
    /// maker feeds it, alongside the request (`otlp_request.rs`).
    fn streamed(&self) -> FedBody;
    /// The whole body in one buffer, which reqwest can send again where a redirect points.
    fn whole(&self) -> Bytes;
}

/// A request's body, shared (not copied) by each attempt. A protobuf body is made for each
/// attempt instead ([`TrackingClient::send_with`]).
pub(crate) enum Body {
    None,
    Json(Bytes),
    Text(Bytes),
}

/// One request to send.
pub(crate) struct Call {
    pub(crate) method: Method,
    /// The path (without query), appended to the tracking URI; shown in errors.
    pub(crate) path: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Body,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) retries: bool,
    pub(crate) timeout: Option<Duration>,
    /// Send to this absolute URL instead of tracking URI + path.
    pub(crate) url: Option<String>,
}

impl Call {
    pub(crate) fn new(method: Method, path: impl Into<String>) -> Self {
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

    pub(crate) fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub(crate) fn json(mut self, body: String) -> Self {
        self.body = Body::Json(body.into());
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

impl TrackingClient {
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
    pub(crate) async fn send(&self, call: Call) -> Result<Vec<u8>, ClientError> {
        self.send_with(call, None).await
    }

    /// [`TrackingClient::send`]; with `protobuf`, the body is a protobuf one that each attempt
    /// makes (`call.body` is not sent), streamed as the connection writes it (whole only to
    /// follow a redirect). An OTLP request of a batch can be large, and ten may wait on a slow
    /// server.
    pub(crate) async fn send_with(
        &self,
        call: Call,
        protobuf: Option<&dyn ProtobufBody>,
    ) -> Result<Vec<u8>, ClientError> {
        let method = method_name(&call.method);
        let url = self.url(&call);
        let max_retries = if call.retries {
            self.config.max_retries
        } else {
            0
        };
        let mut retry = 0;
        let mut token_refreshed = false;
        let mut follow_redirect = false;
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
            request = match (protobuf, &call.body) {
                (Some(body), _) => {
                    let request = request.header("Content-Type", "application/x-protobuf");
                    if follow_redirect {
                        // Reusable: reqwest keeps a copy to send where it is redirected.
                        request.body(body.whole())
                    } else {
                        // Not reusable, so reqwest keeps no copy; it cannot follow a 307 or
                        // 308 with it (handled below), nor retry an HTTP/2 stream the server
                        // refused (the `http2` feature; this loop retries it).
                        request.body(reqwest::Body::wrap(body.streamed()))
                    }
                }
                (None, Body::None) => request,
                (None, Body::Json(b)) => request
                    .header("Content-Type", "application/json")
                    .body(b.clone()),
                (None, Body::Text(b)) => {
                    request.header("Content-Type", "text/plain").body(b.clone())
                }
            };
            let wait = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if response.status().is_success() {
                        return read_bounded(response, self.config.max_answer_bytes, true)
                            .await
                            .map_err(|e| e.into_error(method, &call.path));
                    }
                    if matches!(status, 307 | 308) && protobuf.is_some() && !follow_redirect {
                        // Sent again with a body reqwest can resend where it is redirected.
                        follow_redirect = true;
                        continue;
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
                        // Only the start of an error's body is kept for its message.
                        let body = read_bounded(response, ERROR_BODY_BYTES, false)
                            .await
                            .unwrap_or_else(|e| e.partial);
                        return Err(http_error(method, &call.path, status, &body));
                    }
                    let after = (self.config.respect_retry_after
                        && matches!(status, 413 | 429 | 503))
                    .then(|| retry_after(response.headers()))
                    .flatten();
                    after.unwrap_or_else(|| self.config.backoff(retry + 1))
                }
                Err(e) => {
                    let timeout = e.is_timeout();
                    let transient = e.is_connect() || timeout || e.is_request();
                    let mut message = error_chain(e);
                    // A certificate that cannot be trusted stays so: no retry.
                    if !transient || certificate_refused(&message) || retry >= max_retries {
                        // A server that requires a client certificate ends the TLS session of
                        // a client without one: an alert, a close without close_notify or a
                        // reset, depending on timing.
                        if self.config.client_cert_path.is_none()
                            && self.config.tracking_uri.starts_with("https")
                            && (message.contains("CertificateRequired")
                                || message.contains("close_notify")
                                || message.contains("reset by peer")
                                || message.contains("Broken pipe"))
                        {
                            message.push_str(
                                " (if the tracking server requires a client certificate, set \
                                 MLFLOW_TRACKING_CLIENT_CERT_PATH to a PEM file with the \
                                 certificate and its key)",
                            );
                        }
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

    pub(crate) async fn send_json<T: serde::de::DeserializeOwned>(
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
pub(crate) fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/')
        .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned())
}

pub(crate) fn segment(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// `Retry-After` as seconds or an HTTP date, at most 120 s.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
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
pub(crate) fn http_error(
    method: &'static str,
    path: &str,
    status: u16,
    body: &[u8],
) -> ClientError {
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
pub(crate) fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.push_str(tls_hint(&text));
    text
}

/// rustls's message for a server certificate it does not trust.
const UNTRUSTED: &str = "invalid peer certificate";
/// rustls-platform-verifier's message when the system has no root certificate.
const NO_ROOTS: &str = "No CA certificates were loaded from the system";

/// Whether a TLS failure is the server's certificate not being trusted (or nothing to trust
/// it with): the same on every attempt.
fn certificate_refused(error: &str) -> bool {
    error.contains(UNTRUSTED) || error.contains(NO_ROOTS)
}

/// What to set when a TLS failure says what is missing.
fn tls_hint(error: &str) -> &'static str {
    if error.contains(UNTRUSTED) {
        " (the tracking server's certificate is not trusted: set MLFLOW_TRACKING_SERVER_CERT_PATH \
         to the PEM bundle of its CA, or MLFLOW_TRACKING_INSECURE_TLS=true to skip the check)"
    } else if error.contains(NO_ROOTS) {
        " (this system has no CA certificate to check the tracking server's with: install its \
         CA certificates package, or set MLFLOW_TRACKING_SERVER_CERT_PATH to the PEM bundle of \
         the server's CA)"
    } else {
        ""
    }
}

/// How much of an error answer is read for its message.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// An answer that could not be read whole.
struct ReadError {
    /// What was read before it stopped.
    partial: Vec<u8>,
    message: String,
    timeout: bool,
    /// Past the size limit (not a transport failure).
    too_large: bool,
}

impl ReadError {
    fn into_error(self, method: &'static str, path: &str) -> ClientError {
        if self.too_large {
            ClientError::Decode {
                method,
                endpoint: path.to_owned(),
                message: self.message,
            }
        } else {
            ClientError::Transport {
                method,
                endpoint: path.to_owned(),
                timeout: self.timeout,
                message: format!("reading the answer: {}", self.message),
            }
        }
    }
}

/// Reads an answer's body, at most `limit` bytes (a server answering more is refused without
/// reading the rest; with `refuse_announced`, one that announces more is refused unread).
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
    refuse_announced: bool,
) -> Result<Vec<u8>, ReadError> {
    let too_large = |partial: Vec<u8>, size: String| ReadError {
        partial,
        message: format!(
            "the answer is {size} bytes, more than the {limit} read (ClientConfig::max_answer_bytes)"
        ),
        timeout: false,
        too_large: true,
    };
    let announced = response.content_length();
    if let Some(len) = announced
        && len > limit as u64
        && refuse_announced
    {
        return Err(too_large(Vec::new(), len.to_string()));
    }
    // Grown as data arrives beyond the first MiB (an announced length is only a claim).
    let mut body = Vec::with_capacity(announced.map_or(0, |l| l as usize).min(limit).min(1 << 20));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    let room = limit - body.len();
                    body.extend_from_slice(&chunk[..room]);
                    return Err(too_large(body, "more than that".to_owned()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(ReadError {
                    partial: body,
                    timeout: e.is_timeout(),
                    message: error_chain(e),
                    too_large: false,
                });
            }
        }
    }
}
