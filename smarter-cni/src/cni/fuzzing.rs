//! Entry points shared by the cargo-fuzz targets (`smarter-cni/fuzz/`) and the corpus replay
//! test (`tests/fuzz_corpus_replay.rs`): each takes arbitrary bytes and must return — never
//! panic — whatever the input. The CNI error, when there is one, must also serialize.

use super::{CniArgs, NetConf, version::LATEST};

/// The network configuration parser on raw stdin bytes.
pub fn netconf(data: &[u8]) {
    if let Err(e) = NetConf::parse(data) {
        let _ = e.to_json(LATEST.as_str());
    }
}

/// The `CNI_ARGS` parser.
pub fn cni_args(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = CniArgs::parse(text)
    {
        let _ = e.to_json(LATEST.as_str());
    }
}

/// `runtimeConfig` capabilities (`portMappings`, `ips`, `mac`, `aliases`, `dns`): arbitrary
/// JSON placed into an otherwise valid configuration.
pub fn runtime_config(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let conf = serde_json::json!({
        "cniVersion": "1.1.0",
        "type": "smarter-cni",
        "capabilities": {"portMappings": true, "ips": true, "mac": true, "aliases": true, "dns": true},
        "runtimeConfig": value,
    });
    netconf(&serde_json::to_vec(&conf).expect("JSON values serialize"));
}
