//! Tidy checks of the workspace's shape and dependency boundaries (ARCHITECTURE.md invariants).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail by panicking on unexpected values"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Normal (non-dev) dependencies of every package, transitively, by package name.
fn transitive_deps(meta: &Value, package: &str) -> BTreeSet<String> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), deps)
        })
        .collect();
    let start = names
        .iter()
        .find(|(_, n)| **n == package)
        .map(|(id, _)| *id)
        .expect("package in workspace");
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        for dep in nodes.get(id).into_iter().flatten() {
            if seen.insert(names[dep].to_owned()) {
                stack.push(dep);
            }
        }
    }
    seen
}

#[test]
fn entities_stays_small_and_free_of_io_and_runtimes() {
    let meta = metadata();
    let deps = transitive_deps(&meta, "mlflow-tracing-entities");
    for banned in ["tokio", "reqwest", "moka", "hyper", "mlflow-tracing"] {
        assert!(
            !deps.contains(banned),
            "mlflow-tracing-entities must not depend on {banned}"
        );
    }
    assert!(
        !deps.iter().any(|d| d.starts_with("mlflow-tracing")),
        "entities is the bottom layer: {deps:?}"
    );
}

#[test]
fn manager_does_no_io_and_spawns_no_runtime() {
    let meta = metadata();
    let deps = transitive_deps(&meta, "mlflow-tracing-manager");
    for banned in ["tokio", "reqwest", "hyper"] {
        assert!(
            !deps.contains(banned),
            "mlflow-tracing-manager must not depend on {banned}"
        );
    }
    let internal: BTreeSet<_> = deps
        .iter()
        .filter(|d| d.starts_with("mlflow-tracing"))
        .collect();
    assert_eq!(
        internal,
        BTreeSet::from([&"mlflow-tracing-entities".to_owned()]),
        "the manager sits right above the entities"
    );
}

#[test]
fn the_macro_crate_only_generates_code() {
    let meta = metadata();
    let deps = transitive_deps(&meta, "mlflow-tracing-macros");
    assert!(
        !deps.iter().any(|d| d.starts_with("mlflow-tracing")),
        "the macro expands to paths of the facade and depends on no SDK crate: {deps:?}"
    );
    assert!(!deps.contains("tokio") && !deps.contains("moka"));
}

#[test]
fn crates_follow_the_workspace_conventions() {
    let meta = metadata();
    let root = root();
    for p in meta["packages"].as_array().unwrap() {
        let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
        if !manifest.starts_with(&root) {
            continue;
        }
        let name = p["name"].as_str().unwrap();
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{name}: [lints] workspace = true"
        );
        assert_eq!(
            p["publish"],
            serde_json::json!([]),
            "{name}: internal crates are publish = false"
        );
        let dir = manifest.parent().unwrap();
        if dir.parent() == Some(&root.join("crates")) {
            assert_eq!(
                dir.file_name().unwrap().to_str().unwrap(),
                name,
                "folder name = package name"
            );
            assert!(
                name == "mlflow-tracing" || name.starts_with("mlflow-tracing-"),
                "{name}: crate prefix"
            );
            let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
            assert!(
                lib.starts_with("//!"),
                "{name}: lib.rs opens with what the crate is for"
            );
        }
        // Every dependency comes from [workspace.dependencies].
        for section in ["[dependencies]", "[dev-dependencies]"] {
            if let Some(start) = text.find(section) {
                let body = &text[start + section.len()..];
                let body = &body[..body.find("\n[").unwrap_or(body.len())];
                for line in body
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    assert!(
                        line.contains(".workspace = true") || line.contains("{ workspace = true"),
                        "{name}: `{line}` must use [workspace.dependencies]"
                    );
                }
            }
        }
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        readme.contains("cargo xtask ci"),
        "README names the test command"
    );
    assert!(
        ci.lines().any(|l| l.trim() == "exec cargo xtask ci"),
        ".ci/run runs exactly the README's test command"
    );
}

#[test]
fn only_the_runtime_starts_threads_or_runtimes() {
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let crates = root().join("crates");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 10, "found the sources: {files:?}");
    let runtime = crates.join("mlflow-tracing-runtime");
    let mut offenders = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&runtime)) {
        let text = std::fs::read_to_string(file).unwrap();
        for needle in [
            "thread::spawn",
            "thread::Builder",
            "thread::scope",
            "spawn_scoped",
            "runtime::Builder",
            "Runtime::new",
        ] {
            if text.contains(needle) {
                offenders.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only mlflow-tracing-runtime owns threads: {offenders:?}"
    );
}

#[test]
fn public_items_expose_no_reqwest_tokio_or_moka_types() {
    let mut offenders = Vec::new();
    let crates = root().join("crates");
    let mut stack = vec![crates];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path
                    .file_name()
                    .is_some_and(|n| n != "tests" && n != "examples")
                {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Signatures may span lines: join each public item up to its `{` or `;`.
            let mut item = String::new();
            for line in text.lines().map(str::trim) {
                if item.is_empty() && !line.starts_with("pub ") {
                    continue;
                }
                item.push_str(line);
                item.push(' ');
                if line.ends_with('{') || line.ends_with(';') || line.ends_with(',') {
                    if ["reqwest::", "tokio::", "moka::"]
                        .iter()
                        .any(|t| item.contains(t))
                    {
                        offenders.push(format!("{}: {item}", path.display()));
                    }
                    item.clear();
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "public items with third-party types: {offenders:#?}"
    );
}

#[test]
fn the_inference_table_buffer_works_a_la_carte_without_io_or_runtimes() {
    let meta = metadata();
    let deps = transitive_deps(&meta, "mlflow-tracing-exporter-inference-table");
    for banned in [
        "tokio",
        "reqwest",
        "hyper",
        "mlflow-tracing-runtime",
        "mlflow-tracing-client",
    ] {
        assert!(
            !deps.contains(banned),
            "mlflow-tracing-exporter-inference-table must not depend on {banned}"
        );
    }
}

#[test]
fn display_does_no_network_io() {
    let meta = metadata();
    let deps = transitive_deps(&meta, "mlflow-tracing-display");
    for banned in ["tokio", "reqwest", "hyper", "mlflow-tracing-client"] {
        assert!(
            !deps.contains(banned),
            "mlflow-tracing-display must not depend on {banned}"
        );
    }
}
