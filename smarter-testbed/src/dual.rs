//! A dual-stack uplink ([`World::add_ipv6`]): the primary uplink keeps its IPv4 and gains a
//! global IPv6 address and the node an IPv6 default route, as on an access network that
//! hands out both; the wan holds an IPv6 "server on the internet" beside its IPv4 one.

use std::io;
use std::net::Ipv6Addr;

use super::{UPLINK, WAN_UPLINK_IF, World, ns};

/// The node's global IPv6 address on the dual-stack uplink (`/64`).
pub const NODE_DUAL_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The wan router's address on it, the node's IPv6 default gateway.
pub const WAN_DUAL_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// "A server on the internet" over IPv6, on the wan's loopback.
pub const WAN_SERVER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1);
/// Prefix length of the dual-stack uplink's addresses.
pub const DUAL_PREFIX_LEN: u8 = 64;

impl World {
    /// Gives the primary uplink IPv6 besides its IPv4: [`NODE_DUAL_IP6`] ↔ [`WAN_DUAL_IP6`]
    /// (`/64`, `nodad`), the node an IPv6 default route via the wan, the wan
    /// [`WAN_SERVER_IP6`] on its loopback. IPv6 is enabled in both namespaces; the node does
    /// not forward IPv6 (a datapath that needs the kernel to forward turns it on itself). A
    /// [`World::reboot`] wires it again.
    ///
    /// # Errors
    /// When `ip` or `sysctl` fails, the world has no wan, or it already has an IPv6-only
    /// uplink ([`World::add_nat64`]).
    pub fn add_ipv6(&mut self) -> io::Result<()> {
        if self.has_nat64() {
            return Err(io::Error::other(
                "the uplink is IPv6-only already (add_nat64)",
            ));
        }
        self.wire_dual()?;
        self.extras.dual = true;
        Ok(())
    }

    /// Whether the primary uplink is dual-stack ([`World::add_ipv6`]).
    #[must_use]
    pub fn has_ipv6(&self) -> bool {
        self.extras.dual
    }

    /// The dual-stack uplink's IPv6 half (after [`World::add_ipv6`] and after a boot).
    pub(crate) fn wire_dual(&self) -> io::Result<()> {
        let wan = self.wan_ns()?;
        for ns in [&self.node, wan] {
            ns.exec(&[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.default.disable_ipv6=0",
            ])?;
        }
        wan.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
        let (n, w) = (self.node.name(), wan.name());
        for (ns, dev, me) in [(n, UPLINK, NODE_DUAL_IP6), (w, WAN_UPLINK_IF, WAN_DUAL_IP6)] {
            let addr = format!("{me}/{DUAL_PREFIX_LEN}");
            ns::ip(&["-n", ns, "addr", "replace", &addr, "dev", dev, "nodad"])?;
        }
        let server = format!("{WAN_SERVER_IP6}/128");
        ns::ip(&["-n", w, "addr", "replace", &server, "dev", "lo"])?;
        let gw = WAN_DUAL_IP6.to_string();
        ns::ip(&[
            "-n", n, "-6", "route", "replace", "default", "via", &gw, "dev", UPLINK,
        ])
    }
}

/// The nft table in which [`watch_ula`] counts.
const ULA_WATCH: &str = "smarter_ula_watch";

/// Starts counting, in `ns` (the wan's side of an uplink), the IPv6 packets with a ULA source
/// (`fc00::/7`) that arrive on `ifname`: pods' addresses that crossed the link un-NATed. The
/// table goes with the namespace. Read it with [`ula_counted`].
///
/// # Errors
/// When `nft` is missing or refuses a command.
pub fn watch_ula(ns: &crate::Netns, ifname: &str) -> io::Result<()> {
    let rule = format!("add rule ip6 {ULA_WATCH} in iifname {ifname} ip6 saddr fc00::/7 counter");
    for cmd in [
        format!("add table ip6 {ULA_WATCH}"),
        format!("add chain ip6 {ULA_WATCH} in {{ type filter hook prerouting priority -300 ; }}"),
        rule,
    ] {
        let mut args = vec!["nft"];
        args.extend(cmd.split(' '));
        let out = ns.exec(&args)?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "nft {cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(())
}

/// The packets [`watch_ula`] counted in `ns` so far.
///
/// # Panics
/// When the counter cannot be listed (no [`watch_ula`] in `ns`).
#[must_use]
pub fn ula_counted(ns: &crate::Netns) -> u64 {
    let out = ns
        .exec(&["nft", "list", "chain", "ip6", ULA_WATCH, "in"])
        .expect("nft list");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let at = text.find("packets ").expect("a counter") + "packets ".len();
    text[at..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a packet count")
}
