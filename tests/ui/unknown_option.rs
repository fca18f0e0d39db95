#[mlflow_tracing::trace(kind = "LLM")]
fn f() {}

fn main() {}
