//! The error type of the entities crate.

/// Everything that can go wrong while parsing, building or serializing entities.
///
/// Every variant names what was wrong and, where it helps, the offending input (cut to a short
/// prefix so that a hostile value cannot flood a log line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntityError {
    /// A trace id, span id or MLflow trace id could not be parsed.
    #[error("invalid {kind} {input:?}: {reason}")]
    InvalidId {
        /// What kind of id was expected (`"trace id"`, `"span id"`, `"MLflow trace id"`).
        kind: &'static str,
        /// The offending input, cut to 80 characters.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A JSON document could not be parsed or written.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A value nests arrays/objects deeper than the SDK accepts.
    #[error(
        "value nests arrays/objects deeper than {limit} levels; MLflow readers (and this SDK) \
         cannot read such JSON back, so it is rejected"
    )]
    TooDeep {
        /// The nesting limit that was exceeded.
        limit: usize,
    },
    /// A byte buffer that should hold JSON text is not valid UTF-8.
    #[error("JSON text is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// A field holds a value of the right JSON type but an invalid content.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field, e.g. `"request_time"`.
        field: &'static str,
        /// Why it was rejected (may quote a short prefix of the input).
        reason: String,
    },
    /// A span could not be decoded from one of MLflow's span layouts or from OTLP.
    #[error("invalid span: {0}")]
    InvalidSpan(String),
}

impl EntityError {
    pub(crate) fn invalid_id(kind: &'static str, input: &str, reason: &'static str) -> Self {
        EntityError::InvalidId {
            kind,
            input: short(input),
            reason,
        }
    }
}

/// Cuts `s` to at most 80 characters for error messages.
pub(crate) fn short(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// Result alias of this crate.
pub type Result<T, E = EntityError> = std::result::Result<T, E>;
