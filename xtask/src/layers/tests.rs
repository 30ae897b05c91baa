use std::path::PathBuf;

use super::*;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits below the workspace root")
        .to_path_buf()
}

/// The violations of every crate of the workspace at `root`, one line each, crate first.
fn violations(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for krate in members(root).expect("workspace manifest readable") {
        let (g, v) = check_crate(root, &krate).expect("sources readable");
        assert!(
            g.contains_key(""),
            "{krate}: no crate root (lib.rs or main.rs) found under src/"
        );
        out.extend(v.iter().map(|v| format!("{krate}: {v}")));
    }
    out
}

#[test]
fn every_workspace_crate_is_checked() {
    let members = members(&workspace()).unwrap();
    for krate in [
        "smarter-cni",
        "smarter-common",
        "smarter-ebpf",
        "smarter-ebpf-tests",
        "smarter-testbed",
        "xtask",
        "bench",
    ] {
        assert!(
            members.iter().any(|m| m == krate),
            "{krate} not checked: {members:?}"
        );
    }
    for (krate, _) in DECLARED {
        assert!(
            members.iter().any(|m| m == krate),
            "{krate} declares layers but is no member: {members:?}"
        );
    }
}

#[test]
fn no_crate_has_circles_or_upward_imports() {
    let v = violations(&workspace());
    assert!(v.is_empty(), "\n{}", v.join("\n"));
}

#[test]
fn a_circle_in_any_member_is_found() {
    let ws = tree(&[
        (
            "Cargo.toml",
            "[workspace]\nmembers = [\n    \"one\", # the first\n    \"two\",\n]\ndefault-members = [\"one\"]\n",
        ),
        ("one/src/lib.rs", "mod a;\n"),
        ("one/src/a.rs", ""),
        ("two/src/main.rs", "mod x; mod y;\n"),
        ("two/src/x.rs", "use crate::y::Y;\n"),
        ("two/src/y.rs", "pub fn f() { crate::x::g(); }\n"),
    ]);
    assert_eq!(members(&ws.0).unwrap(), ["one", "two"]);
    assert_eq!(
        violations(&ws.0),
        ["two: import circle: x -> y -> x"],
        "a crate that declares no layers is still checked for circles"
    );
}

#[test]
fn declared_layers_are_kept_apart() {
    for (krate, layers) in DECLARED {
        let all: Vec<&str> = layers.iter().flat_map(|l| l.iter().copied()).collect();
        let unique: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len(), "{krate}: a module in two layers");
        assert_eq!(layers_of(krate), *layers);
    }
    assert!(layers_of("smarter-common").is_empty());
}

fn tree(files: &[(&str, &str)]) -> tempfile_free::Dir {
    let d = tempfile_free::Dir::new();
    for (name, text) in files {
        let p = d.0.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    d
}

#[test]
fn finds_a_circle_and_an_upward_import() {
    let d = tree(&[
        ("lib.rs", "mod a; mod b; mod low;\n"),
        ("a.rs", "use crate::b::{X, y::Z};\nmod inner;\n"),
        (
            "a/inner.rs",
            "use super::Thing; // crate::low would be fine\n",
        ),
        (
            "b.rs",
            "pub fn f() { crate::a::g(); }\n#[cfg(test)]\nmod t {\n use crate::low::Q;\n}\n",
        ),
        ("b/y.rs", ""),
        ("low.rs", "use crate::a::Up;\n"),
    ]);
    let g = graph(&d.0).unwrap();
    assert_eq!(g["a"], BTreeSet::from(["b".into(), "b::y".into()]));
    assert_eq!(g["b"], BTreeSet::from(["a".into()]), "cfg(test) left out");
    let v = check(&g, &[&["low"], &["a", "b"]]);
    assert!(
        v.contains(&Violation::Circle(vec!["a".into(), "b".into()])),
        "{v:?}"
    );
    assert!(
        !v.iter()
            .any(|x| matches!(x, Violation::Circle(c) if c.contains(&"a::inner".to_string()))),
        "a child using its parent is not a circle: {v:?}"
    );
    assert!(v.contains(&Violation::Upward {
        from: "low".into(),
        to: "a".into(),
        from_layer: 0,
        to_layer: 1
    }));
    let clean = tree(&[
        ("lib.rs", "mod a; mod b;\n"),
        ("a.rs", "use crate::b::X;\n"),
        ("b.rs", ""),
    ]);
    assert!(check(&graph(&clean.0).unwrap(), &[]).is_empty());
}

/// A scratch directory without a crate for it (xtask keeps its dependencies few).
mod tempfile_free {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "xtask-layers-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
