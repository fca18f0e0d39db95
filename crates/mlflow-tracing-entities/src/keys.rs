//! Reserved attribute, metadata and tag keys, and MLflow's size limits (`tracing/constant.py`).

/// Span attribute keys MLflow reserves (`SpanAttributeKey`).
pub mod span {
    /// The MLflow trace id, JSON-encoded (`"\"tr-…\""`). On every span.
    pub const REQUEST_ID: &str = "mlflow.traceRequestId";
    /// The span type, JSON-encoded.
    pub const SPAN_TYPE: &str = "mlflow.spanType";
    /// The span inputs, JSON.
    pub const INPUTS: &str = "mlflow.spanInputs";
    /// The span outputs, JSON.
    pub const OUTPUTS: &str = "mlflow.spanOutputs";
    /// The traced function's name.
    pub const FUNCTION_NAME: &str = "mlflow.spanFunctionName";
    /// An optional description.
    pub const DESCRIPTION: &str = "mlflow.spanDescription";
    /// Integer severity (10/20/30/40/50).
    pub const LOG_LEVEL: &str = "mlflow.spanLogLevel";
    /// Explicit start time given at creation.
    pub const START_TIME_NS: &str = "mlflow.spanStartTimeNs";
    /// Explicit experiment id on a root span.
    pub const EXPERIMENT_ID: &str = "mlflow.experimentId";
    /// Tool definitions (OpenAI tool format).
    pub const CHAT_TOOLS: &str = "mlflow.chat.tools";
    /// Token usage of an LLM call.
    pub const CHAT_USAGE: &str = "mlflow.chat.tokenUsage";
    /// Cost of an LLM call (USD).
    pub const LLM_COST: &str = "mlflow.llm.cost";
    /// Model name.
    pub const MODEL: &str = "mlflow.llm.model";
    /// Model provider.
    pub const MODEL_PROVIDER: &str = "mlflow.llm.provider";
    /// Which integration produced an LLM span.
    pub const MESSAGE_FORMAT: &str = "mlflow.message.format";
    /// Prompt versions loaded while the span was active.
    pub const LINKED_PROMPTS: &str = "mlflow.linkedPrompts";
    /// Prefix that carries non-`mlflow.` trace tags as root attributes on the OTLP path.
    pub const TRACE_TAG_PREFIX: &str = "mlflow.traceTag.";
}

/// Trace metadata keys (`TraceMetadataKey` and environment metadata).
pub mod metadata {
    /// Trace schema version: `"3"` (experiments) or `"4"` (Unity Catalog).
    pub const SCHEMA_VERSION: &str = "mlflow.trace_schema.version";
    /// Root inputs, cut to 250 characters.
    pub const INPUTS: &str = "mlflow.traceInputs";
    /// Root outputs, cut to 250 characters.
    pub const OUTPUTS: &str = "mlflow.traceOutputs";
    /// Run id active at trace start.
    pub const SOURCE_RUN: &str = "mlflow.sourceRun";
    /// Active model id.
    pub const MODEL_ID: &str = "mlflow.modelId";
    /// Size statistics JSON.
    pub const SIZE_STATS: &str = "mlflow.trace.sizeStats";
    /// Total size in bytes (deprecated twin of the stats).
    pub const SIZE_BYTES: &str = "mlflow.trace.sizeBytes";
    /// Aggregated token usage JSON.
    pub const TOKEN_USAGE: &str = "mlflow.trace.tokenUsage";
    /// Aggregated cost JSON (Databricks/SageMaker only; OSS servers compute it).
    pub const COST: &str = "mlflow.trace.cost";
    /// Application end-user id.
    pub const TRACE_USER: &str = "mlflow.trace.user";
    /// Session id.
    pub const TRACE_SESSION: &str = "mlflow.trace.session";
    /// Written by the server; clients must not send it.
    pub const INFO_FINALIZED: &str = "mlflow.trace.infoFinalized";
    /// OS user (environment metadata).
    pub const USER: &str = "mlflow.user";
    /// Main program (environment metadata).
    pub const SOURCE_NAME: &str = "mlflow.source.name";
    /// `LOCAL`, `NOTEBOOK`, `JOB`, … (environment metadata).
    pub const SOURCE_TYPE: &str = "mlflow.source.type";
    /// Git commit (environment metadata).
    pub const GIT_COMMIT: &str = "mlflow.source.git.commit";
    /// Git branch (environment metadata).
    pub const GIT_BRANCH: &str = "mlflow.source.git.branch";
    /// Git remote URL (environment metadata).
    pub const GIT_REPO_URL: &str = "mlflow.source.git.repoURL";
    /// Model-serving endpoint name.
    pub const MODEL_SERVING_ENDPOINT_NAME: &str = "mlflow.databricks.modelServingEndpointName";
}

/// Trace tag keys (`TraceTagKey`).
pub mod tag {
    /// Root span name.
    pub const TRACE_NAME: &str = "mlflow.traceName";
    /// Server-set: where spans are stored (`TRACKING_STORE`, `ARTIFACT_REPO`, `ARCHIVE_REPO`).
    pub const SPANS_LOCATION: &str = "mlflow.trace.spansLocation";
    /// Server-set artifact root of the trace.
    pub const ARTIFACT_LOCATION: &str = "mlflow.artifactLocation";
    /// Prompt versions used by the trace.
    pub const LINKED_PROMPTS: &str = "mlflow.linkedPrompts";
    /// Value of [`SPANS_LOCATION`] when spans live in the tracking store.
    pub const SPANS_LOCATION_TRACKING_STORE: &str = "TRACKING_STORE";
    /// Tags a user may not set or delete.
    pub const IMMUTABLE: [&str; 5] = [
        "mlflow.user",
        ARTIFACT_LOCATION,
        SPANS_LOCATION,
        "mlflow.trace.archiveLocation",
        "mlflow.trace.archivalFailure",
    ];
}

/// Metadata keys and values are cut to this many characters when sent.
pub const MAX_CHARS_IN_TRACE_INFO_METADATA: usize = 250;
/// Tag keys are cut to this many characters when sent.
pub const MAX_CHARS_IN_TRACE_INFO_TAGS_KEY: usize = 250;
/// Tag values are cut to this many characters when sent.
pub const MAX_CHARS_IN_TRACE_INFO_TAGS_VALUE: usize = 4096;
/// `mlflow.traceInputs`/`mlflow.traceOutputs` length (247 characters + `...`).
pub const MAX_CHARS_IN_TRACE_IO_METADATA: usize = 250;
/// Preview length for non-Databricks tracking servers.
pub const PREVIEW_MAX_LENGTH_OSS: usize = 1000;
/// Preview length for Databricks.
pub const PREVIEW_MAX_LENGTH_DATABRICKS: usize = 10_000;
