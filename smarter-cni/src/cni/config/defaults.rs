//! Every default of the network configuration, in one place: the plugin's [`NetConf`]
//! defaults, the installer's knobs, the agent, `smarter-dns` and `smarter-bpfctl` take
//! theirs from here (upstream smarter-cni's names: network `smartnet`, bridge `smartnet0`,
//! subnet `172.39.0.0/16`).
//!
//! [`NetConf`]: super::NetConf

use std::net::{Ipv4Addr, Ipv6Addr};

/// Network name (`name`).
pub const NETWORK: &str = "smartnet";
/// MTU of the bridge and the pod veths when `mtu` is unset (`mtu`).
pub const MTU: u32 = 1500;
/// Bridge name (`bridge`).
pub const BRIDGE: &str = "smartnet0";
/// Pod subnet (`subnet`) as text; [`super::DEFAULT_SUBNET`] is the parsed form.
pub const SUBNET: &str = "172.39.0.0/16";
/// Pod gateway, the bridge's address (`gateway`).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);
/// host-local compatible IPAM files (`dataDir`).
pub const DATA_DIR: &str = "/var/run/cni/networks";
/// Attachment records, the loader lock and the datapath choice (`stateDir`).
pub const STATE_DIR: &str = "/var/lib/smarter-cni";
/// The pin root on bpffs (`bpffsDir`), created when missing.
pub const BPFFS_DIR: &str = "/sys/fs/bpf/smarter-cni";
/// The NAT source-port range (`natPortRange`).
pub const NAT_PORTS: (u16, u16) = (61000, 64999);
/// Conntrack map capacity (`ctMaxEntries`).
pub const CT_MAX_ENTRIES: u32 = 65536;
/// The node-local DNS address (`nodeDns`), held by the bridge.
pub const NODE_DNS: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 2);
/// The cluster domain (`clusterDomain`).
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// containerd's CRI socket.
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// k3s's embedded containerd CRI socket.
pub const K3S_CONTAINERD_SOCKET: &str = "/run/k3s/containerd/containerd.sock";
/// The NAT64 prefix an IPv6-only uplink's CLAT translates to (`nat64Prefix`): the well-known
/// `64:ff9b::/96` (RFC 6052), what carriers' NAT64 use unless they announce another.
pub const NAT64_PREFIX: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);
/// The pods' IPv6 subnet (`subnet6`) as text: a ULA (RFC 4193) whose "ac27" echoes 172.39, the
/// IPv4 default; node-local only (pods leave by NAT66), so one fixed prefix on every node is
/// safe. [`super::DEFAULT_SUBNET6`] is the parsed form.
pub const SUBNET6: &str = "fd00:ac27::/64";
/// The pods' IPv6 gateway, the bridge's IPv6 address: `subnet6`'s `::1`.
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 1);
