//! The layer check: a module never uses a module of a higher layer, nor of its own layer
//! (siblings stay independent), and the edge (`web`) never reaches `sts`, `store` or `idp`
//! except through the access core. It reads every `crate::` path in `src/` (in `use`
//! lines and inline), so a reverse import anywhere fails the test. ARCHITECTURE.md shows
//! the same table.

use std::path::Path;

/// Each top-level module and its layer; a module may use only modules of lower layers.
const LAYERS: &[(&str, u8)] = &[
    ("domain", 0),
    ("credential_formats", 1),
    ("mapping", 1),
    ("keys", 1),
    ("config", 2),
    ("telemetry", 3),
    ("metrics", 3),
    ("audit", 3),
    ("idp", 4),
    ("sts", 4),
    ("store", 4),
    ("access", 5),
    ("web", 6),
    ("cli", 6),
];

/// Lower modules the edge must still not use: they are reached through `access` only.
const EDGE_FORBIDDEN: &[(&str, &[&str])] = &[
    ("web", &["idp", "sts", "store"]),
    ("cli", &["idp", "sts", "store"]),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a source file belongs to (`src/web/routes/login.rs` → `web`),
/// or `None` for the crate root and the binary.
fn module_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then_some(name)
}

/// Every module named as `crate::NAME` in the text, with its line number. Comment lines
/// are skipped (a doc comment may name a higher layer).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

/// Every import that breaks the layering, as `file:line: a uses b (reason)`.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        let Some(module) = module_of(path) else {
            continue;
        };
        let Some(own) = layer(module) else {
            out.push(format!("{path}: module {module} is not in the layer table"));
            continue;
        };
        for (line, used) in crate_paths(text) {
            if used == module {
                continue;
            }
            match layer(&used) {
                None => out.push(format!("{path}:{line}: uses unknown module {used}")),
                Some(l) if l >= own => out.push(format!(
                    "{path}:{line}: {module} (layer {own}) uses {used} (layer {l})"
                )),
                Some(_) => {}
            }
            if EDGE_FORBIDDEN
                .iter()
                .any(|(m, banned)| *m == module && banned.contains(&used.as_str()))
            {
                out.push(format!(
                    "{path}:{line}: {module} uses {used}; go through the access core"
                ));
            }
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn no_module_uses_a_module_of_its_own_or_a_higher_layer() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 40, "read the sources ({} files)", files.len());
    let bad = violations(&files);
    assert!(bad.is_empty(), "layer violations:\n{}", bad.join("\n"));
}

#[test]
fn the_check_catches_reverse_sibling_and_edge_imports() {
    let file = |p: &str, t: &str| (p.to_owned(), t.to_owned());
    let files = vec![
        file("src/config/raw.rs", "use crate::web::AppState;\n"),
        file("src/sts/mod.rs", "fn f() { crate::idp::x(); }\n"),
        file("src/web/routes/x.rs", "use crate::store::Store;\n"),
        // A comment may name anything; the module's own paths are fine.
        file(
            "src/access/mod.rs",
            "// see crate::web\nuse crate::access::grant;\nuse crate::sts::Sts;\n",
        ),
    ];
    let bad = violations(&files);
    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert!(bad[0].contains("config (layer 2) uses web (layer 6)"));
    assert!(bad[1].contains("sts (layer 4) uses idp (layer 4)"));
    assert!(bad[2].contains("web uses store; go through the access core"));
}
