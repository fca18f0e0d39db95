//! Databricks: OAuth machine-to-machine tokens, and the Unity Catalog endpoints.

use std::time::Duration;

use mlflow_tracing_entities::{Span, TraceInfo};
use percent_encoding::utf8_percent_encode;
use reqwest::Method;
use serde::Deserialize;

use crate::client::{CachedToken, TrackingClient};
use crate::error::ClientError;
use crate::transport::{Call, ENCODE, error_chain, http_error, segment, url_path};

impl TrackingClient {
    /// The OAuth bearer token: the cached one, or a fresh one from the token endpoint (fetched
    /// again when less than a tenth of its life, and at most 5 minutes, is left).
    pub(crate) async fn oauth_token(
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
    pub(crate) async fn drop_token(&self) {
        *self.token.lock().await = None;
    }

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
}
