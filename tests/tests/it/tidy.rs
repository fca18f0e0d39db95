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

/// Every `.rs` file under `dir` (skipping `tests/` and `examples/` folders).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
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
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The `src/` folder of every crate under `crates/`.
fn crate_sources() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("src").is_dir())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                p.join("src"),
            )
        })
        .collect();
    out.sort();
    out
}

/// Collects the paths a public item's signature names.
#[derive(Default)]
struct TypePaths(Vec<String>);

impl<'ast> syn::visit::Visit<'ast> for TypePaths {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let text: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.0.push(text.join("::"));
        syn::visit::visit_path(self, path);
    }
    // Bodies are not part of the public API.
    fn visit_block(&mut self, _: &'ast syn::Block) {}
    fn visit_expr(&mut self, _: &'ast syn::Expr) {}
}

/// `use` declarations of a file: the name in scope to the full path it stands for.
fn imports(file: &syn::File) -> BTreeMap<String, String> {
    fn walk(tree: &syn::UseTree, prefix: &str, out: &mut BTreeMap<String, String>) {
        let join = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}::{name}")
            }
        };
        match tree {
            syn::UseTree::Path(p) => walk(&p.tree, &join(&p.ident.to_string()), out),
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                let full = if name == "self" {
                    prefix.to_owned()
                } else {
                    join(&name)
                };
                let last = full.rsplit("::").next().unwrap_or_default().to_owned();
                out.insert(last, full);
            }
            syn::UseTree::Rename(r) => {
                out.insert(r.rename.to_string(), join(&r.ident.to_string()));
            }
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| walk(t, prefix, out)),
            syn::UseTree::Glob(_) => {}
        }
    }
    let mut out = BTreeMap::new();
    for item in &file.items {
        if let syn::Item::Use(u) = item {
            walk(&u.tree, "", &mut out);
        }
    }
    out
}

fn is_pub(vis: &syn::Visibility) -> bool {
    matches!(vis, syn::Visibility::Public(_))
}

/// The paths named by the public signatures of `items` (recursing into inline modules).
fn public_signature_paths(items: &[syn::Item], out: &mut TypePaths) {
    use syn::visit::Visit as _;
    for item in items {
        match item {
            syn::Item::Fn(f) if is_pub(&f.vis) => out.visit_signature(&f.sig),
            syn::Item::Struct(s) if is_pub(&s.vis) => {
                out.visit_generics(&s.generics);
                for field in &s.fields {
                    if is_pub(&field.vis) {
                        out.visit_type(&field.ty);
                    }
                }
            }
            syn::Item::Enum(e) if is_pub(&e.vis) => {
                out.visit_generics(&e.generics);
                for v in &e.variants {
                    out.visit_fields(&v.fields);
                }
            }
            syn::Item::Type(t) if is_pub(&t.vis) => out.visit_type(&t.ty),
            syn::Item::Const(c) if is_pub(&c.vis) => out.visit_type(&c.ty),
            syn::Item::Static(s) if is_pub(&s.vis) => out.visit_type(&s.ty),
            syn::Item::Trait(t) if is_pub(&t.vis) => {
                for ti in &t.items {
                    if let syn::TraitItem::Fn(f) = ti {
                        out.visit_signature(&f.sig);
                    }
                }
            }
            syn::Item::Impl(i) => {
                let trait_impl = i.trait_.is_some();
                if let Some((_, path, _)) = &i.trait_ {
                    out.visit_path(path);
                }
                for ii in &i.items {
                    if let syn::ImplItem::Fn(f) = ii
                        && (trait_impl || is_pub(&f.vis))
                    {
                        out.visit_signature(&f.sig);
                    }
                }
            }
            syn::Item::Mod(m) if is_pub(&m.vis) => {
                if let Some((_, inner)) = &m.content {
                    public_signature_paths(inner, out);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn public_items_expose_no_reqwest_tokio_or_moka_types() {
    const FORBIDDEN: [&str; 5] = ["reqwest", "tokio", "moka", "hyper", "crossbeam"];
    let mut offenders = Vec::new();
    for (krate, src) in crate_sources() {
        for path in rust_files(&src) {
            let text = std::fs::read_to_string(&path).unwrap();
            let file = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            let imports = imports(&file);
            let mut named = TypePaths::default();
            public_signature_paths(&file.items, &mut named);
            for p in named.0 {
                // Resolve the first segment through the file's imports.
                let first = p.split("::").next().unwrap_or_default();
                let full = imports
                    .get(first)
                    .map_or(p.clone(), |f| format!("{f}{}", &p[first.len()..]));
                if FORBIDDEN
                    .iter()
                    .any(|c| full == *c || full.starts_with(&format!("{c}::")))
                {
                    offenders.push(format!("{krate}: {}: {p} (= {full})", path.display()));
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
fn the_leak_check_sees_imported_names() {
    // The check above must catch a type imported under its own name, not only `tokio::` text.
    let file = syn::parse_file(
        "use tokio::sync::Mutex as M; use reqwest::Client;\n\
         pub struct S { pub client: Client }\n\
         pub fn f(m: &M<u8>) {}",
    )
    .unwrap();
    let imports = imports(&file);
    let mut named = TypePaths::default();
    public_signature_paths(&file.items, &mut named);
    let resolved: Vec<String> = named
        .0
        .iter()
        .map(|p| {
            let first = p.split("::").next().unwrap();
            imports.get(first).cloned().unwrap_or_else(|| p.clone())
        })
        .collect();
    assert!(
        resolved.contains(&"reqwest::Client".to_owned()),
        "{resolved:?}"
    );
    assert!(
        resolved.contains(&"tokio::sync::Mutex".to_owned()),
        "{resolved:?}"
    );
}

/// The modules of a crate (files directly in `src/`, `lib.rs` excluded) and which of them each
/// one names as `crate::<module>` in its code (comments excluded).
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut edges = BTreeMap::new();
    for m in &modules {
        let text = std::fs::read_to_string(src.join(format!("{m}.rs"))).unwrap();
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let mut to = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let before = code[..i].chars().last();
            if modules.contains(&name)
                && name != *m
                && before.is_none_or(|c| !c.is_alphanumeric() && c != '_')
            {
                to.insert(name);
            }
        }
        // `use crate::{a, b::C}` groups.
        for (i, _) in code.match_indices("crate::{") {
            let group = &code[i + "crate::{".len()..];
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                let name = part
                    .trim()
                    .split("::")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if modules.contains(&name) && name != *m {
                    to.insert(name);
                }
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

/// A cycle in `edges`, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(node, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_crate_has_modules_that_import_each_other_in_a_circle() {
    let mut circles = Vec::new();
    for (krate, src) in crate_sources() {
        if let Some(cycle) = find_cycle(&module_edges(&src)) {
            circles.push(format!("{krate}: {}", cycle.join(" -> ")));
        }
    }
    assert!(circles.is_empty(), "module import circles: {circles:#?}");
    // The check itself finds a circle.
    let edges = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert!(find_cycle(&edges).is_some());
}

#[test]
fn source_files_stay_under_700_lines() {
    let mut long = Vec::new();
    for (_, src) in crate_sources() {
        for path in rust_files(&src) {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            if lines > 700 {
                long.push(format!("{}: {lines} lines", path.display()));
            }
        }
    }
    assert!(long.is_empty(), "split these by concern: {long:#?}");
}

#[test]
fn the_facade_root_holds_at_most_30_names() {
    let text = std::fs::read_to_string(root().join("crates/mlflow-tracing/src/lib.rs")).unwrap();
    let file = syn::parse_file(&text).unwrap();
    fn hidden(attrs: &[syn::Attribute]) -> bool {
        attrs.iter().any(|a| {
            a.path().is_ident("doc")
                && a.meta
                    .require_list()
                    .is_ok_and(|l| l.tokens.to_string().contains("hidden"))
        })
    }
    fn leaves(tree: &syn::UseTree, out: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(p) => leaves(&p.tree, out),
            syn::UseTree::Name(n) => out.push(n.ident.to_string()),
            syn::UseTree::Rename(r) if r.rename != "_" => out.push(r.rename.to_string()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| leaves(t, out)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    for item in &file.items {
        let (vis, attrs, name) = match item {
            syn::Item::Use(u) => {
                if is_pub(&u.vis) && !hidden(&u.attrs) {
                    leaves(&u.tree, &mut names);
                }
                continue;
            }
            syn::Item::Fn(f) => (&f.vis, &f.attrs, f.sig.ident.to_string()),
            syn::Item::Struct(s) => (&s.vis, &s.attrs, s.ident.to_string()),
            syn::Item::Enum(e) => (&e.vis, &e.attrs, e.ident.to_string()),
            syn::Item::Mod(m) => (&m.vis, &m.attrs, m.ident.to_string()),
            syn::Item::Const(c) => (&c.vis, &c.attrs, c.ident.to_string()),
            syn::Item::Type(t) => (&t.vis, &t.attrs, t.ident.to_string()),
            syn::Item::Trait(t) => (&t.vis, &t.attrs, t.ident.to_string()),
            _ => continue,
        };
        if is_pub(vis) && !hidden(attrs) {
            names.push(name);
        }
    }
    assert!(
        names.len() <= 30,
        "the facade root has {} names; group the rest in modules: {names:?}",
        names.len()
    );
    for user_api in [
        "init",
        "InitGuard",
        "start_span",
        "LiveSpan",
        "trace",
        "TraceUpdate",
    ] {
        assert!(
            names.iter().any(|n| n == user_api),
            "{user_api} at the root"
        );
    }
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
