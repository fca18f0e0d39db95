//! MLflow's root sampler (`MLFLOW_TRACE_SAMPLING_RATIO`).

use mlflow_tracing_entities::TraceId;
use opentelemetry::trace::{Link as OtelLink, SpanKind, TraceContextExt, TraceId as OtelTraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

/// MLflow's root sampler: a trace is sampled iff the low 64 bits of its trace id are below
/// `round(ratio * 2^64)` (OpenTelemetry Python's `TraceIdRatioBased`, which MLflow uses).
/// Children follow their parent's decision.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MlflowRatioSampler {
    bound: u128,
}

impl MlflowRatioSampler {
    pub(crate) fn new(ratio: f64) -> Self {
        let bound = (ratio.clamp(0.0, 1.0) * 18_446_744_073_709_551_616.0).round() as u128;
        MlflowRatioSampler { bound }
    }

    pub(crate) fn samples(&self, trace_id: TraceId) -> bool {
        u128::from(trace_id.to_int() as u64) < self.bound
    }
}

/// For spans started through OpenTelemetry's API on the tracer's provider.
impl ShouldSample for MlflowRatioSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: OtelTraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[OtelLink],
    ) -> SamplingResult {
        let decision = if self.samples(TraceId::from(trace_id)) {
            SamplingDecision::RecordAndSample
        } else {
            SamplingDecision::Drop
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: parent_context
                .map(|cx| cx.span().span_context().trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_sampler_follows_mlflow_rule() {
        let half = MlflowRatioSampler::new(0.5);
        // Only the low 64 bits count.
        assert!(half.samples(TraceId::from_int(0xffff_0000_0000_0000_7fff_ffff_ffff_ffff)));
        assert!(!half.samples(TraceId::from_int(0x8000_0000_0000_0000)));
        assert!(MlflowRatioSampler::new(1.0).samples(TraceId::from_int(u128::MAX)));
        assert!(!MlflowRatioSampler::new(0.0).samples(TraceId::from_int(0)));
    }
}
