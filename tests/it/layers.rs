//! The layer check: a module never uses a module of a higher layer, nor of its own layer
//! (siblings stay independent), and the edges (`web`, `cli`) never reach `sts`, `store`,
//! `idp` or `audit` except through the access core. It reads every path to another top
//! module in `src/`: `crate::` paths in `use` statements (grouped ones too, across lines)
//! and inline, and `super::` chains that climb out of their module. ARCHITECTURE.md shows
//! the same table, and a test keeps the two equal.

use std::path::Path;

/// Each top-level module and its layer; a module may use only modules of lower layers.
const LAYERS: &[(&str, u8)] = &[
    ("domain", 0),
    ("credential_formats", 1),
    ("mapping", 1),
    ("keys", 1),
    ("wire", 1),
    ("scim", 1),
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

/// Lower modules the edges must still not use: state, logins, credentials and audit
/// records are reached through `access` only.
const EDGE_FORBIDDEN: &[(&str, &[&str])] = &[
    ("web", &["idp", "sts", "store", "audit"]),
    ("cli", &["idp", "sts", "store", "audit"]),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The module path of a source file (`src/web/routes/login.rs` → `web::routes::login`,
/// `src/web/routes/mod.rs` → `web::routes`), or `None` for the crate root and the binary
/// (`main.rs` and its `cmd/` modules, a crate of their own).
fn module_path(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix("src/")?;
    let rest = rest.strip_suffix(".rs")?;
    let mut parts: Vec<String> = rest.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.first().map(String::as_str) {
        None | Some("lib") | Some("main") | Some("cmd") => None,
        _ => Some(parts),
    }
}

/// Code without comments (line comments and doc comments; string contents stay, which
/// at worst adds a false alarm a reader can see).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segments of every path a `use` tree names: `crate::{a::X, b::{c, d}}` gives
/// `crate::a`, `crate::b`.
fn use_roots(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let (Some(open), Some(close)) = (tree.find('{'), tree.rfind('}'))
        && open < close
    {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..close];
        let base = if head.is_empty() {
            prefix.to_owned()
        } else if prefix.is_empty() {
            head.to_owned()
        } else {
            format!("{prefix}::{head}")
        };
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    use_roots(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        use_roots(&inner[start..], &base, out);
    } else if !tree.is_empty() {
        let tree = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(if prefix.is_empty() {
            tree.to_owned()
        } else {
            format!("{prefix}::{tree}")
        });
    }
}

/// Every other top module a file's code names, with a line number: `crate::NAME` and
/// `super::…` chains that leave the file's top module.
fn used_modules(path: &str, text: &str) -> Vec<(usize, String)> {
    let Some(here) = module_path(path) else {
        return Vec::new();
    };
    let code = strip_comments(text);
    let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
    let mut paths: Vec<(usize, String)> = Vec::new();
    // `use` statements (a line starting with `use` or `pub… use`), possibly grouped and
    // across lines: the text up to the `;`.
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let t = line.trim_start();
        let t = match t.strip_prefix("pub") {
            Some(rest) if rest.starts_with(' ') || rest.starts_with('(') => {
                let rest = rest.trim_start();
                match rest.strip_prefix('(') {
                    Some(r) => r.split_once(')').map(|(_, r)| r.trim_start()).unwrap_or(r),
                    None => rest,
                }
            }
            _ => t,
        };
        if let Some(tree) = t.strip_prefix("use ") {
            let start = offset + (line.len() - tree.len());
            if let Some(end) = code[start..].find(';') {
                let mut roots = Vec::new();
                use_roots(&code[start..start + end], "", &mut roots);
                for r in roots {
                    paths.push((line_of(start), r));
                }
            }
        }
        offset += line.len();
    }
    // Inline modules (`mod tests { … }`) add a level that `super` climbs first.
    let mut inline_depth = vec![0usize; code.lines().count() + 2];
    let (mut depth, mut open_mods): (i64, Vec<i64>) = (0, Vec::new());
    for (n, line) in code.lines().enumerate() {
        inline_depth[n + 1] = open_mods.len();
        let t = line.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        if let Some(rest) = t.strip_prefix("mod ")
            && rest.trim_end().ends_with('{')
        {
            open_mods.push(depth);
            inline_depth[n + 1] = open_mods.len();
        }
        for c in line.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if open_mods.last() == Some(&depth) {
                        open_mods.pop();
                    }
                }
                _ => {}
            }
        }
    }
    // Inline paths (`crate::x::f()`, `super::super::y`).
    for (n, line) in code.lines().enumerate() {
        if line.trim_start().starts_with("use ") || line.trim_start().starts_with("pub use ") {
            continue;
        }
        for start in ["crate::", "super::"] {
            let mut rest = line;
            while let Some(i) = rest.find(start) {
                let before_ok = i == 0
                    || !rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
                let tail: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                if before_ok {
                    paths.push((n + 1, tail.clone()));
                }
                rest = &rest[i + start.len()..];
            }
        }
    }
    let mut out = Vec::new();
    for (line, p) in paths {
        let segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        let target = match segs.first() {
            Some(&"crate") => segs.get(1).map(|s| s.to_string()),
            Some(&"super") => {
                let ups = segs.iter().take_while(|s| **s == "super").count();
                let nested = inline_depth.get(line).copied().unwrap_or(0);
                if ups < here.len() + nested {
                    None // still inside this top module
                } else {
                    segs.get(ups).map(|s| s.to_string())
                }
            }
            _ => None,
        };
        if let Some(t) = target
            && t != here[0]
            && t.chars().all(|c| c.is_alphanumeric() || c == '_')
            && t != "self"
        {
            out.push((line, t));
        }
    }
    out
}

/// Every import that breaks the layering, as `file:line: a uses b (reason)`.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        let Some(here) = module_path(path) else {
            continue;
        };
        let module = here[0].as_str();
        let Some(own) = layer(module) else {
            out.push(format!("{path}: module {module} is not in the layer table"));
            continue;
        };
        for (line, used) in used_modules(path, text) {
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
fn the_check_catches_reverse_sibling_grouped_relative_and_edge_imports() {
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
        // Grouped, across lines.
        file(
            "src/mapping/x.rs",
            "use crate::{\n    domain::Id,\n    config::Config,\n};\n",
        ),
        // Nested groups.
        file(
            "src/idp/y.rs",
            "use crate::{domain::{A, B}, access::Access};\n",
        ),
        // `super::super` out of the module.
        file(
            "src/store/redis/conn.rs",
            "use super::super::super::web::X;\n",
        ),
        file("src/store/redis/conn2.rs", "use super::super::keys::Key;\n"),
        // The edge and the audit module.
        file("src/web/routes/y.rs", "use crate::audit::Event;\n"),
    ];
    let bad = violations(&files);
    assert_eq!(bad.len(), 7, "{bad:#?}");
    assert!(bad[0].contains("config (layer 2) uses web (layer 6)"));
    assert!(bad[1].contains("sts (layer 4) uses idp (layer 4)"));
    assert!(bad[2].contains("web uses store; go through the access core"));
    assert!(bad[3].contains("mapping (layer 1) uses config (layer 2)"));
    assert!(bad[4].contains("idp (layer 4) uses access (layer 5)"));
    assert!(
        bad[5].contains("store (layer 4) uses web (layer 6)"),
        "{bad:#?}"
    );
    assert!(bad[6].contains("web uses audit"), "{bad:#?}");
    let edge = violations(&[file("src/web/routes/y.rs", "use crate::audit::Event;\n")]);
    assert_eq!(edge.len(), 1, "{edge:#?}");
    assert!(edge[0].contains("web uses audit"));
}

/// The table in ARCHITECTURE.md ("Layers") lists the same modules at the same layers.
#[test]
fn the_architecture_document_shows_this_table() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md")).unwrap();
    let mut documented: Vec<(String, u8)> = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let Ok(layer) = cells[1].parse::<u8>() else {
            continue;
        };
        for m in cells[2].split(',') {
            let m = m.trim().trim_matches('`');
            if !m.is_empty() {
                documented.push((m.to_owned(), layer));
            }
        }
    }
    let mut expected: Vec<(String, u8)> = LAYERS.iter().map(|(m, l)| (m.to_string(), *l)).collect();
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected, "ARCHITECTURE.md's layer table");
}
