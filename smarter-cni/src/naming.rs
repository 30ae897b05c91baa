//! Deterministic names, so DEL and GC find what ADD made without any state, and the DNS
//! name syntax the configuration and the node-local DNS share. Below every other module.

use sha2::{Digest as _, Sha256};

/// Prefix of every host-side veth this plugin creates.
pub const HOST_VETH_PREFIX: &str = "smv";

/// The host-side veth name of (container id, interface): `smv` + 12 hex digits of
/// SHA-256(container id `/` ifname) — 15 bytes, the kernel's limit.
#[must_use]
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}/{ifname}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{HOST_VETH_PREFIX}{hex}")
}

/// The bridge's fixed MAC: locally administered unicast (`02:` prefix) plus 5 bytes of
/// SHA-256(`bridge/` name), stable across restarts and distinct per bridge name.
#[must_use]
pub fn bridge_mac(bridge: &str) -> [u8; 6] {
    let digest = Sha256::digest(format!("bridge/{bridge}").as_bytes());
    [0x02, digest[0], digest[1], digest[2], digest[3], digest[4]]
}

/// The longest DNS label (RFC 1035).
pub const MAX_LABEL: usize = 63;
/// The longest DNS name in presentation form without the trailing dot.
const MAX_NAME: usize = 253;

/// The key form of a name: ASCII lower case without the trailing dot.
#[must_use]
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// True when `label` is a usable host label: 1–63 characters of `[a-z0-9-]` (any case),
/// not starting or ending with `-`.
#[must_use]
pub fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// True when `name` (key form) is a usable name: labels as in [`is_label`], underscores also
/// allowed (aliases such as `_svc`), at most 253 characters.
#[must_use]
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= MAX_LABEL
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_short_and_distinct() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a, host_veth_name("abc", "eth0"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with(HOST_VETH_PREFIX));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert_ne!(a, host_veth_name("abd", "eth0"));
    }

    #[test]
    fn bridge_mac_is_local_unicast_and_stable() {
        let m = bridge_mac("smartnet0");
        assert_eq!(m[0], 0x02);
        assert_eq!(m, bridge_mac("smartnet0"));
        assert_ne!(m, bridge_mac("other0"));
    }
}
