//! Criterion benchmarks of the SDK (the benches are in `benches/`); `cargo xtask bench` runs them
//! and prints the ratios against bare OpenTelemetry.
