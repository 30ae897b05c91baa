//! The top-level keys a network configuration may have, and the check that refuses others.

use serde_json::{Map, Value};

use crate::cni::CniError;
use crate::cni::json::render;

/// Top-level keys defined by the spec that we accept.
const STANDARD_KEYS: [&str; 14] = [
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "args",
    "capabilities",
    "runtimeConfig",
    "prevResult",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
    "dns",
    "ipMasq",
    "disableCheck",
    "disableGC",
];
/// Our own top-level keys.
const PLUGIN_KEYS: [&str; 20] = [
    "bridge",
    "subnet",
    "gateway",
    "mtu",
    "hairpinMode",
    "datapath",
    "tcAttach",
    "uplink",
    "dataDir",
    "stateDir",
    "bpffsDir",
    "denyCIDRs",
    "natPortRange",
    "ctMaxEntries",
    "ctTimeouts",
    "nodeDns",
    "clusterDomain",
    "nat64Prefix",
    "ipv6",
    "subnet6",
];

/// Rejects top-level keys outside the allow-lists (code 2): all are named in `msg`, with their
/// values in `details`.
pub(super) fn reject_unknown_keys(map: &Map<String, Value>) -> Result<(), CniError> {
    let mut unknown: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(key, _)| {
            !STANDARD_KEYS.contains(&key.as_str())
                && !PLUGIN_KEYS.contains(&key.as_str())
                && !key.starts_with("cni.dev/")
        })
        .collect();
    unknown.sort_by_key(|(key, _)| key.as_str());
    if unknown.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = unknown.iter().map(|(key, _)| format!("{key:?}")).collect();
    let values: Vec<String> = unknown
        .iter()
        .map(|(key, value)| format!("{key:?}: {}", render(value)))
        .collect();
    Err(CniError::unsupported_field(format!(
        "unknown network config {} {}",
        if unknown.len() == 1 { "key" } else { "keys" },
        names.join(", ")
    ))
    .with_details(values.join(", ")))
}
