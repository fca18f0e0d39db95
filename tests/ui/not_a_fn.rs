#[mlflow_tracing::trace]
struct Agent;

fn main() {}
