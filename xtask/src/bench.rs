//! `cargo xtask bench [filter]`: runs the criterion benches, then prints each SDK measurement
//! next to its bare OpenTelemetry (or `serde_json`) counterpart from the same run, with the ratio
//! and the target where there is one.

use std::path::Path;

/// (group, SDK bench, baseline bench, target ratio).
const PAIRS: &[(&str, &str, &str, Option<f64>)] = &[
    ("span", "mlflow_bare", "otel_sdk_bare", None),
    ("span", "mlflow_1kb", "otel_sdk_1kb", Some(2.0)),
    ("span", "mlflow_macro_1kb", "otel_sdk_1kb", None),
    ("trace", "mlflow_1kb", "otel_sdk_1kb", None),
    ("json", "mlflow_1kb", "serde_json_1kb", None),
];

/// (group, bench, target median in ns).
const ABSOLUTE: &[(&str, &str, f64)] = &[
    ("runtime", "enqueue", 200.0),
    ("runtime", "enqueue_2_threads", f64::INFINITY),
    ("runtime", "batcher_throughput_per_item", f64::INFINITY),
];

fn median_ns(root: &Path, group: &str, bench: &str) -> Option<f64> {
    let path = root
        .join("target/criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn mean_ns(root: &Path, group: &str, bench: &str) -> Option<f64> {
    let path = root
        .join("target/criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn human(ns: f64) -> String {
    if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

pub(crate) fn run(filter: Option<&str>) -> Result<(), String> {
    let mut args = vec!["bench", "--package", "mlflow-tracing-benches", "--"];
    if let Some(f) = filter {
        args.push(f);
    }
    crate::cargo("bench", &args, &[])?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?;
    println!(
        "\n{:<26} {:>12} {:>12} {:>8}  target",
        "benchmark", "sdk", "baseline", "ratio"
    );
    let mut missed = Vec::new();
    let wanted_group = filter.map(|f| f.split('/').next().unwrap_or(f).to_owned());
    for (group, sdk, base, target) in PAIRS {
        if wanted_group
            .as_deref()
            .is_some_and(|g| !g.is_empty() && g != *group)
        {
            continue; // not measured in this run
        }
        let (Some(s), Some(b)) = (mean_ns(root, group, sdk), mean_ns(root, group, base)) else {
            continue;
        };
        let ratio = s / b;
        let verdict = match target {
            Some(t) if ratio <= *t => format!("≤ {t}× ok"),
            Some(t) => {
                missed.push(format!("{group}/{sdk}: {ratio:.2}× > {t}×"));
                format!("≤ {t}× MISSED")
            }
            None => String::new(),
        };
        println!(
            "{:<26} {:>12} {:>12} {:>7.2}×  {verdict}",
            format!("{group}/{sdk}"),
            human(s),
            human(b),
            ratio
        );
    }
    println!();
    for (group, bench, target) in ABSOLUTE {
        if wanted_group
            .as_deref()
            .is_some_and(|g| !g.is_empty() && g != *group)
        {
            continue;
        }
        let Some(median) = median_ns(root, group, bench) else {
            continue;
        };
        let verdict = if target.is_infinite() {
            String::new()
        } else if median <= *target {
            format!("median ≤ {} ok", human(*target))
        } else {
            missed.push(format!(
                "{group}/{bench}: median {} > {}",
                human(median),
                human(*target)
            ));
            format!("median ≤ {} MISSED", human(*target))
        };
        println!(
            "{:<26} {:>12} (median)  {verdict}",
            format!("{group}/{bench}"),
            human(median)
        );
    }
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!("benchmark targets missed: {}", missed.join("; ")))
    }
}
