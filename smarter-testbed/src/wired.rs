//! Pods wired by hand, without the plugin, for the tests of a datapath's own engine (the eBPF
//! maps and programs, the nftables tables) that the plugin would otherwise drive: the pods'
//! bridge as the plugin makes it ([`World::add_pod_bridge`]), a pod namespace joined to the
//! node by a veth ([`World::wire_pod`]), and a pod on the bridge with an address of the pod
//! subnet ([`World::add_bridged_pod`]).

use std::io;
use std::net::Ipv4Addr;

use super::{Netns, World, ns};

/// The pods' bridge in the node (as the plugin names it by default).
pub const POD_BRIDGE: &str = "smartnet0";
/// The pods' gateway: the bridge's address.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);
/// The prefix length of the pod subnet `172.39.0.0/16`.
pub const POD_PREFIX_LEN: u8 = 16;
/// A pod's interface.
pub const POD_IF: &str = "eth0";

/// `02:00:…` as `ip` writes a MAC address.
#[must_use]
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A MAC address written as `ip` writes it; `None` when `text` is not one.
#[must_use]
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

impl Netns {
    /// The MAC address of `dev` in this namespace.
    ///
    /// # Errors
    /// When `ip` fails or `dev` has no Ethernet address.
    pub fn mac(&self, dev: &str) -> io::Result<[u8; 6]> {
        let out = self.exec(&["ip", "-o", "link", "show", dev])?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .and_then(parse_mac)
            .ok_or_else(|| io::Error::other(format!("{dev} has no Ethernet address: {text}")))
    }
}

impl World {
    /// The pods' bridge [`POD_BRIDGE`] in the node with [`POD_GATEWAY`]`/16`, up, and IPv4
    /// forwarding on in the node, as the plugin leaves a node.
    ///
    /// # Errors
    /// When `ip` or `sysctl` fails.
    pub fn add_pod_bridge(&self) -> io::Result<()> {
        let n = self.node.name();
        ns::ip(&["-n", n, "link", "add", POD_BRIDGE, "type", "bridge"])?;
        let gw = format!("{POD_GATEWAY}/{POD_PREFIX_LEN}");
        ns::ip(&["-n", n, "addr", "add", &gw, "dev", POD_BRIDGE])?;
        ns::ip(&["-n", n, "link", "set", POD_BRIDGE, "up"])?;
        self.node
            .exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .map(drop)
    }

    /// Joins the pod namespace `pod` ([`World::add_pod_ns`]) to the node by a veth: `host_if`
    /// in the node, [`POD_IF`] with `mac` in the pod, both up, no address. Again after
    /// `host_if` was deleted, it wires the same pod anew (a pod restarted without DEL).
    ///
    /// # Errors
    /// When `ip` fails or the world has no pod `pod`.
    pub fn wire_pod(&self, pod: &str, host_if: &str, mac: [u8; 6]) -> io::Result<()> {
        let p = self
            .pod(pod)
            .ok_or_else(|| io::Error::other(format!("no pod namespace {pod}")))?
            .name();
        let n = self.node.name();
        let mac = mac_text(mac);
        ns::ip(&[
            "-n", n, "link", "add", host_if, "type", "veth", "peer", "name", POD_IF, "address",
            &mac, "netns", p,
        ])?;
        ns::ip(&["-n", n, "link", "set", host_if, "up"])?;
        ns::ip(&["-n", p, "link", "set", POD_IF, "up"])
    }

    /// A pod namespace `pod` on the pods' bridge ([`World::add_pod_bridge`] first): wired as
    /// [`World::wire_pod`] does, `host_if` a port of [`POD_BRIDGE`], the pod at
    /// `ip`/[`POD_PREFIX_LEN`] with a default route via [`POD_GATEWAY`].
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn add_bridged_pod(
        &mut self,
        pod: &str,
        host_if: &str,
        mac: [u8; 6],
        ip: Ipv4Addr,
    ) -> io::Result<&Netns> {
        self.add_pod_ns(pod)?;
        self.wire_pod(pod, host_if, mac)?;
        let n = self.node.name();
        ns::ip(&["-n", n, "link", "set", host_if, "master", POD_BRIDGE])?;
        let ns = self.pod(pod).expect("just added");
        let addr = format!("{ip}/{POD_PREFIX_LEN}");
        ns::ip(&["-n", ns.name(), "addr", "add", &addr, "dev", POD_IF])?;
        let gw = POD_GATEWAY.to_string();
        ns::ip(&["-n", ns.name(), "route", "add", "default", "via", &gw])?;
        Ok(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::{mac_text, parse_mac};

    #[test]
    fn mac_text_and_back() {
        let mac = [0x02, 0, 0, 0x5e, 0, 0x1f];
        assert_eq!(mac_text(mac), "02:00:00:5e:00:1f");
        assert_eq!(parse_mac("02:00:00:5e:00:1f"), Some(mac));
        assert_eq!(parse_mac("02:00:00:5e:00"), None);
        assert_eq!(parse_mac("02:00:00:5e:00:zz"), None);
    }
}
