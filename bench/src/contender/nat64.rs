//! The contenders' side of the CLAT world ([`Topology::Nat64`](super::Topology::Nat64)): an
//! IPv6-only uplink with the wan's NAT64 (`World::add_nat64`, Debian's tayga in the wan). Pods'
//! IPv4 reaches the wan's IPv4 server only translated to IPv6 on the node:
//!
//! - smarter-ebpf: the eBPF datapath's own CLAT, which turns on by itself on such an uplink
//!   (its `nat64Prefix` is [`PREF64`], see below);
//! - the reference chain: tayga on the node as its CLAT ([`NodeClat`]), the usual Linux recipe
//!   (what a user of the upstream chain would run): the node's IPv4 default route through
//!   tayga's TUN device [`CLAT_IF`], which has [`CLAT_IP4`] (the bridge plugin's `ipMasq`
//!   masquerades pods to it, as to any interface); tayga (`ipv4-addr` [`CLAT_TAYGA_IP4`])
//!   maps [`CLAT_IP4`] to [`CLAT_IP6`], a `/128` of the uplink's `/64` that the node answers
//!   neighbour solicitations for (proxy NDP) and routes into the TUN device, and IPv4
//!   destinations into [`PREF64`];
//! - the limit: pods with IPv6 of their own ([`limit_pod_ip6`]), routed natively by the node
//!   (the wan routes [`LIMIT_PODS6`] back to it), sending to the server's address in
//!   [`PREF64`] themselves: no translation on the node at all, the wan's NAT64 only.
//!
//! Every contender sends to the same NAT64 prefix, [`PREF64`]: the network-specific prefix the
//! wan's tayga translates natively. tayga refuses the well-known prefix `64:ff9b::/96` with the
//! documentation addresses every world uses (RFC 6052 §3.1; the wan's server is 203.0.113.1),
//! so tayga on the node could not use it; the wan maps `64:ff9b::/96` onto [`PREF64`] with a
//! stateful nftables prefix DNAT, which the eBPF CLAT's default prefix would take and the other
//! contenders would not. With one prefix for all, the wan does the same work for each.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use smarter_testbed::nat64::{NAT64_PREFIX_LEN, TAYGA_PREFIX};
use smarter_testbed::{Netns, UPLINK, World};

/// The NAT64 prefix every contender of the CLAT world sends to (see the module docs).
pub const PREF64: Ipv6Addr = TAYGA_PREFIX;
/// tayga-on-the-node's TUN device.
pub const CLAT_IF: &str = "clat";
/// The node's IPv4 address on [`CLAT_IF`]: what pods are masqueraded to (RFC 7335's
/// 192.0.0.1, as the eBPF CLAT's).
pub const CLAT_IP4: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 1);
/// tayga-on-the-node's own IPv4 address (its ICMP errors; answers pings).
pub const CLAT_TAYGA_IP4: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 2);
/// The IPv6 address tayga on the node maps [`CLAT_IP4`] to: a `/128` of the uplink's `/64`.
pub const CLAT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 0x464);
/// The limit's pods' IPv6 addresses (routed, not translated: the wan routes them to the node).
pub const LIMIT_PODS6: &str = "2001:db8:66::/48";

/// `v4` in [`PREF64`] (what the limit's pods send to).
#[must_use]
pub const fn in_pref64(v4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from_bits(PREF64.to_bits() | v4.to_bits() as u128)
}

/// The limit's pod `i`'s IPv6 address (`2001:db8:66:<i>::2/64`; the node's end is `::1`).
#[must_use]
pub fn limit_pod_ip6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x66, i as u16, 0, 0, 0, 2)
}

/// Wires IPv6 on the limit's bare veth `host_if` (node) ↔ `eth0` (pod `i`): an address each,
/// the pod's IPv6 default route via the node.
pub fn wire_limit_pod6(node: &Netns, pod: &Netns, host_if: &str, i: usize) -> anyhow::Result<()> {
    let host6 = Ipv6Addr::new(0x2001, 0xdb8, 0x66, i as u16, 0, 0, 0, 1);
    pod.exec(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=0",
        "net.ipv6.conf.default.disable_ipv6=0",
    ])?;
    let (host_addr, pod_addr) = (format!("{host6}/64"), format!("{}/64", limit_pod_ip6(i)));
    node.exec(&["ip", "addr", "add", &host_addr, "dev", host_if, "nodad"])?;
    pod.exec(&["ip", "addr", "add", &pod_addr, "dev", "eth0", "nodad"])?;
    pod.exec(&[
        "ip",
        "-6",
        "route",
        "add",
        "default",
        "via",
        &host6.to_string(),
    ])?;
    Ok(())
}

/// The limit's plain IPv6 routing: the node forwards, the wan routes [`LIMIT_PODS6`] to it
/// (`node`: the node's IPv6 address on the uplink,
/// [`NODE_UPLINK_IP6`](smarter_testbed::NODE_UPLINK_IP6) on the IPv6-only one).
pub fn route_limit_pods6(world: &World, node: Ipv6Addr) -> anyhow::Result<()> {
    let via = node.to_string();
    world
        .wan()
        .exec(&["ip", "-6", "route", "add", LIMIT_PODS6, "via", &via])?;
    world
        .node()
        .exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
    Ok(())
}

/// tayga on the node as the reference chain's CLAT (see the module docs); killed and waited
/// for on drop, before its world goes.
pub struct NodeClat {
    child: Child,
    log: PathBuf,
}

impl NodeClat {
    /// Configures and starts tayga in `world`'s node namespace (the world has the NAT64
    /// uplink) and waits until it answers a ping from the node at [`CLAT_TAYGA_IP4`].
    ///
    /// # Errors
    ///
    /// When tayga is missing, a command fails, or tayga exits or does not answer (with the
    /// end of its log).
    pub fn start(world: &World) -> anyhow::Result<Self> {
        let tayga = ["/usr/sbin/tayga", "/sbin/tayga", "/usr/bin/tayga"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context("tayga is not installed (apt-get install tayga)")?;
        // In the world's directory (named `smt-<pid>-…`): the testbed's sweep kills a tayga of a
        // run that died, as it does the wan's.
        let dir = world
            .data_dir()
            .parent()
            .context("the world's directory")?
            .join("node-clat");
        fs::create_dir_all(dir.join("data"))?;
        let conf = dir.join("tayga.conf");
        fs::write(
            &conf,
            format!(
                "tun-device {CLAT_IF}\nipv4-addr {CLAT_TAYGA_IP4}\n\
                 prefix {PREF64}/{NAT64_PREFIX_LEN}\nmap {CLAT_IP4} {CLAT_IP6}\ndata-dir {}\n",
                dir.join("data").display()
            ),
        )?;
        let conf = conf.to_string_lossy().into_owned();
        let node = world.node();
        node.exec(&[&tayga.to_string_lossy(), "--mktun", "--config", &conf])?;
        let (v4, v4_32, v6) = (
            CLAT_IP4.to_string(),
            format!("{CLAT_IP4}/32"),
            CLAT_IP6.to_string(),
        );
        let proxy_ndp = format!("net.ipv6.conf.{UPLINK}.proxy_ndp=1");
        for args in [
            &["ip", "link", "set", CLAT_IF, "up"][..],
            &["ip", "addr", "add", &v4_32, "dev", CLAT_IF],
            &[
                "ip", "route", "replace", "default", "dev", CLAT_IF, "src", &v4,
            ],
            &["ip", "-6", "route", "add", &v6, "dev", CLAT_IF],
            &["ip", "-6", "neigh", "add", "proxy", &v6, "dev", UPLINK],
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                &proxy_ndp,
            ],
        ] {
            node.exec(args)
                .with_context(|| format!("node: {}", args.join(" ")))?;
        }
        let log = dir.join("tayga.log");
        let out = fs::File::create(&log)?;
        let child = node
            .command(&tayga)
            .args(["-d", "--config", &conf])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut me = Self { child, log };
        me.await_answer(node)?;
        Ok(me)
    }

    fn await_answer(&mut self, node: &Netns) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let ip = CLAT_TAYGA_IP4.to_string();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("tayga on the node exited ({status}): {}", self.log_tail());
            }
            if node.succeeds(&["ping", "-c", "1", "-W", "1", &ip]) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "tayga on the node does not answer at {ip}: {}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Packets the node's kernel (`node`, its namespace) handed this tayga so far (the TUN
    /// device's transmit count: pods' IPv4 to translate, and the replies' IPv6).
    ///
    /// # Errors
    ///
    /// When `ip` fails or prints no count.
    pub fn packets_in(&self, node: &Netns) -> anyhow::Result<u64> {
        let out = node.exec(&["ip", "-s", "-j", "link", "show", "dev", CLAT_IF])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        v[0]["stats64"]["tx"]["packets"]
            .as_u64()
            .with_context(|| format!("no transmit count of {CLAT_IF}: {v}"))
    }
}

impl Drop for NodeClat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        if let Err(e) = self.child.wait() {
            eprintln!("bench: cannot wait for the node's tayga: {e}");
        }
    }
}
