//! The installer's knobs: ConfigMap keys (passed to the install step as environment variables)
//! and how each becomes a key of the generated conflist.
//!
//! The upstream keys `CIDR` and `GW` keep their meaning; every other key of the plugin's
//! configuration has a key of its own ([`KNOBS`]). An unset or empty variable leaves the key
//! out of the conflist, so the plugin's own default applies (see docs/configuration.md (keys)
//! table). The conflist is then validated by the plugin's own parser, [`NetConf::parse`].

use serde_json::{Map, Value, json};

use super::InstallError;
use crate::cni::NetConf;
use crate::cni::config::{PLUGIN_TYPE, defaults};

/// How a knob's text becomes a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnobKind {
    /// A JSON string, as given.
    Text,
    /// A JSON number (an unsigned integer).
    Number,
    /// A JSON boolean (`true` or `false`).
    Bool,
    /// A JSON array of strings from a comma-separated list (blanks around items ignored).
    List,
}

/// One ConfigMap key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knob {
    /// The ConfigMap key and environment variable, e.g. `CIDR`.
    pub env: &'static str,
    /// The conflist key it sets; a dot nests (`ctTimeouts.udp`).
    pub key: &'static str,
    /// How the text is turned into JSON.
    pub kind: KnobKind,
    /// The chart's default (the plugin's default; empty means "leave the key out").
    pub default: &'static str,
}

const fn knob(env: &'static str, key: &'static str, kind: KnobKind, default: &'static str) -> Knob {
    Knob {
        env,
        key,
        kind,
        default,
    }
}

/// Every knob, in the order of the chart's values. `NETWORK` and `CNI_VERSION` are the
/// conflist's own `name` and `cniVersion`.
pub const KNOBS: [Knob; 24] = [
    knob("NETWORK", "name", KnobKind::Text, defaults::NETWORK),
    knob(
        "CNI_VERSION",
        "cniVersion",
        KnobKind::Text,
        DEFAULT_CNI_VERSION,
    ),
    knob("CIDR", "subnet", KnobKind::Text, defaults::SUBNET),
    knob("GW", "gateway", KnobKind::Text, "172.39.0.1"),
    knob("BRIDGE", "bridge", KnobKind::Text, defaults::BRIDGE),
    knob("MTU", "mtu", KnobKind::Number, ""),
    knob("HAIRPIN_MODE", "hairpinMode", KnobKind::Bool, "true"),
    knob("DATAPATH", "datapath", KnobKind::Text, "auto"),
    knob("TC_ATTACH", "tcAttach", KnobKind::Text, "auto"),
    knob("UPLINK", "uplink", KnobKind::Text, "auto"),
    knob("DATA_DIR", "dataDir", KnobKind::Text, defaults::DATA_DIR),
    knob("STATE_DIR", "stateDir", KnobKind::Text, defaults::STATE_DIR),
    knob("BPFFS_DIR", "bpffsDir", KnobKind::Text, defaults::BPFFS_DIR),
    knob("DENY_CIDRS", "denyCIDRs", KnobKind::List, ""),
    knob(
        "NAT_PORT_RANGE",
        "natPortRange",
        KnobKind::Text,
        "61000-64999",
    ),
    knob("CT_MAX_ENTRIES", "ctMaxEntries", KnobKind::Number, "65536"),
    knob(
        "CT_TIMEOUT_TCP_ESTABLISHED",
        "ctTimeouts.tcpEstablished",
        KnobKind::Number,
        "1800",
    ),
    knob(
        "CT_TIMEOUT_TCP_OTHER",
        "ctTimeouts.tcpOther",
        KnobKind::Number,
        "120",
    ),
    knob("CT_TIMEOUT_UDP", "ctTimeouts.udp", KnobKind::Number, "60"),
    knob("CT_TIMEOUT_ICMP", "ctTimeouts.icmp", KnobKind::Number, "30"),
    knob("DNS_NAMESERVERS", "dns.nameservers", KnobKind::List, ""),
    knob("DNS_SEARCH", "dns.search", KnobKind::List, ""),
    knob("NODE_DNS", "nodeDns", KnobKind::Text, "169.254.0.2"),
    knob(
        "CLUSTER_DOMAIN",
        "clusterDomain",
        KnobKind::Text,
        defaults::CLUSTER_DOMAIN,
    ),
];

/// `cniVersion` of the generated conflist when `CNI_VERSION` is unset: 1.0.0, which every
/// containerd of k3s 1.2x reads (1.1.0 needs libcni 1.2); the plugin speaks both.
pub const DEFAULT_CNI_VERSION: &str = "1.0.0";
/// Network name when `NETWORK` is unset.
const DEFAULT_NETWORK: &str = defaults::NETWORK;

/// The conflist to install, validated.
#[derive(Debug, Clone)]
pub struct Conflist {
    /// The document, as written (pretty JSON and a final newline).
    pub bytes: Vec<u8>,
    /// The plugin's view of it.
    pub netconf: NetConf,
}

/// Builds and validates the conflist from the knobs found by `lookup` (e.g. `std::env::var`).
///
/// # Errors
///
/// [`InstallError::InvalidConfig`] naming the ConfigMap key and the plugin's complaint.
pub fn conflist_from(lookup: impl Fn(&str) -> Option<String>) -> Result<Conflist, InstallError> {
    let mut top = Map::new();
    let mut plugin = Map::new();
    plugin.insert("type".into(), json!(PLUGIN_TYPE));
    for k in &KNOBS {
        let Some(text) = lookup(k.env).map(|t| t.trim().to_owned()) else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        let value = typed(k, &text)?;
        match k.key {
            "name" | "cniVersion" => {
                top.insert(k.key.into(), value);
            }
            key => insert_dotted(&mut plugin, key, value),
        }
    }
    top.entry("cniVersion")
        .or_insert(json!(DEFAULT_CNI_VERSION));
    top.entry("name").or_insert(json!(DEFAULT_NETWORK));
    plugin.insert("capabilities".into(), json!({ "portMappings": true }));
    // Field order: cniVersion, name, plugins (serde_json keeps insertion order here).
    let doc = json!({
        "cniVersion": top["cniVersion"],
        "name": top["name"],
        "plugins": [Value::Object(plugin)],
    });
    let netconf = validate(&doc)?;
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("a JSON value serializes");
    bytes.push(b'\n');
    Ok(Conflist { bytes, netconf })
}

/// The knobs' chart defaults, as a lookup for [`conflist_from`].
#[must_use]
pub fn chart_defaults(env: &str) -> Option<String> {
    KNOBS
        .iter()
        .find(|k| k.env == env)
        .map(|k| k.default.to_owned())
}

/// Runs the plugin's own validation on the smarter-cni entry, completed with the list's
/// `cniVersion` and `name` as a runtime does.
fn validate(doc: &Value) -> Result<NetConf, InstallError> {
    let mut entry = doc["plugins"][0].as_object().cloned().unwrap_or_default();
    entry.insert("cniVersion".into(), doc["cniVersion"].clone());
    entry.insert("name".into(), doc["name"].clone());
    let bytes = serde_json::to_vec(&Value::Object(entry)).expect("a JSON value serializes");
    NetConf::parse(&bytes).map_err(|e| {
        let first = e.msg.split([' ', '[']).next().unwrap_or_default();
        let knob = KNOBS
            .iter()
            .find(|k| k.key == first || k.key.rsplit('.').next() == Some(first))
            .map(|k| k.env);
        let mut msg = e.msg.clone();
        if !e.details.is_empty() {
            msg = format!("{msg} ({})", e.details);
        }
        InstallError::InvalidConfig {
            msg,
            knob: knob.map(str::to_owned),
        }
    })
}

fn typed(k: &Knob, text: &str) -> Result<Value, InstallError> {
    let bad = |what: &str| InstallError::InvalidConfig {
        msg: format!("{text:?} is not {what}"),
        knob: Some(k.env.to_owned()),
    };
    Ok(match k.kind {
        KnobKind::Text => json!(text),
        KnobKind::Number => json!(text.parse::<u64>().map_err(|_| bad("a number"))?),
        KnobKind::Bool => match text {
            "true" => json!(true),
            "false" => json!(false),
            _ => return Err(bad("true or false")),
        },
        KnobKind::List => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| json!(s))
                .collect(),
        ),
    })
}

fn insert_dotted(map: &mut Map<String, Value>, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            map.insert(key.into(), value);
        }
        Some((outer, inner)) => {
            let slot = map
                .entry(outer.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner_map) = slot {
                insert_dotted(inner_map, inner, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Conflist, InstallError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        conflist_from(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn chart_defaults_are_the_plugin_defaults() {
        let c = conflist_from(chart_defaults).unwrap();
        let expected = NetConf {
            cni_version: c.netconf.cni_version,
            capabilities: c.netconf.capabilities.clone(),
            ..NetConf::default()
        };
        assert_eq!(c.netconf, expected);
        assert_eq!(from(&[]).unwrap().netconf, c.netconf, "no knobs = defaults");
    }

    #[test]
    fn knobs_reach_their_keys() {
        let c = from(&[
            ("CIDR", "10.9.0.0/24"),
            ("GW", "10.9.0.254"),
            ("DENY_CIDRS", "192.168.0.0/16, 10.0.0.0/8"),
            ("CT_TIMEOUT_UDP", "90"),
            ("MTU", "1400"),
            ("HAIRPIN_MODE", "false"),
            ("DNS_NAMESERVERS", "169.254.0.2"),
            ("NETWORK", "edge"),
        ])
        .unwrap();
        let n = &c.netconf;
        assert_eq!(n.subnet.to_string(), "10.9.0.0/24");
        assert_eq!(n.gateway.to_string(), "10.9.0.254");
        assert_eq!(n.deny_cidrs.len(), 2);
        assert_eq!(n.ct_timeouts.udp, 90);
        assert_eq!(n.mtu, Some(1400));
        assert!(!n.hairpin_mode);
        assert_eq!(n.name, "edge");
        let doc: Value = serde_json::from_slice(&c.bytes).unwrap();
        assert_eq!(doc["plugins"][0]["dns"]["nameservers"][0], "169.254.0.2");
    }

    #[test]
    fn invalid_values_name_the_configmap_key() {
        for (pairs, knob, words) in [
            (vec![("CIDR", "10.0.0.0/33")], "CIDR", "subnet"),
            (vec![("GW", "10.0.0.1")], "GW", "outside"),
            (vec![("CT_MAX_ENTRIES", "lots")], "CT_MAX_ENTRIES", "number"),
            (
                vec![("HAIRPIN_MODE", "yes")],
                "HAIRPIN_MODE",
                "true or false",
            ),
            (
                vec![("CT_TIMEOUT_ICMP", "0")],
                "CT_TIMEOUT_ICMP",
                "ctTimeouts.icmp",
            ),
            (vec![("DATAPATH", "xdp")], "DATAPATH", "datapath"),
        ] {
            let err = from(&pairs).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(knob) && text.contains(words), "{text}");
        }
    }
}
