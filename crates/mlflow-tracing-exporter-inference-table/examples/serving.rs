//! A model-serving host using only this crate and the trace manager (no facade, no runtime):
//! each request's trace is buffered under its `X-Request-Id` and popped after the response.
#![expect(clippy::print_stdout, reason = "an example reports on stdout")]

use std::sync::Arc;
use std::time::Duration;

use mlflow_tracing_exporter_inference_table::InferenceTableBuffer;
use mlflow_tracing_manager::{ServingRequest, TraceDestination, Tracer, start_span};

/// The "model": two spans per request.
fn predict(question: &str) -> String {
    let root = start_span("predict")
        .span_type("CHAT_MODEL")
        .inputs(&question)
        .start();
    drop(start_span("retrieve").span_type("RETRIEVER").start());
    let answer = format!("echo: {question}");
    root.set_outputs(&answer);
    answer
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let buffer = InferenceTableBuffer::new(Duration::from_secs(3600), 1000);
    let tracer = Tracer::builder()
        .with_destination(TraceDestination::InferenceTable {
            experiment_id: None,
        })
        .with_dispatch(Arc::new(buffer.clone()))
        .build()?;
    for (request_id, question) in [("req-1", "hello"), ("req-2", "how are you?")] {
        // What a serving framework gets from the HTTP request.
        let headers = [("X-Request-Id", request_id)];
        let request = ServingRequest::from_headers(headers)
            .ok_or("no request id")?
            .endpoint_name("demo-endpoint");
        let answer = tracer.in_scope(|| request.in_scope(|| predict(question)));
        // After the response: the host takes the trace for the inference table.
        let trace = buffer.pop_trace(request_id).ok_or("no trace")?;
        println!(
            "{request_id}: {answer:?}; trace JSON of {} bytes",
            trace.len()
        );
    }
    println!("{:?}", buffer.stats());
    Ok(())
}
