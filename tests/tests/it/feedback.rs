//! Feedback and expectations on the real server, against Python: the same assessments logged
//! by Python's `mlflow.log_feedback`/`log_expectation` on a Python trace and by
//! `TrackingClient` on a Rust trace read back the same through `mlflow.get_trace(..)
//! .info.assessments`; updates and deletes; bad input refused before anything is written.

use std::collections::HashMap;

use mlflow_tracing::entities::{
    AssessmentError, AssessmentSource, AssessmentSourceType, AssessmentValue,
};
use mlflow_tracing::server::{AssessmentUpdate, ClientError, Expectation, Feedback};
use mlflow_tracing::start_span;
use serde_json::{Value, json};

use crate::live::{block_on, client, experiment, python_json, sync_tracer};

const PY_PROGRAM: &str = r#"
import json, sys, mlflow
from mlflow.entities import AssessmentSource, AssessmentError
mlflow.set_experiment(experiment_id=sys.argv[1])
with mlflow.start_span("answer") as span:
    span.set_inputs({"q": "capital of France?"})
    span.set_outputs("Paris")
trace_id, span_id = span.trace_id, span.span_id
mlflow.log_feedback(trace_id=trace_id, name="correctness", value=True,
                    source=AssessmentSource(source_type="HUMAN", source_id="alice@example.com"),
                    rationale="looks right", metadata={"k": "v"}, span_id=span_id)
mlflow.log_feedback(trace_id=trace_id, name="score", value={"a": 1, "b": [1, 2, "x"]},
                    source=AssessmentSource(source_type="LLM_JUDGE", source_id="gpt-4o"))
mlflow.log_feedback(trace_id=trace_id, name="faithfulness",
                    error=AssessmentError(error_code="RATE_LIMIT_EXCEEDED", error_message="slow down"))
mlflow.log_expectation(trace_id=trace_id, name="expected_answer", value="Paris")
mlflow.log_expectation(trace_id=trace_id, name="expected_facts", value={"facts": ["a", "b"], "n": 2},
                       metadata={"m": "1"})
print(json.dumps({"trace_id": trace_id, "span_id": span_id}))
"#;

/// The assessments of a trace as Python reads them, by name (span ids as "set"/None).
const PY_READ: &str = r#"
import json, sys, mlflow
out = {}
for a in mlflow.get_trace(sys.argv[1]).info.assessments:
    out[a.name] = {
        "kind": type(a).__name__, "value": a.value,
        "source": [a.source.source_type, a.source.source_id],
        "rationale": a.rationale, "metadata": a.metadata,
        "span": None if a.span_id is None else "set",
        "error": None if getattr(a, "error", None) is None
                 else [a.error.error_code, a.error.error_message],
    }
print(json.dumps(out, sort_keys=True))
"#;

#[test]
fn assessments_read_back_as_pythons() {
    let py_experiment = experiment("feedback-python");
    let py = python_json(PY_PROGRAM, &[&py_experiment]);

    let rust_experiment = experiment("feedback-rust");
    let tracer = sync_tracer(&rust_experiment);
    let (trace_id, span_id) = tracer.in_scope(|| {
        let span = start_span("answer")
            .inputs(&json!({"q": "capital of France?"}))
            .start();
        span.set_outputs(&"Paris");
        (
            span.mlflow_trace_id().unwrap(),
            span.span_id().unwrap().to_string(),
        )
    });
    let c = client();
    block_on(async {
        c.log_feedback(
            &trace_id,
            &Feedback::new("correctness", &true)
                .source(AssessmentSource::new(
                    AssessmentSourceType::Human,
                    "alice@example.com",
                ))
                .rationale("looks right")
                .metadata("k", "v")
                .span_id(&span_id),
        )
        .await
        .unwrap();
        c.log_feedback(
            &trace_id,
            &Feedback::new("score", &json!({"a": 1, "b": [1, 2, "x"]})).source(
                AssessmentSource::new(AssessmentSourceType::LlmJudge, "gpt-4o"),
            ),
        )
        .await
        .unwrap();
        c.log_feedback(
            &trace_id,
            &Feedback::error(
                "faithfulness",
                AssessmentError {
                    error_code: "RATE_LIMIT_EXCEEDED".into(),
                    error_message: Some("slow down".into()),
                    stack_trace: None,
                },
            ),
        )
        .await
        .unwrap();
        c.log_expectation(&trace_id, &Expectation::new("expected_answer", "Paris"))
            .await
            .unwrap();
        c.log_expectation(
            &trace_id,
            &Expectation::new("expected_facts", &json!({"facts": ["a", "b"], "n": 2}))
                .metadata("m", "1"),
        )
        .await
        .unwrap();
    });

    let python = python_json(PY_READ, &[py["trace_id"].as_str().unwrap()]);
    let rust = python_json(PY_READ, &[&trace_id]);
    assert_eq!(rust, python);
    assert_eq!(python.as_object().unwrap().len(), 5);
    assert_eq!(
        python["expected_facts"]["value"],
        json!({"facts": ["a", "b"], "n": 2})
    );

    // Read back by the Rust client too, typed.
    let ours = block_on(c.get_assessments(&trace_id)).unwrap();
    let facts = ours.iter().find(|a| a.name == "expected_facts").unwrap();
    assert_eq!(
        facts.value,
        AssessmentValue::Expectation(json!({"facts": ["a", "b"], "n": 2}))
    );
    let correctness = ours.iter().find(|a| a.name == "correctness").unwrap();
    assert_eq!(correctness.span_id.as_deref(), Some(span_id.as_str()));
}

#[test]
fn updates_and_deletes_and_bad_input_writes_nothing() {
    let id = experiment("feedback-update");
    let tracer = sync_tracer(&id);
    let trace_id = tracer.in_scope(|| {
        let span = start_span("t").start();
        span.mlflow_trace_id().unwrap()
    });
    let c = client();
    block_on(async {
        let logged = c
            .log_feedback(
                &trace_id,
                &Feedback::new("correctness", &true).metadata("n", "3"),
            )
            .await
            .unwrap();
        let assessment_id = logged.assessment_id.clone().unwrap();
        assert!(assessment_id.starts_with("a-"));

        let updated = c
            .update_assessment(
                &trace_id,
                &assessment_id,
                &AssessmentUpdate::new("correctness")
                    .feedback(&false)
                    .rationale("actually wrong")
                    .metadata("k", "v2"),
            )
            .await
            .unwrap();
        assert_eq!(
            updated.value,
            AssessmentValue::Feedback {
                value: json!(false),
                error: None
            }
        );
        assert_eq!(updated.rationale.as_deref(), Some("actually wrong"));
        assert_eq!(updated.metadata["n"], "3", "metadata is merged");
        assert_eq!(updated.metadata["k"], "v2");
        assert_eq!(updated.create_time_ms, logged.create_time_ms);

        // The wrong kind of value: the server's 400, named.
        let wrong = c
            .update_assessment(
                &trace_id,
                &assessment_id,
                &AssessmentUpdate::new("correctness").expectation("x"),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(wrong, ClientError::Http { status: 400, .. }),
            "{wrong}"
        );

        // Bad input: refused before anything is sent.
        let empty = c
            .log_feedback(&trace_id, &Feedback::new("", &1))
            .await
            .unwrap_err();
        assert!(
            matches!(
                empty,
                ClientError::InvalidArgument {
                    what: "assessment name",
                    ..
                }
            ),
            "{empty}"
        );
        let mut not_json = HashMap::new();
        not_json.insert((1, 2), 3);
        let bad = c
            .log_feedback(&trace_id, &Feedback::new("bad", &not_json))
            .await
            .unwrap_err();
        assert!(matches!(bad, ClientError::InvalidArgument { .. }), "{bad}");
        let null = c
            .log_expectation(&trace_id, &Expectation::new("nothing", &Value::Null))
            .await
            .unwrap_err();
        assert!(
            matches!(null, ClientError::InvalidArgument { .. }),
            "{null}"
        );
        let unknown = c
            .log_feedback(
                "tr-00000000000000000000000000000000",
                &Feedback::new("x", &1),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(unknown, ClientError::Http { status: 404, .. }),
            "{unknown}"
        );
        let names: Vec<String> = c
            .get_assessments(&trace_id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["correctness"], "nothing half-written");

        c.delete_assessment(&trace_id, &assessment_id)
            .await
            .unwrap();
        assert!(c.get_assessments(&trace_id).await.unwrap().is_empty());
        let gone = c
            .get_assessment(&trace_id, &assessment_id)
            .await
            .unwrap_err();
        assert!(
            matches!(gone, ClientError::Http { status: 404, .. }),
            "{gone}"
        );
    });
}
