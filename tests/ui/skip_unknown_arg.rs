#[mlflow_tracing::trace(skip(password))]
fn login(user: &str, pasword: &str) -> bool {
    user == pasword
}

fn main() {}
