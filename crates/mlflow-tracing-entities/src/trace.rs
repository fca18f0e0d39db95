//! `Trace` and `TraceData` (`entities/trace.py`, `trace_data.py`), the size statistics MLflow
//! attaches before upload, and the end-of-trace rules that live with the data.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::keys;
use crate::preview::{PreviewRole, preview, truncate_with_ellipsis};
use crate::span::Span;
use crate::token_usage::TokenUsage;
use crate::trace_info::{TraceInfo, TraceState};

/// The spans of a trace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceData {
    /// Spans, in the order they were recorded.
    pub spans: Vec<Span>,
}

impl TraceData {
    /// The root span: the first span without a parent.
    pub fn root_span(&self) -> Option<&Span> {
        self.spans.iter().find(|s| s.parent_id().is_none())
    }

    /// Raw JSON text of the root span's inputs (Python's `TraceData.request`).
    pub fn request(&self) -> Option<&str> {
        self.root_span()?.raw_inputs()
    }

    /// Raw JSON text of the root span's outputs (Python's `TraceData.response`).
    pub fn response(&self) -> Option<&str> {
        self.root_span()?.raw_outputs()
    }
}

/// A finished trace: info plus spans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The trace info.
    pub info: TraceInfo,
    /// The spans.
    pub data: TraceData,
}

/// Size statistics of a trace (`mlflow.trace.sizeStats`), in MLflow's key order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeStats {
    /// Size of the whole `Trace.to_json()` text in bytes.
    pub total_size_bytes: u64,
    /// Number of spans.
    pub num_spans: u64,
    /// Largest span.
    pub max: u64,
    /// 25th percentile of span sizes.
    pub p25: u64,
    /// Median span size.
    pub p50: u64,
    /// 75th percentile of span sizes.
    pub p75: u64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let Some(&last) = sorted.last() else { return 0 };
    let index = p * (sorted.len() - 1) as f64;
    let lower = index as usize;
    let upper = lower + 1;
    if upper >= sorted.len() {
        return last;
    }
    let weight = index - lower as f64;
    (sorted[lower] as f64 * (1.0 - weight) + sorted[upper] as f64 * weight) as u64
}

impl Trace {
    /// A trace from its parts.
    pub fn new(info: TraceInfo, spans: Vec<Span>) -> Self {
        Trace {
            info,
            data: TraceData { spans },
        }
    }

    /// `Trace.to_json()`: the exact text Python writes (ASCII escapes, `", "`/`": "`).
    ///
    /// # Errors
    /// Only for raw attribute values nested deeper than [`crate::json::MAX_NESTING_DEPTH`].
    pub fn to_json(&self) -> Result<String> {
        crate::json::to_python_json(self)
    }

    /// Parses `Trace.to_json()` text, including traces written by older MLflow versions.
    ///
    /// # Errors
    /// [`crate::EntityError`] naming what is missing or malformed.
    pub fn from_json(text: &str) -> Result<Trace> {
        crate::json::parse_json(text)
    }

    /// As [`Trace::from_json`], for bytes that should be UTF-8.
    ///
    /// # Errors
    /// As [`Trace::from_json`], plus invalid UTF-8.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Trace> {
        crate::json::parse_json_bytes(bytes)
    }

    /// Python's `repr`: `Trace(trace_id='tr-…')`.
    pub fn repr(&self) -> String {
        format!("Trace(trace_id='{}')", self.info.trace_id)
    }

    /// Computes size statistics exactly as `add_size_stats_to_trace_metadata` does: each
    /// span's `json.dumps(span.to_dict())` byte length, plus the trace without spans, plus the
    /// `", "` separators. `None` for a trace without spans (Python logs a warning there).
    pub fn size_stats(&self) -> Option<SizeStats> {
        let mut sizes = Vec::with_capacity(self.data.spans.len());
        for span in &self.data.spans {
            sizes.push(span.to_json().ok()?.len() as u64);
        }
        let max = *sizes.iter().max()?;
        let empty = Trace {
            info: self.info.clone(),
            data: TraceData::default(),
        };
        let metadata_size = empty.to_json().ok()?.len() as u64;
        let total = sizes.iter().sum::<u64>() + metadata_size + 2 * (sizes.len() as u64 - 1);
        sizes.sort_unstable();
        Some(SizeStats {
            total_size_bytes: total,
            num_spans: sizes.len() as u64,
            max,
            p25: percentile(&sizes, 0.25),
            p50: percentile(&sizes, 0.50),
            p75: percentile(&sizes, 0.75),
        })
    }

    /// Writes `mlflow.trace.sizeStats` and `mlflow.trace.sizeBytes` (what the exporter does right
    /// before StartTraceV3). Any previous values are replaced; they are not counted.
    pub fn add_size_stats(&mut self) -> Option<SizeStats> {
        self.info
            .trace_metadata
            .shift_remove(keys::metadata::SIZE_STATS);
        self.info
            .trace_metadata
            .shift_remove(keys::metadata::SIZE_BYTES);
        let stats = self.size_stats()?;
        let json = crate::json::to_python_json(&stats).ok()?;
        self.info
            .trace_metadata
            .insert(keys::metadata::SIZE_STATS.into(), json);
        self.info.trace_metadata.insert(
            keys::metadata::SIZE_BYTES.into(),
            stats.total_size_bytes.to_string(),
        );
        Some(stats)
    }

    /// The root-end rules of `_update_trace_info` and `pop_trace` applied to a complete trace:
    /// request time and duration from the root span, state from the root status (only while
    /// `IN_PROGRESS`, so a user-set state wins), `mlflow.traceInputs`/`mlflow.traceOutputs`
    /// (250 characters), aggregated token usage, and previews of `preview_max_chars` characters
    /// (only where still unset, so user previews win). Does nothing without a root span.
    pub fn finalize(&mut self, preview_max_chars: usize) {
        self.finalize_rules(preview_max_chars, true);
    }

    /// The root-end rules of MLflow's inference-table processor: as [`Trace::finalize`], without
    /// the `mlflow.traceInputs`/`mlflow.traceOutputs` metadata (that processor does not write
    /// them; the serving host's consumers read that shape).
    pub fn finalize_inference_table(&mut self, preview_max_chars: usize) {
        self.finalize_rules(preview_max_chars, false);
    }

    fn finalize_rules(&mut self, preview_max_chars: usize, trace_io_metadata: bool) {
        let Some(root) = self.data.root_span() else {
            return;
        };
        let start = root.start_time_ns();
        let end = root.end_time_ns();
        let code = root.status().code;
        let inputs = root.raw_inputs().map(str::to_owned);
        let outputs = root.raw_outputs().map(str::to_owned);

        let info = &mut self.info;
        info.request_time = (start / 1_000_000) as i64;
        if let Some(end) = end {
            info.execution_duration = Some((end.saturating_sub(start) / 1_000_000) as i64);
        }
        if info.state == TraceState::InProgress {
            info.state = TraceState::from_root_status(code);
        }
        let io = |v: &Option<String>| {
            truncate_with_ellipsis(
                v.as_deref().unwrap_or(""),
                keys::MAX_CHARS_IN_TRACE_IO_METADATA,
            )
        };
        if trace_io_metadata {
            info.trace_metadata
                .insert(keys::metadata::INPUTS.into(), io(&inputs));
            info.trace_metadata
                .insert(keys::metadata::OUTPUTS.into(), io(&outputs));
        }
        if let Some(usage) = TokenUsage::aggregate(&self.data.spans)
            && let Ok(json) = crate::json::to_python_json(&usage)
        {
            info.trace_metadata
                .insert(keys::metadata::TOKEN_USAGE.into(), json);
        }
        if info.request_preview.is_none()
            && let Some(raw) = &inputs
        {
            info.request_preview = Some(preview(raw, PreviewRole::Request, preview_max_chars));
        }
        if info.response_preview.is_none()
            && let Some(raw) = &outputs
        {
            info.response_preview = Some(preview(raw, PreviewRole::Response, preview_max_chars));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SpanId, TraceId};
    use crate::span_kinds::{SpanStatus, SpanType};
    use crate::trace_location::TraceLocation;
    use serde_json::json;

    /// The constructed example of the spec (§3.9), whose size stats were produced by MLflow.
    fn spec_example() -> Trace {
        let tid = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let root_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        let root = Span::builder(tid, root_id, "answer_question")
            .times(1_700_000_000_000_000_000, Some(1_700_000_000_250_000_000))
            .status(SpanStatus::ok())
            .span_type(&SpanType::Chain)
            .attribute(keys::span::FUNCTION_NAME, "answer_question")
            .unwrap()
            .attribute(keys::span::INPUTS, &json!({"question": "2+2?"}))
            .unwrap()
            .attribute(keys::span::OUTPUTS, "4")
            .unwrap()
            .attribute(keys::span::LOG_LEVEL, &10)
            .unwrap()
            .build();
        let child = Span::builder(
            tid,
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            "call_llm",
        )
        .parent(Some(root_id))
        .times(1_700_000_000_100_000_000, Some(1_700_000_000_150_000_000))
        .status(SpanStatus::ok())
        .span_type(&SpanType::Llm)
        .attribute(
            keys::span::INPUTS,
            &json!({"messages": [{"role": "user", "content": "2+2?"}]}),
        )
        .unwrap()
        .attribute(
            keys::span::OUTPUTS,
            &json!({"choices": [{"message": {"role": "assistant", "content": "4"}}]}),
        )
        .unwrap()
        .attribute(
            keys::span::CHAT_USAGE,
            &json!({"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}),
        )
        .unwrap()
        .attribute(keys::span::LOG_LEVEL, &20)
        .unwrap()
        .build();
        let mut info = TraceInfo::new(
            "tr-4bf92f3577b34da6a3ce929d0e0e4736",
            TraceLocation::experiment("0"),
            0,
        );
        for (k, v) in [
            ("mlflow.trace_schema.version", "3"),
            ("mlflow.user", "alice"),
            ("mlflow.source.name", "app.py"),
            ("mlflow.source.type", "LOCAL"),
        ] {
            info.trace_metadata.insert(k.into(), v.into());
        }
        info.tags
            .insert(keys::tag::TRACE_NAME.into(), "answer_question".into());
        let mut t = Trace::new(info, vec![root, child]);
        t.finalize(keys::PREVIEW_MAX_LENGTH_OSS);
        t.info
            .trace_metadata
            .insert(keys::metadata::TRACE_SESSION.into(), "sess-1".into());
        t.info
            .trace_metadata
            .insert(keys::metadata::TRACE_USER.into(), "user-7".into());
        t
    }

    #[test]
    fn finalize_and_size_stats_match_the_spec_example() {
        let mut t = spec_example();
        assert_eq!(t.info.state, TraceState::Ok);
        assert_eq!(t.info.execution_duration, Some(250));
        assert_eq!(t.info.request_time, 1_700_000_000_000);
        assert_eq!(
            t.info.request_preview.as_deref(),
            Some(r#"{"question": "2+2?"}"#)
        );
        assert_eq!(t.info.response_preview.as_deref(), Some(r#""4""#));
        assert_eq!(t.info.trace_metadata[keys::metadata::OUTPUTS], r#""4""#);
        assert_eq!(
            t.info.trace_metadata[keys::metadata::TOKEN_USAGE],
            r#"{"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}"#
        );
        let stats = t.add_size_stats().unwrap();
        // Numbers printed by MLflow 3.17.2 for this exact trace (spec §3.9).
        assert_eq!(
            t.info.trace_metadata[keys::metadata::SIZE_STATS],
            r#"{"total_size_bytes": 2051, "num_spans": 2, "max": 715, "p25": 599, "p50": 638, "p75": 676}"#
        );
        assert_eq!(t.info.trace_metadata[keys::metadata::SIZE_BYTES], "2051");
        assert_eq!(stats.num_spans, 2);
        // Idempotent: existing size keys are not counted again.
        assert_eq!(t.add_size_stats(), Some(stats));
    }

    #[test]
    fn state_rules() {
        let mut t = spec_example();
        t.info.state = TraceState::InProgress;
        t.data.spans[0].status = SpanStatus::error("ValueError: boom");
        t.finalize(1000);
        assert_eq!(t.info.state, TraceState::Error);
        // Unset root status finishes OK; a user-set state is kept.
        t.info.state = TraceState::InProgress;
        t.data.spans[0].status = SpanStatus::default();
        t.finalize(1000);
        assert_eq!(t.info.state, TraceState::Ok);
        t.info.state = TraceState::Error;
        t.finalize(1000);
        assert_eq!(t.info.state, TraceState::Error);
    }

    #[test]
    fn trace_io_metadata_and_previews_are_cut() {
        let mut t = spec_example();
        t.info.request_preview = None;
        let long = "d".repeat(3000);
        t.data.spans[0].attributes.insert(
            keys::span::INPUTS,
            json!(crate::json::to_attribute_json(&json!({"document": long})).unwrap()),
        );
        t.data.spans[0].attributes.shift_remove(keys::span::OUTPUTS);
        t.info.response_preview = Some("user preview wins".into());
        t.finalize(1000);
        let inputs = &t.info.trace_metadata[keys::metadata::INPUTS];
        assert_eq!(inputs.chars().count(), 250);
        assert!(inputs.starts_with("{\"document\": \"ddd") && inputs.ends_with("d..."));
        assert_eq!(t.info.trace_metadata[keys::metadata::OUTPUTS], "");
        assert_eq!(t.info.request_preview.as_ref().unwrap().len(), 1000);
        assert_eq!(
            t.info.response_preview.as_deref(),
            Some("user preview wins")
        );
    }

    #[test]
    fn percentiles_interpolate_like_python() {
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[7], 0.25), 7);
        assert_eq!(percentile(&[10, 20, 30, 40], 0.25), 17); // 10*0.25 + 20*0.75 = 17.5 -> 17
        assert_eq!(percentile(&[10, 20, 30, 40], 0.5), 25);
        assert_eq!(percentile(&[10, 20, 30, 40], 0.75), 32);
        assert_eq!(Trace::new(spec_example().info, vec![]).size_stats(), None);
    }
}
