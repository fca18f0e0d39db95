struct Connection;

#[mlflow_tracing::trace]
fn query(conn: Connection, sql: &str) -> usize {
    let _ = conn;
    sql.len()
}

fn main() {}
