"""Records what MLflow 3.17.2's model-serving path buffers for one served request.

Run with the harness's pinned venv (`~/.cache/mlflow-tracing/python-mlflow-3.17.2/bin/python`):
prints `json.dumps(pop_trace("req-1"))`, the dict a serving host pops, as
`inference_table_pop.json` holds it. The Rust twin of this program is in
`tests/tests/it/inference_table.rs` (`the_popped_json_is_pythons_for_the_same_program`).
"""

import json
import os

os.environ["IS_IN_DB_MODEL_SERVING_ENV"] = "true"
os.environ["ENABLE_MLFLOW_TRACING"] = "true"
os.environ.pop("MLFLOW_EXPERIMENT_ID", None)

import mlflow  # noqa: E402
from mlflow.pyfunc.context import Context, set_prediction_context  # noqa: E402
from mlflow.tracing.export.inference_table import pop_trace  # noqa: E402


@mlflow.trace(span_type="CHAT_MODEL")
def predict(question):
    with mlflow.start_span("retrieve", span_type="RETRIEVER") as s:
        s.set_inputs({"q": question})
        s.set_outputs(["doc"])
    return "answer: " + question


with set_prediction_context(
    Context(request_id="req-1", endpoint_name="chat-endpoint", model_id="m-123")
):
    predict("hi")
print(json.dumps(pop_trace("req-1")))
