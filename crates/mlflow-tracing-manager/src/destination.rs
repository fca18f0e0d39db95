//! Where traces go, which decides how a trace starts (ids, metadata, tags), and the serving
//! request a trace belongs to (Databricks model serving).

use std::fmt;
use std::pin::Pin;
use std::task::Poll;

use mlflow_tracing_entities::{TraceLocation, UcSchemaLocation, UcTablePrefixLocation};
use opentelemetry::{Context, ContextGuard};

use crate::error::ConfigError;

/// `MLFLOW_TRACING_DESTINATION`: `catalog.schema` sends traces to a Unity Catalog schema.
pub const MLFLOW_TRACING_DESTINATION: &str = "MLFLOW_TRACING_DESTINATION";

/// The header model-serving frameworks put the serving request id in.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// Where a tracer's traces go; it decides how each trace starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceDestination {
    /// An MLflow experiment (the default): `tr-<hex>` ids, schema version "3", the
    /// `mlflow.traceName` tag, environment metadata.
    #[default]
    Experiment,
    /// A Databricks model-serving inference table (MLflow's inference-table processor): every
    /// trace needs a serving request id ([`ServingRequest`]), which becomes its
    /// `client_request_id`; metadata carries the serving endpoint name and model id; no
    /// `mlflow.traceName` tag and no environment metadata. A root span without a request id is
    /// not tracked (one warning, counted in `TracerStats::spans_dropped`).
    InferenceTable {
        /// The experiment traces are also logged to (MLflow reads `MLFLOW_EXPERIMENT_ID`);
        /// `None` leaves the location unspecified.
        experiment_id: Option<String>,
    },
    /// A Unity Catalog schema or table prefix (`TraceLocation::UcSchema` /
    /// `TraceLocation::UcTablePrefix`): `trace:/<location>/<hex>` ids, schema version "4", and
    /// at root end the trace's user and session metadata copied to the root span's `user.id`
    /// and `session.id` attributes.
    UnityCatalog(TraceLocation),
}

impl TraceDestination {
    /// A Unity Catalog schema with MLflow's default table names.
    pub fn uc_schema(catalog: impl Into<String>, schema: impl Into<String>) -> Self {
        TraceDestination::UnityCatalog(TraceLocation::UcSchema(UcSchemaLocation::new(
            catalog, schema,
        )))
    }

    /// A Unity Catalog table prefix; `spans_table` is the fully qualified spans table the
    /// backend assigned to it.
    pub fn uc_table_prefix(
        catalog: impl Into<String>,
        schema: impl Into<String>,
        prefix: impl Into<String>,
        spans_table: Option<String>,
    ) -> Self {
        let mut location = UcTablePrefixLocation::new(catalog, schema, prefix);
        location.spans_table_name = spans_table;
        TraceDestination::UnityCatalog(TraceLocation::UcTablePrefix(location))
    }

    /// Parses `MLFLOW_TRACING_DESTINATION` (`catalog.schema`).
    ///
    /// # Errors
    /// [`ConfigError`] when the value is not two non-empty dotted parts.
    pub fn parse_uc_schema(value: &str) -> Result<Self, ConfigError> {
        match value.trim().split('.').collect::<Vec<_>>().as_slice() {
            [catalog, schema] if !catalog.is_empty() && !schema.is_empty() => {
                Ok(Self::uc_schema(*catalog, *schema))
            }
            _ => Err(ConfigError::InvalidEnv {
                name: MLFLOW_TRACING_DESTINATION,
                value: value.to_owned(),
                expected: "Unity Catalog schema (catalog.schema)",
            }),
        }
    }

    /// The Unity Catalog location, for that destination.
    pub fn uc_location(&self) -> Option<&TraceLocation> {
        match self {
            TraceDestination::UnityCatalog(l) => Some(l),
            _ => None,
        }
    }
}

/// The model-serving request a trace belongs to (MLflow's prediction context): the request id,
/// and the endpoint and model that serve it. Attach it around the code that handles the
/// request ([`ServingRequest::in_scope`], [`ServingRequest::attach`], or
/// [`FutureExt::in_serving_request`](crate::FutureExt::in_serving_request) for async code);
/// a root span started inside becomes a trace keyed by this request id.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServingRequest {
    /// The serving request id (`X-Request-Id`).
    pub request_id: String,
    /// The serving endpoint's name (`mlflow.databricks.modelServingEndpointName`).
    pub endpoint_name: Option<String>,
    /// The served model's id (`mlflow.modelId`).
    pub model_id: Option<String>,
}

impl ServingRequest {
    /// A request with this id.
    pub fn new(request_id: impl Into<String>) -> Self {
        ServingRequest {
            request_id: request_id.into(),
            endpoint_name: None,
            model_id: None,
        }
    }

    /// The request of an HTTP request's headers: its `X-Request-Id` (any letter case); `None`
    /// when absent or empty.
    pub fn from_headers<'a, K, V>(headers: impl IntoIterator<Item = (K, V)>) -> Option<Self>
    where
        K: AsRef<str> + 'a,
        V: AsRef<str> + 'a,
    {
        headers
            .into_iter()
            .find(|(k, v)| {
                k.as_ref().eq_ignore_ascii_case(REQUEST_ID_HEADER) && !v.as_ref().trim().is_empty()
            })
            .map(|(_, v)| Self::new(v.as_ref().trim()))
    }

    /// Sets the serving endpoint name.
    #[must_use]
    pub fn endpoint_name(mut self, name: impl Into<String>) -> Self {
        self.endpoint_name = Some(name.into());
        self
    }

    /// Sets the model id.
    #[must_use]
    pub fn model_id(mut self, id: impl Into<String>) -> Self {
        self.model_id = Some(id.into());
        self
    }

    /// The current context with this request added.
    pub fn context(&self) -> Context {
        Context::current().with_value(self.clone())
    }

    /// Attaches the request to this thread until the guard drops.
    pub fn attach(&self) -> ServingRequestGuard {
        ServingRequestGuard {
            _guard: self.context().attach(),
        }
    }

    /// Runs `f` with the request attached.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.attach();
        f()
    }

    /// The request attached to the current context, if any.
    pub fn current() -> Option<ServingRequest> {
        Context::map_current(|cx| cx.get::<ServingRequest>().cloned())
    }
}

/// Keeps a [`ServingRequest`] attached (see [`ServingRequest::attach`]).
#[must_use = "the request is detached when the guard drops"]
pub struct ServingRequestGuard {
    _guard: ContextGuard,
}

impl fmt::Debug for ServingRequestGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServingRequestGuard")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn request_ids_come_from_headers_in_any_case() {
        let r = ServingRequest::from_headers([("content-type", "x"), ("x-request-id", " abc ")]);
        assert_eq!(r.unwrap().request_id, "abc");
        assert!(ServingRequest::from_headers([("X-Request-Id", "")]).is_none());
        assert!(ServingRequest::from_headers(Vec::<(&str, &str)>::new()).is_none());
    }

    #[test]
    fn uc_destination_parses_catalog_dot_schema() {
        let d = TraceDestination::parse_uc_schema("main.traces").unwrap();
        assert_eq!(
            d.uc_location().unwrap().uc_location().as_deref(),
            Some("main.traces")
        );
        for bad in ["main", "a.b.c", ".x", ""] {
            assert!(TraceDestination::parse_uc_schema(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_request_is_visible_in_scope_only() {
        assert!(ServingRequest::current().is_none());
        let r = ServingRequest::new("r1").endpoint_name("ep");
        r.in_scope(|| assert_eq!(ServingRequest::current(), Some(r.clone())));
        assert!(ServingRequest::current().is_none());
    }
}

pin_project_lite::pin_project! {
    /// A future run with a [`ServingRequest`] added to whatever context is current when it is
    /// polled (so it composes with `Tracer::scope` and `in_current_span` in either order).
    #[must_use = "futures do nothing unless polled"]
    pub struct InServingRequest<F> {
        #[pin]
        inner: F,
        request: ServingRequest,
    }
}

impl<F> InServingRequest<F> {
    pub(crate) fn new(inner: F, request: ServingRequest) -> Self {
        InServingRequest { inner, request }
    }
}

impl<F: Future> Future for InServingRequest<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _guard = Context::current().with_value(this.request.clone()).attach();
        this.inner.poll(cx)
    }
}

impl<F> fmt::Debug for InServingRequest<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InServingRequest")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}
