//! `cargo xtask bench [filter]`: runs the criterion benches, then prints each SDK measurement
//! next to its bare OpenTelemetry (or `serde_json`) counterpart from the same run, with the ratio
//! and the target where there is one; then (without a filter, or with `e2e`) the end-to-end
//! burst ([`crate::e2e`]); writes `target/bench/report.md` and its chart ([`crate::report`]).

use std::path::Path;

/// (group, SDK bench, baseline bench, target ratio).
const PAIRS: &[(&str, &str, &str, Option<f64>)] = &[
    ("span", "mlflow_bare", "otel_sdk_bare", None),
    ("span", "mlflow_1kb", "otel_sdk_1kb", Some(2.0)),
    ("span", "mlflow_macro_1kb", "otel_sdk_1kb", Some(1.5)),
    ("trace", "mlflow_1kb", "otel_sdk_1kb", None),
    ("json", "mlflow_1kb", "serde_json_1kb", None),
    // A traced stream of 1,000 items next to the same items recorded by hand (issue 16).
    ("stream", "traced", "hand_written", Some(2.0)),
    // The tracing layer next to tracing-opentelemetry with an in-memory exporter (issue 15):
    // what recording costs the caller's thread, the export worker finalizing as `init` sets it
    // up...
    (
        "layer",
        "mlflow_deferred",
        "tracing_opentelemetry",
        Some(1.0),
    ),
    // ...and with the finalization (GenAI translation, previews, token usage) on the caller's
    // thread too, which the OpenTelemetry side has no counterpart of.
    ("layer", "mlflow", "tracing_opentelemetry", None),
    // Filtered out, the layer adds nothing to tracing-subscriber's per-layer filtering...
    (
        "layer",
        "filtered_out",
        "filtered_out_noop_layer",
        Some(1.05),
    ),
    // ...which itself costs this much over a registry with no layer.
    ("layer", "filtered_out", "tracing_alone", None),
];

/// (group, bench, target median in ns).
const ABSOLUTE: &[(&str, &str, f64)] = &[
    ("runtime", "enqueue", 200.0),
    ("runtime", "enqueue_2_threads", f64::INFINITY),
    ("runtime", "batcher_throughput_per_item", f64::INFINITY),
    // Issue 17: a `#[trace]` call with tracing disabled (1 KB argument, empty body).
    ("disabled", "macro_1kb", 50.0),
    // Issue 17: a one-span trace on the caller's thread, the worker finalizing it.
    ("trace", "mlflow_deferred_1kb", 3_000.0),
];

/// A criterion estimate (`"mean"` or `"median"`, in ns) of the latest run of `group/bench`.
fn estimate_ns(root: &Path, group: &str, bench: &str, statistic: &str) -> Option<f64> {
    let path = root
        .join("target/criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json[statistic]["point_estimate"].as_f64()
}

pub(crate) fn human(ns: f64) -> String {
    if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The micro-benchmark tables of the latest criterion run, as printed and as written into
/// the report (Markdown); the targets missed.
fn micro_tables(root: &Path, filter: Option<&str>) -> (String, Vec<String>) {
    let mut out = String::from(
        "| benchmark | SDK (mean) | baseline (mean) | ratio | target |\n|---|---|---|---|---|\n",
    );
    let mut missed = Vec::new();
    let wanted_group = filter.map(|f| f.split('/').next().unwrap_or(f).to_owned());
    let wanted = |group: &str| {
        wanted_group
            .as_deref()
            .is_none_or(|g| g.is_empty() || g == group)
    };
    for (group, sdk, base, target) in PAIRS {
        if !wanted(group) {
            continue; // not measured in this run
        }
        let (Some(s), Some(b)) = (
            estimate_ns(root, group, sdk, "mean"),
            estimate_ns(root, group, base, "mean"),
        ) else {
            continue;
        };
        let ratio = s / b;
        let verdict = match target {
            Some(t) if ratio <= *t => format!("≤ {t}× ok"),
            Some(t) => {
                missed.push(format!("{group}/{sdk}: {ratio:.2}× > {t}×"));
                format!("≤ {t}× **MISSED**")
            }
            None => String::new(),
        };
        out.push_str(&format!(
            "| `{group}/{sdk}` vs `{base}` | {} | {} | {ratio:.2}× | {verdict} |\n",
            human(s),
            human(b),
        ));
    }
    // The mean next to the median: a bimodal benchmark (one iteration in five paying for a
    // wake-up, say) shows it there.
    out.push_str("\n| benchmark | median | mean | target |\n|---|---|---|---|\n");
    for (group, bench, target) in ABSOLUTE {
        if !wanted(group) {
            continue;
        }
        let Some(median) = estimate_ns(root, group, bench, "median") else {
            continue;
        };
        let verdict = if target.is_infinite() {
            String::new()
        } else if median <= *target {
            format!("≤ {} ok", human(*target))
        } else {
            missed.push(format!(
                "{group}/{bench}: median {} > {}",
                human(median),
                human(*target)
            ));
            format!("≤ {} **MISSED**", human(*target))
        };
        let mean = estimate_ns(root, group, bench, "mean").map_or_else(String::new, human);
        out.push_str(&format!(
            "| `{group}/{bench}` | {} | {mean} | {verdict} |\n",
            human(median)
        ));
    }
    (out, missed)
}

pub(crate) fn run(filter: Option<&str>) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?;
    if filter == Some("scale") {
        let missed = crate::scale::run()?;
        return if missed.is_empty() {
            Ok(())
        } else {
            Err(format!("benchmark targets missed: {}", missed.join("; ")))
        };
    }
    let mut missed = Vec::new();
    let mut micro = None;
    if filter != Some("e2e") && filter != Some("memory") {
        let mut args = vec![
            "bench",
            "--profile",
            crate::e2e::PROFILE,
            "--package",
            "mlflow-tracing-benches",
            "--",
        ];
        if let Some(f) = filter {
            args.push(f);
        }
        crate::cargo("bench", &args, &[])?;
        let (table, m) = micro_tables(root, filter);
        println!("\n{table}");
        missed.extend(m);
        micro = Some(table);
    }
    let mut held = None;
    if filter.is_none() || filter == Some("memory") {
        let (table, m) = crate::e2e::held_memory()?;
        missed.extend(m);
        held = Some(table);
    }
    let mut e2e = None;
    if filter.is_none() || filter == Some("e2e") {
        let run = crate::e2e::run()?;
        missed.extend(run.missed());
        e2e = Some(run);
    }
    let written = crate::report::write(
        root,
        micro.as_deref(),
        held.as_deref(),
        e2e.as_ref(),
        estimate_ns(root, "span", "otel_sdk_1kb", "mean"),
        &missed,
    )?;
    println!("report: {}", written.display());
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!("benchmark targets missed: {}", missed.join("; ")))
    }
}
