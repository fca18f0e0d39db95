#[mlflow_tracing::trace(log_level = "LOUD")]
fn loud() {}

#[mlflow_tracing::trace(sampling_ratio_override = 1.5)]
fn over() {}

#[mlflow_tracing::trace(output_reducer = |xs: Vec<u32>| xs.len())]
fn not_a_stream() -> u32 {
    1
}

fn main() {}
