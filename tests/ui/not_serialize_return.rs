struct Handle;

#[mlflow_tracing::trace]
fn open(path: &str) -> Handle {
    let _ = path;
    Handle
}

fn main() {}
