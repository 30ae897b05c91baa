//! Throwaway network-namespace worlds for tests, the demo and benchmarks.
//!
//! A [`World`] is a `node` namespace (plays the gateway's root namespace: bridge, uplink,
//! pins), a `wan` namespace (plays the internet, joined to `node` by a veth that is the
//! node's uplink), one namespace per pod, a private bpffs instance (the pin root,
//! [`World::bpffs_dir`], is a not-yet-existing directory on it, as on a fresh node) and private
//! data and state directories. Everything is removed on drop, also when a test panics; worlds left
//! by a killed process are swept by the next [`World::new`]. Nothing is ever created in
//! the machine's root network namespace or under `/sys/fs/bpf`.
//!
//! Addresses: the uplink is `198.51.100.2/24` (node) ↔ `198.51.100.1/24` (wan), the wan
//! also holds `203.0.113.1/24` as "a server on the internet".
//!
//! [`World::add_nat64`] ([`nat64`]) makes that uplink IPv6-only, as a mobile or IPv6-only
//! access network is: `2001:db8:64::2/64` (node) ↔ `2001:db8:64::1/64` (wan), no IPv4 on it
//! and no IPv4 route off the node through it, and the wan a NAT64 (Debian's `tayga`) of the
//! well-known prefix `64:ff9b::/96`, through which the node reaches the wan's IPv4 server at
//! `64:ff9b::203.0.113.1` ([`nat64_addr`]) — the world of the CLAT (464XLAT).
//!
//! [`World::add_ipv6`] ([`dual`]) makes it dual-stack instead: `2001:db8:1::2/64` (node) ↔
//! `2001:db8:1::1/64` (wan), the wan's IPv6 server at `2001:db8:113::1`.
//!
//! Topologies of a real gateway are added on demand ([`topology`]): a LAN with a sensor, a
//! backup uplink with fail-over, a layer-3 (TUN, raw-IP) uplink; [`World::external_links`]
//! names the far side of every external interface. [`World::without_wan`] is the node alone;
//! pods can be wired by hand, without the plugin, for tests of a datapath's own engine
//! ([`World::add_pod_bridge`], [`World::wire_pod`], [`World::add_bridged_pod`]).
//!
//! Also: containerd in a world's node namespace ([`containerd`]), a busy load on every CPU
//! for concurrency tests ([`load::CpuLoad`]), and the one packet builder of the tests that
//! craft frames by hand ([`packet`]).

pub mod containerd;
pub mod dual;
pub mod load;
pub mod nat64;
mod ns;
pub mod packet;
mod plugin;
mod reboot;
mod servers;
mod sweep;
pub mod topology;
pub mod tun;
mod wired;

pub use dual::{NODE_DUAL_IP6, WAN_DUAL_IP6, WAN_SERVER_IP6, ula_counted, watch_ula};
pub use nat64::{NAT64_PREFIX, NAT64_PREFIX_LEN, NODE_UPLINK_IP6, WAN_ROUTER_IP6, nat64_addr};
pub use ns::{
    BpfFs, Netns, SKIP_LOG_ENV, ScratchBpfFs, require_root, skipped, spawn_in, unique_name,
};
pub use packet::inet_csum;
pub use plugin::{CniCall, CniOutput, run_plugin, spawn_plugin};
pub use reboot::{BootId, PREVIOUS_BOOT_ID};
pub use servers::{EchoServer, Seen, scrape_metrics, tcp_roundtrip, udp_roundtrip};
pub use sweep::{sweep_own, sweep_stale};
pub use topology::{
    ExternalLink, LAN_HOST_IP, LAN_IF, LAN_NODE_IP, NODE_BACKUP_IP, NODE_L3_IP, UPLINK_BACKUP,
    WAN_BACKUP_ROUTER_IP, WAN_L3_IP,
};
pub use wired::{POD_BRIDGE, POD_GATEWAY, POD_IF, POD_PREFIX_LEN, mac_text, parse_mac};

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Node-side uplink address in every world.
pub const NODE_UPLINK_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// Wan-side router address in every world.
pub const WAN_ROUTER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// An "internet" server address held by the wan namespace.
pub const WAN_SERVER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// A server behind a smaller-MTU link, reached through the wan (see [`World::add_far`]).
pub const FAR_SERVER_IP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
/// MTU of the link to [`FAR_SERVER_IP`].
pub const FAR_MTU: u32 = 1280;
/// The node's uplink interface name.
pub const UPLINK: &str = "uplink0";
/// The primary uplink's interface in the wan namespace.
pub const WAN_UPLINK_IF: &str = "wan0";
/// The node's layer-3 (TUN, raw-IP) uplink interface ([`World::add_l3_uplink`]).
pub const L3_UPLINK: &str = "wwan0";
/// The layer-3 uplink's TUN device in the wan namespace.
pub const WAN_L3_IF: &str = "tun1";
/// The pin root's name under the world's bpffs mount (as `smarter-cni` under `/sys/fs/bpf`).
pub const PIN_ROOT: &str = "smarter-cni";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A namespace world; see the module docs.
pub struct World {
    // Field order is drop order: pods first, then the extras (tayga killed), node and wan,
    // then the bpffs and files.
    pods: Vec<Netns>,
    far: Option<Netns>,
    extras: topology::Extras,
    node: Netns,
    wan: Option<Netns>,
    bpffs: BpfFs,
    pin_root: PathBuf,
    dir: tempfile::TempDir,
    prefix: String,
}

impl World {
    /// Builds a world named after `label` (for readable names in `ip netns`).
    ///
    /// # Errors
    /// Any failure of `ip`, `mount` or the file system; what was made is removed.
    pub fn new(label: &str) -> io::Result<Self> {
        Self::build(label, true)
    }

    /// A world without a wan: the `node` namespace with only `lo`, pods, the bpffs and the
    /// directories (for tests of what happens on the node's own links). [`World::wan`] panics
    /// and what needs the wan ([`World::add_far`], the uplinks of [`topology`]) fails.
    ///
    /// # Errors
    /// As [`World::new`].
    pub fn without_wan(label: &str) -> io::Result<Self> {
        Self::build(label, false)
    }

    fn build(label: &str, with_wan: bool) -> io::Result<Self> {
        sweep_stale();
        let prefix = format!(
            "smt-{}-{}-{label}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()?;
        let bpffs = BpfFs::mount(&dir.path().join("bpffs"))?;
        let node = Netns::create(&format!("{prefix}-node"))?;
        let wan = if with_wan {
            Some(Netns::create(&format!("{prefix}-wan"))?)
        } else {
            None
        };
        let world = Self {
            pods: Vec::new(),
            far: None,
            extras: topology::Extras::default(),
            node,
            wan,
            pin_root: bpffs.path().join(PIN_ROOT),
            bpffs,
            dir,
            prefix,
        };
        world.wire_uplink()?;
        world.wire_wan_server()?;
        Ok(world)
    }

    fn wire_uplink(&self) -> io::Result<()> {
        let Some(wan) = &self.wan else {
            return Ok(());
        };
        let (n, w) = (self.node.name(), wan.name());
        ns::ip(&[
            "-n", n, "link", "add", UPLINK, "type", "veth", "peer", "name", "wan0", "netns", w,
        ])?;
        ns::ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{NODE_UPLINK_IP}/24"),
            "dev",
            UPLINK,
        ])?;
        ns::ip(&["-n", n, "link", "set", UPLINK, "up"])?;
        ns::ip(&[
            "-n",
            n,
            "route",
            "add",
            "default",
            "via",
            &WAN_ROUTER_IP.to_string(),
        ])?;
        ns::ip(&[
            "-n",
            w,
            "addr",
            "add",
            &format!("{WAN_ROUTER_IP}/24"),
            "dev",
            "wan0",
        ])?;
        ns::ip(&["-n", w, "link", "set", "wan0", "up"])?;
        Ok(())
    }

    /// The wan's server address (on its loopback, which outlives a [`World::reboot`]).
    fn wire_wan_server(&self) -> io::Result<()> {
        let Some(wan) = &self.wan else {
            return Ok(());
        };
        ns::ip(&[
            "-n",
            wan.name(),
            "addr",
            "add",
            &format!("{WAN_SERVER_IP}/24"),
            "dev",
            "lo",
        ])
    }

    /// Adds a `far` namespace behind the wan over a link with MTU [`FAR_MTU`] holding
    /// [`FAR_SERVER_IP`], so full-size packets from the node side make the wan router send
    /// ICMP "fragmentation needed" (PMTU discovery).
    ///
    /// # Errors
    /// When `ip` fails, or the world has no wan.
    pub fn add_far(&mut self) -> io::Result<&Netns> {
        let wan = self.wan_ns()?;
        let far = Netns::create(&format!("{}-far", self.prefix))?;
        let (w, f) = (wan.name(), far.name());
        let mtu = FAR_MTU.to_string();
        ns::ip(&[
            "-n", w, "link", "add", "wan1", "mtu", &mtu, "type", "veth", "peer", "name", "far0",
            "mtu", &mtu, "netns", f,
        ])?;
        ns::ip(&["-n", w, "addr", "add", "100.64.0.1/24", "dev", "wan1"])?;
        ns::ip(&["-n", w, "link", "set", "wan1", "up"])?;
        ns::ip(&[
            "-n",
            f,
            "addr",
            "add",
            &format!("{FAR_SERVER_IP}/24"),
            "dev",
            "far0",
        ])?;
        ns::ip(&["-n", f, "link", "set", "far0", "up"])?;
        ns::ip(&["-n", f, "route", "add", "default", "via", "100.64.0.1"])?;
        wan.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        self.far = Some(far);
        Ok(self.far.as_ref().expect("just set"))
    }

    /// Creates an empty pod namespace (only `lo`, down) and returns it.
    ///
    /// # Errors
    /// When `ip netns add` fails.
    pub fn add_pod_ns(&mut self, name: &str) -> io::Result<&Netns> {
        let ns = Netns::create(&format!("{}-{name}", self.prefix))?;
        self.pods.push(ns);
        Ok(self.pods.last().expect("just pushed"))
    }

    /// Deletes a pod namespace early (as a runtime does after DEL, or to simulate it vanishing).
    pub fn remove_pod_ns(&mut self, path: &Path) {
        self.pods.retain(|p| p.path() != path);
    }

    /// The pod namespace created as `name` by [`World::add_pod_ns`].
    #[must_use]
    pub fn pod(&self, name: &str) -> Option<&Netns> {
        let full = format!("{}-{name}", self.prefix);
        self.pods.iter().find(|p| p.name() == full)
    }

    /// The node namespace.
    #[must_use]
    pub fn node(&self) -> &Netns {
        &self.node
    }

    /// The wan namespace.
    ///
    /// # Panics
    /// In a world made by [`World::without_wan`].
    #[must_use]
    pub fn wan(&self) -> &Netns {
        self.wan
            .as_ref()
            .expect("a world made by World::without_wan has no wan")
    }

    /// The wan namespace, or an error saying the world has none.
    fn wan_ns(&self) -> io::Result<&Netns> {
        self.wan
            .as_ref()
            .ok_or_else(|| io::Error::other("this world has no wan (World::without_wan)"))
    }

    /// The world's `bpffsDir`: [`PIN_ROOT`] under the private bpffs mount, which does not exist
    /// until the plugin, the agent or the installer creates it — the layout of a fresh node,
    /// where `/sys/fs/bpf` is bpffs and `/sys/fs/bpf/smarter-cni` is not there yet.
    #[must_use]
    pub fn bpffs_dir(&self) -> &Path {
        &self.pin_root
    }

    /// The world's private bpffs mount point (plays the node's `/sys/fs/bpf`).
    #[must_use]
    pub fn bpffs_mount(&self) -> &Path {
        self.bpffs.path()
    }

    /// A private directory for `dataDir`.
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A private directory for `stateDir`.
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A network configuration for this world with the given cniVersion and the world's
    /// private directories; callers add or override keys.
    #[must_use]
    pub fn netconf(&self, cni_version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "name": "smartnet",
            "type": "smarter-cni",
            "dataDir": self.data_dir(),
            "stateDir": self.state_dir(),
            "bpffsDir": self.bpffs_dir(),
        })
    }
}
