//! The benchmark report: `target/bench/report.md` (the tables of the run and the missed targets)
//! and `target/bench/chart.svg` (the Rust SDK, bare OpenTelemetry or the plain HTTP ceiling, and
//! the Python SDK side by side: caller cost, stored spans/s, peak RSS).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::e2e::{E2e, mb};

/// One bar: label, value, the value as shown.
type Bar = (&'static str, f64, String);

const COLORS: [&str; 3] = ["#0b6e4f", "#8a8f98", "#3572a5"];
const PANEL_W: f64 = 300.0;
const PANEL_H: f64 = 300.0;
const TOP: f64 = 50.0;
const PLOT_H: f64 = 190.0;

/// A panel of three bars; `log` scales the bars by `log10` (for values two orders apart).
fn panel(svg: &mut String, x0: f64, title: &str, bars: &[Bar], log: bool) {
    let scale = |v: f64| {
        if log {
            (v.max(1e-9) * 10.0).log10().max(0.0)
        } else {
            v.max(0.0)
        }
    };
    let top = bars.iter().map(|b| scale(b.1)).fold(0.0_f64, f64::max);
    let _ = write!(
        svg,
        r##"<text x="{:.0}" y="30" font-size="15" font-weight="bold" text-anchor="middle">{title}</text>"##,
        x0 + PANEL_W / 2.0
    );
    let base = TOP + PLOT_H;
    let _ = write!(
        svg,
        r##"<line x1="{x0:.0}" y1="{base:.0}" x2="{:.0}" y2="{base:.0}" stroke="#333"/>"##,
        x0 + PANEL_W - 20.0
    );
    let slot = (PANEL_W - 20.0) / bars.len() as f64;
    for (i, (label, value, shown)) in bars.iter().enumerate() {
        let h = if top > 0.0 {
            PLOT_H * scale(*value) / top
        } else {
            0.0
        };
        let x = x0 + slot * i as f64 + slot * 0.15;
        let w = slot * 0.7;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{shown}</text><text x="{:.1}" y="{:.0}" font-size="11" text-anchor="middle">{label}</text>"##,
            base - h,
            COLORS[i % COLORS.len()],
            x + w / 2.0,
            base - h - 5.0,
            x + w / 2.0,
            base + 18.0,
        );
    }
    if log {
        let _ = write!(
            svg,
            r##"<text x="{:.0}" y="{:.0}" font-size="10" fill="#666" text-anchor="middle">(log scale)</text>"##,
            x0 + PANEL_W / 2.0,
            base + 36.0
        );
    }
}

/// The chart of an end-to-end run (`bare_otel_ns`: criterion's bare OpenTelemetry child span
/// with 1 KB in and out, when measured).
fn chart(e2e: &E2e, bare_otel_ns: Option<f64>) -> String {
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{PANEL_H:.0}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"##,
        PANEL_W * 3.0
    );
    let us = |ns: f64| {
        if ns >= 1000.0 {
            format!("{:.1} µs", ns / 1000.0)
        } else {
            format!("{ns:.0} ns")
        }
    };
    let mut caller: Vec<Bar> = Vec::new();
    if let Some(c) = e2e.rust.caller_ns {
        caller.push(("Rust SDK", c, us(c)));
    }
    if let Some(b) = bare_otel_ns {
        caller.push(("bare OTel span", b, us(b)));
    }
    if let Some(c) = e2e.python.caller_ns {
        caller.push(("Python SDK", c, us(c)));
    }
    panel(&mut svg, 0.0, "caller time per span", &caller, true);
    let rate = |s: &crate::e2e::Side| (s.rate, format!("{:.0}", s.rate));
    let bars = [
        ("Rust SDK", rate(&e2e.rust)),
        ("HTTP ceiling", rate(&e2e.ceiling)),
        ("Python SDK", rate(&e2e.python)),
    ]
    .map(|(l, (v, s))| (l, v, s));
    panel(&mut svg, PANEL_W, "stored spans/s", &bars, false);
    let rss = |s: &crate::e2e::Side| (mb(s.peak_rss), format!("{:.1} MB", mb(s.peak_rss)));
    let bars = [
        ("Rust SDK", rss(&e2e.rust)),
        ("pre-encoded sender", rss(&e2e.ceiling)),
        ("Python SDK", rss(&e2e.python)),
    ]
    .map(|(l, (v, s))| (l, v, s));
    panel(&mut svg, PANEL_W * 2.0, "peak RSS", &bars, false);
    svg.push_str("</svg>\n");
    svg
}

/// Writes the report (and the chart when the run had its end-to-end part); the report's path.
pub(crate) fn write(
    root: &Path,
    micro: Option<&str>,
    held: Option<&str>,
    e2e: Option<&E2e>,
    bare_otel_ns: Option<f64>,
    missed: &[String],
) -> Result<PathBuf, String> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut md = String::from("# mlflow-tracing benchmarks\n\n");
    let _ = writeln!(
        md,
        "`cargo xtask bench`, {} (criterion's own reports: `target/criterion/report/index.html`).\n",
        std::env::consts::ARCH
    );
    if let Some(e2e) = e2e {
        let svg = chart(e2e, bare_otel_ns);
        let path = dir.join("chart.svg");
        std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = writeln!(
            md,
            "## End to end\n\n![chart](chart.svg)\n\n{}",
            e2e.table()
        );
        println!("chart: {}", path.display());
    }
    if let Some(micro) = micro {
        let _ = writeln!(md, "## Micro-benchmarks\n\n{micro}");
    }
    if let Some(held) = held {
        let _ = writeln!(md, "## Memory held by large traces\n\n{held}");
    }
    md.push_str("## Targets\n\n");
    if missed.is_empty() {
        md.push_str("Every target met.\n");
    } else {
        for m in missed {
            let _ = writeln!(md, "- missed: {m}");
        }
    }
    let path = dir.join("report.md");
    std::fs::write(&path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
