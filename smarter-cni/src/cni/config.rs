//! The network configuration (`NetConf`) read from stdin.
//!
//! Parsing goes: JSON (code 6) → `cniVersion` negotiation (code 1) → `type` (code 7) → key
//! allow-list (code 2) → typed values with defaults (code 7) → semantic checks (code 7).
//! Every code-7 message names the key and the offending value, e.g.
//! `subnet "10.0.0.0/33" is not an IPv4 CIDR`.
//!
//! Our keys and defaults:
//!
//! | key | type | default |
//! |-----|------|---------|
//! | `name` | network name | `"smartnet"` |
//! | `bridge` | interface name | `"smartnet0"` |
//! | `subnet` | IPv4 CIDR, prefix ≤ /30, no host bits | `"172.39.0.0/16"` |
//! | `gateway` | IPv4 host address inside `subnet` | first host of `subnet` (`172.39.0.1`) |
//! | `mtu` | 68..=65535, or `"auto"`: the smallest MTU of the selected external interfaces with an address | `"auto"` ([`defaults::MTU`] without one) |
//! | `hairpinMode` | bool | `true` |
//! | `datapath` | `"auto"`, `"ebpf"`, `"nftables"` (alias `"iptables"`) | `"auto"` |
//! | `tcAttach` | `"auto"`, `"tcx"`, `"netlink"` | `"auto"` |
//! | `uplink` | `"auto"` or interface name | `"auto"` |
//! | `dataDir` | absolute path | `/var/run/cni/networks` |
//! | `stateDir` | absolute path | `/var/lib/smarter-cni` |
//! | `bpffsDir` | absolute path | `/sys/fs/bpf/smarter-cni` |
//! | `denyCIDRs` | list of IPv4 CIDRs | empty |
//! | `natPortRange` | `"a-b"` or `{"start": a, "end": b}`, 1024 ≤ a ≤ b ≤ 65535 | `"61000-64999"` |
//! | `ctMaxEntries` | 1024..=4194304 | 65536 |
//! | `ctTimeouts` | `{"tcpEstablished", "tcpOther", "udp", "icmp"}`, seconds 1..=604800 | 1800, 120, 60, 30 |
//! | `nodeDns` | IPv4 address of the node-local DNS, or `"off"` | `"169.254.0.2"` |
//! | `clusterDomain` | DNS name | `"cluster.local"` |
//! | `ipv6` | `"auto"` (IPv6 for a pod when a selected external interface has a global IPv6 address at its ADD), `"on"`, `"off"` | `"auto"` |
//! | `subnet6` | IPv6 CIDR, /64 to /120, no host bits; the bridge holds its `::1` | `"fd00:ac27::/64"` |
//! | `nat64Prefix` | the CLAT's NAT64 prefix on an IPv6-only uplink: `"auto"` (discovered, [`Nat64Prefix`]), an IPv6 `/96`, or `"off"` | `"auto"` (else `64:ff9b::/96`) |
//!
//! The ADD result's `dns` is the configured `dns` object when it has any field, else (with
//! `nodeDns` set) nameserver `nodeDns` and search `<ns>.svc.<domain> svc.<domain> <domain>`
//! (see [`NetConf::result_dns`]).
//! Standard keys accepted: `cniVersion` (required), `cniVersions`, `name`, `type` (required,
//! must be `"smarter-cni"`), `args`, `capabilities`, `runtimeConfig`, `prevResult`,
//! `cni.dev/valid-attachments`, `cni.dev/attachments`, `dns`, `ipMasq`, `disableCheck`,
//! `disableGC`. Other `cni.dev/` keys are reserved for the runtime and ignored.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;
use ipnetwork::Ipv6Network;
use serde_json::{Map, Value};

use super::json::{Fields, render};
use super::names::validate_network_name;
use super::{CniArgs, CniError, CniResult, Dns, RuntimeConfig, Version, negotiate};

pub mod defaults;
mod fields;
mod ipv6;
mod keys;
mod nat64;
pub mod paths;
mod uplink;

/// The plugin's `type`.
pub const PLUGIN_TYPE: &str = "smarter-cni";
pub use defaults::MTU as DEFAULT_MTU;
pub use ipv6::{DEFAULT_SUBNET6, Ipv6Mode, SUBNET6_MAX_PREFIX, SUBNET6_MIN_PREFIX, gateway6};
pub use nat64::Nat64Prefix;
pub use uplink::UplinkSelector;
/// Default `subnet`.
pub const DEFAULT_SUBNET: Ipv4Network =
    match Ipv4Network::new_checked(Ipv4Addr::new(172, 39, 0, 0), 16) {
        Some(net) => net,
        None => panic!("172.39.0.0/16 is a valid network"),
    };

/// What [`NetConf::parse_with`] does with an invalid `runtimeConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeConfigErrors {
    /// Fail the parse with the error (code 7).
    Refuse,
    /// Log it and use the empty `runtimeConfig`.
    Ignore,
}

/// Idle timeouts of conntrack entries (`ctTimeouts`), in seconds: the datapaths' own type.
pub use smarter_common::CtTimeouts as CtTimeoutsConf;

/// Which datapath to program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DatapathMode {
    /// eBPF when the kernel supports it, else nftables.
    #[default]
    Auto,
    /// TC eBPF only; fail if unavailable.
    Ebpf,
    /// nftables only (`iptables` is accepted as an alias).
    Nftables,
}

/// How TC programs are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TcAttachMode {
    /// TCX when the kernel has it (6.6+), else netlink `clsact`.
    #[default]
    Auto,
    /// TCX links only.
    Tcx,
    /// Netlink `clsact` qdisc filters only.
    Netlink,
}

/// An inclusive range of source ports for SNAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl PortRange {
    /// The default: above Linux's ephemeral range (32768–60999) so SNAT never collides with
    /// the host's own connections.
    pub const DEFAULT: Self = Self {
        start: 61000,
        end: 64999,
    };
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// One `cni.dev/valid-attachments` entry (GC).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidAttachment {
    /// `containerID`: the `CNI_CONTAINERID` of the ADD.
    pub container_id: String,
    /// `ifname`: the `CNI_IFNAME` of the ADD.
    pub ifname: String,
}

/// The parsed network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`, negotiated.
    pub cni_version: Version,
    /// `name`.
    pub name: String,
    /// `args`, kept as given (an object).
    pub args: Option<Value>,
    /// `capabilities`, kept as given.
    pub capabilities: Map<String, Value>,
    /// `runtimeConfig`, the capabilities we understand.
    pub runtime_config: RuntimeConfig,
    /// `prevResult`, kept as given; see [`NetConf::prev_result_typed`].
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (or the older `cni.dev/attachments`); `None` if absent.
    pub valid_attachments: Option<Vec<ValidAttachment>>,
    /// `dns`.
    pub dns: Dns,
    /// `ipMasq`, stored as given.
    pub ip_masq: Option<bool>,
    /// `bridge`.
    pub bridge: String,
    /// `subnet`.
    pub subnet: Ipv4Network,
    /// `gateway`.
    pub gateway: Ipv4Addr,
    /// `mtu` when it is a number.
    pub mtu: Option<u32>,
    /// `mtu` absent or `"auto"` (the default): each ADD gives the bridge and the pod the
    /// smallest MTU of the selected external interfaces that have an address (a raw-IP
    /// modem's 1428, a VPN's 1420...; [`defaults::MTU`] when there is none), so what a pod
    /// sends fits whichever uplink the route picks.
    pub mtu_auto: bool,
    /// `hairpinMode`.
    pub hairpin_mode: bool,
    /// `datapath`.
    pub datapath: DatapathMode,
    /// `tcAttach`.
    pub tc_attach: TcAttachMode,
    /// `uplink`.
    pub uplink: UplinkSelector,
    /// `dataDir`: IPAM leases (host-local layout).
    pub data_dir: PathBuf,
    /// `stateDir`: attachment records.
    pub state_dir: PathBuf,
    /// `bpffsDir`: pinned maps and links.
    pub bpffs_dir: PathBuf,
    /// `denyCIDRs`: destinations pods may not reach.
    pub deny_cidrs: Vec<Ipv4Network>,
    /// `natPortRange`.
    pub nat_port_range: PortRange,
    /// `ctMaxEntries`: conntrack map size.
    pub ct_max_entries: u32,
    /// `ctTimeouts`: conntrack idle timeouts.
    pub ct_timeouts: CtTimeoutsConf,
    /// `nodeDns`: the node-local DNS address given to pods; `None` for none.
    pub node_dns: Option<Ipv4Addr>,
    /// `clusterDomain`, in key form (lower case, no trailing dot).
    pub cluster_domain: String,
    /// The first IPv4 of `args.cni.ips`, if any.
    pub args_ip: Option<Ipv4Addr>,
    /// The first IPv6 of `args.cni.ips`, if any.
    pub args_ip6: Option<std::net::Ipv6Addr>,
    /// `ipv6`.
    pub ipv6: Ipv6Mode,
    /// `subnet6`; its `::1` is the pods' IPv6 gateway ([`NetConf::gateway6`]).
    pub subnet6: Ipv6Network,
    /// `nat64Prefix`.
    pub nat64_prefix: Nat64Prefix,
}

impl Default for NetConf {
    /// A config with every default and `cniVersion` 1.1.0.
    fn default() -> Self {
        Self {
            cni_version: Version::LATEST,
            name: defaults::NETWORK.into(),
            args: None,
            capabilities: Map::new(),
            runtime_config: RuntimeConfig::default(),
            prev_result: None,
            valid_attachments: None,
            dns: Dns::default(),
            ip_masq: None,
            bridge: defaults::BRIDGE.into(),
            subnet: DEFAULT_SUBNET,
            gateway: defaults::GATEWAY,
            mtu: None,
            mtu_auto: true,
            hairpin_mode: true,
            datapath: DatapathMode::Auto,
            tc_attach: TcAttachMode::Auto,
            uplink: UplinkSelector::Auto,
            data_dir: defaults::DATA_DIR.into(),
            state_dir: defaults::STATE_DIR.into(),
            bpffs_dir: defaults::BPFFS_DIR.into(),
            deny_cidrs: Vec::new(),
            nat_port_range: PortRange::DEFAULT,
            ct_max_entries: defaults::CT_MAX_ENTRIES,
            ct_timeouts: CtTimeoutsConf::DEFAULT,
            node_dns: Some(defaults::NODE_DNS),
            cluster_domain: defaults::CLUSTER_DOMAIN.into(),
            args_ip: None,
            args_ip6: None,
            ipv6: Ipv6Mode::Auto,
            subnet6: DEFAULT_SUBNET6,
            nat64_prefix: Nat64Prefix::Auto,
        }
    }
}

impl NetConf {
    /// The MTU of the bridge and the pod veths: `mtu`, else [`defaults::MTU`].
    #[must_use]
    pub fn mtu_or_default(&self) -> u32 {
        self.mtu.unwrap_or(defaults::MTU)
    }

    /// Parses and validates the config from stdin bytes.
    ///
    /// # Errors
    ///
    /// Code 6 for malformed JSON or a non-object; 1 for an unsupported `cniVersion`; 2 for
    /// unknown keys (named in `msg`, values in `details`); 7 for missing or invalid values.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        Self::parse_with(stdin, RuntimeConfigErrors::Refuse)
    }

    /// Like [`Self::parse`]; `runtime_config_errors` says whether an invalid `runtimeConfig`
    /// fails the parse or is logged and replaced by the empty one (DEL, which never uses
    /// it: a runtime whose capability encoding we misread must still be able to remove
    /// the sandbox).
    ///
    /// # Errors
    ///
    /// As [`Self::parse`].
    pub fn parse_with(
        stdin: &[u8],
        runtime_config_errors: RuntimeConfigErrors,
    ) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(stdin)
            .map_err(|e| CniError::decode(format!("network config is not valid JSON: {e}")))?;
        let Value::Object(map) = &value else {
            return Err(CniError::decode(format!(
                "network config {} is not a JSON object",
                render(&value)
            )));
        };
        let f = Fields::new(map, "", CniError::INVALID_CONFIG);
        let cni_version = negotiate(
            f.string("cniVersion")?
                .ok_or_else(|| f.missing("cniVersion"))?,
        )?;
        // The type first: a config meant for another plugin is best reported as such.
        match f.string("type")? {
            None => return Err(f.missing("type")),
            Some(PLUGIN_TYPE) => {}
            Some(other) => {
                return Err(f.invalid(
                    "type",
                    &Value::String(other.into()),
                    format!("is not {PLUGIN_TYPE:?}"),
                ));
            }
        }
        keys::reject_unknown_keys(map)?;
        let defaults = Self::default();

        let name = f.string("name")?.unwrap_or(&defaults.name).to_owned();
        if let Err(why) = validate_network_name(&name) {
            return Err(f.invalid("name", &Value::String(name), why));
        }
        let args = f.object("args")?.map(|m| Value::Object(m.clone()));
        let runtime_config = match f.get("runtimeConfig") {
            None => RuntimeConfig::default(),
            Some(v) => match (RuntimeConfig::from_value(v, &name), runtime_config_errors) {
                (Ok(rc), _) => rc,
                (Err(e), RuntimeConfigErrors::Refuse) => return Err(e),
                (Err(e), RuntimeConfigErrors::Ignore) => {
                    tracing::warn!("ignoring the invalid runtimeConfig: {}", e.msg);
                    RuntimeConfig::default()
                }
            },
        };
        let dns = match f.get("dns") {
            None => Dns::default(),
            Some(v) => Dns::from_fields(&Fields::object_at(v, "dns", f.code())?)?,
        };
        let (subnet, gateway) = fields::subnet_and_gateway(&f)?;

        Ok(Self {
            cni_version,
            name,
            args_ip: args.as_ref().map(fields::args_ip).transpose()?.flatten(),
            args_ip6: args.as_ref().map(ipv6::args_ip6).transpose()?.flatten(),
            ipv6: ipv6::ipv6_mode(&f)?,
            subnet6: ipv6::subnet6(&f)?,
            args,
            capabilities: f.object("capabilities")?.cloned().unwrap_or_default(),
            runtime_config,
            prev_result: f.get("prevResult").cloned(),
            valid_attachments: fields::attachments(&f)?,
            dns,
            ip_masq: f.bool("ipMasq")?,
            bridge: fields::ifname(&f, "bridge")?.unwrap_or(defaults.bridge),
            subnet,
            gateway,
            mtu: if f.get("mtu").and_then(Value::as_str) == Some("auto") {
                None
            } else {
                f.uint("mtu", 68..=65535)?
            },
            mtu_auto: f
                .get("mtu")
                .is_none_or(|m| m.is_null() || m.as_str() == Some("auto")),
            hairpin_mode: f.bool("hairpinMode")?.unwrap_or(defaults.hairpin_mode),
            datapath: fields::choice(
                &f,
                "datapath",
                &[
                    ("auto", DatapathMode::Auto),
                    ("ebpf", DatapathMode::Ebpf),
                    ("nftables", DatapathMode::Nftables),
                    // The name of earlier releases, kept as an alias.
                    ("iptables", DatapathMode::Nftables),
                ],
            )?
            .unwrap_or_default(),
            tc_attach: fields::choice(
                &f,
                "tcAttach",
                &[
                    ("auto", TcAttachMode::Auto),
                    ("tcx", TcAttachMode::Tcx),
                    ("netlink", TcAttachMode::Netlink),
                ],
            )?
            .unwrap_or_default(),
            uplink: uplink::uplink(&f)?,
            data_dir: fields::abs_path(&f, "dataDir")?.unwrap_or(defaults.data_dir),
            state_dir: fields::abs_path(&f, "stateDir")?.unwrap_or(defaults.state_dir),
            bpffs_dir: fields::abs_path(&f, "bpffsDir")?.unwrap_or(defaults.bpffs_dir),
            deny_cidrs: fields::deny_cidrs(&f)?,
            nat_port_range: fields::port_range(&f)?.unwrap_or(defaults.nat_port_range),
            ct_max_entries: f
                .uint("ctMaxEntries", 1024..=4_194_304)?
                .unwrap_or(defaults.ct_max_entries),
            ct_timeouts: fields::ct_timeouts(&f)?,
            node_dns: fields::node_dns(&f)?.unwrap_or(defaults.node_dns),
            cluster_domain: fields::cluster_domain(&f)?.unwrap_or(defaults.cluster_domain),
            nat64_prefix: nat64::nat64_prefix(&f)?,
        })
    }

    /// The `dns` object of an ADD result for a pod of `pod_namespace`: the configured `dns`
    /// when it sets anything, else the node-local DNS block (nameserver `nodeDns`, search
    /// `<ns>.svc.<domain> svc.<domain> <domain>`), else nothing.
    #[must_use]
    pub fn result_dns(&self, pod_namespace: Option<&str>) -> Dns {
        match self.node_dns {
            _ if !self.dns.is_empty() => self.dns.clone(),
            Some(ip) => super::result::result_dns(&self.cluster_domain, ip, pod_namespace),
            None => Dns::default(),
        }
    }

    /// Parses [`NetConf::prev_result`] in our `cniVersion`; `Ok(None)` when absent.
    ///
    /// # Errors
    ///
    /// Code 6 as in [`CniResult::from_prev_result`].
    pub fn prev_result_typed(&self) -> Result<Option<CniResult>, CniError> {
        self.prev_result
            .as_ref()
            .map(|value| CniResult::from_prev_result(value, self.cni_version))
            .transpose()
    }

    /// The address the runtime asked for, by precedence: `runtimeConfig.ips`, then
    /// `args.cni.ips`, then `CNI_ARGS` `IP` (which CONVENTIONS.md says yields to `args`).
    #[must_use]
    pub fn requested_ip(&self, cni_args: &CniArgs) -> Option<Ipv4Addr> {
        self.runtime_config
            .ips
            .first()
            .copied()
            .or(self.args_ip)
            .or(cni_args.ip)
    }
}

#[cfg(test)]
mod tests;
