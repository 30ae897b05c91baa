//! Replays the committed cargo-fuzz corpora (`smarter-cni/fuzz/corpus/<target>/`) through the
//! same entry points the fuzz targets call, so every input a fuzzing run kept (and every crash
//! it found, once fixed) is checked on every test run. Long fuzzing runs are `cargo xtask fuzz`.

use std::path::Path;

use smarter_cni::cni::fuzzing;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        // A panic here names the input file through the test's panic message.
        let r = std::panic::catch_unwind(|| f(&data));
        assert!(r.is_ok(), "{target}: {} panics", path.display());
        n += 1;
    }
    assert!(n > 0, "{target}: empty corpus");
    n
}

#[test]
fn netconf_corpus() {
    replay("netconf", fuzzing::netconf);
}

#[test]
fn cni_args_corpus() {
    replay("cni_args", fuzzing::cni_args);
}

#[test]
fn runtime_config_corpus() {
    replay("runtime_config", fuzzing::runtime_config);
}

#[test]
fn dns_query_corpus() {
    replay("dns_query", smarter_cni::dns::fuzzing::query);
}
