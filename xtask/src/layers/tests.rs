use super::*;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits below the workspace root")
        .to_path_buf()
}

fn assert_clean(krate: &str, layers: &[&[&str]]) {
    let g = graph(&workspace().join(krate).join("src")).expect("sources readable");
    assert!(g.len() > 5, "{krate}: too few modules found ({})", g.len());
    let v = check(&g, layers);
    assert!(
        v.is_empty(),
        "{krate}:\n{}",
        v.iter().map(|v| format!("  {v}\n")).collect::<String>()
    );
}

#[test]
fn smarter_cni_has_no_circles_or_upward_imports() {
    assert_clean("smarter-cni", CNI_LAYERS);
}

#[test]
fn smarter_ebpf_has_no_circles() {
    assert_clean("smarter-ebpf", &[]);
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
