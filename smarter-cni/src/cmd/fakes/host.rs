//! An in-memory node behind [`Host`]: namespaces keyed by their path (`""` is the node's),
//! each with links, addresses and a default route, kept the way the kernel keeps them (a
//! veth's two ends go together, a link's addresses go with it, indexes are never reused), so
//! the verbs' unit tests assert what is left on the node after each step.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::num::NonZeroI32;
use std::sync::{Arc, Mutex};

use ipnetwork::{Ipv4Network, Ipv6Network};

use crate::cmd::Host;
use crate::cni::{CniError, PortRange};
use crate::netlink::snapshot::Snapshot;
use crate::netlink::{DefaultRoute, LinkInfo, Links, NetlinkError, NetnsFile};

/// The node namespace's key.
pub const NODE: &str = "";

/// One link and what hangs off it.
#[derive(Debug, Clone)]
pub struct FakeLink {
    /// As netlink reports it.
    pub info: LinkInfo,
    /// Its IPv4 addresses.
    pub addrs: Vec<Ipv4Network>,
    /// Its IPv6 addresses.
    pub addrs6: Vec<Ipv6Network>,
    /// The other end of a veth: (namespace, index).
    pub peer: Option<(String, u32)>,
}

/// One namespace.
#[derive(Debug, Clone, Default)]
pub struct FakeNs {
    /// Its links, in creation order.
    pub links: Vec<FakeLink>,
    /// Its default route.
    pub default_route: Option<DefaultRoute>,
    /// Its IPv6 default route: (gateway, oif).
    pub default_route6: Option<(Ipv6Addr, u32)>,
}

/// Everything the fake node holds.
#[derive(Debug, Default)]
pub struct World {
    /// Namespaces by path (`NODE` for the node's).
    pub ns: BTreeMap<String, FakeNs>,
    /// The last interface index handed out.
    pub last_index: u32,
    /// What the uplink decision reads in the node namespace.
    pub uplink: Snapshot,
    /// Sysctl preparations made, by bridge.
    pub prepared: Vec<String>,
    /// Host veths whose sysctls were set.
    pub guarded: Vec<String>,
    /// Static bridge FDB entries: (port index, MAC); they go with their port.
    pub fdb: Vec<(u32, [u8; 6])>,
}

/// The fake node (cheap to clone: every clone is the same node).
#[derive(Debug, Default, Clone)]
pub struct FakeHost(Arc<Shared>);

/// What every clone of a [`FakeHost`] shares.
#[derive(Debug, Default)]
pub struct Shared {
    /// The node's state.
    pub world: Mutex<World>,
    /// Operations to refuse (`create_veth`, `ensure_address`, ...), as `op`, `op@node` or
    /// `op@pod` (any pod namespace).
    pub fail: Mutex<Vec<String>>,
}

impl std::ops::Deref for FakeHost {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FakeHost {
    /// A fresh node with only `lo` in its namespace.
    pub fn new() -> Self {
        let host = FakeHost::default();
        host.world.lock().unwrap().ensure_ns(NODE);
        host
    }

    /// Makes `op` fail from now on (see [`Shared::fail`]).
    pub fn fail_on(&self, op: &str) {
        self.fail.lock().unwrap().push(op.to_owned());
    }

    /// A namespace's links (names, in order); empty when it does not exist.
    pub fn link_names(&self, ns: &str) -> Vec<String> {
        let w = self.world.lock().unwrap();
        w.ns.get(ns)
            .map(|n| n.links.iter().map(|l| l.info.name.clone()).collect())
            .unwrap_or_default()
    }

    /// A copy of one link.
    pub fn link(&self, ns: &str, name: &str) -> Option<FakeLink> {
        let w = self.world.lock().unwrap();
        w.ns.get(ns)?
            .links
            .iter()
            .find(|l| l.info.name == name)
            .cloned()
    }

    /// Changes one link in place (a test breaking what ADD set up).
    pub fn edit(&self, ns: &str, name: &str, f: impl FnOnce(&mut FakeLink)) {
        let mut w = self.world.lock().unwrap();
        let link =
            w.ns.get_mut(ns)
                .and_then(|n| n.links.iter_mut().find(|l| l.info.name == name))
                .unwrap_or_else(|| panic!("no link {name} in {ns:?}"));
        f(link);
    }

    fn check(&self, op: &str, ns: &str) -> Result<(), NetlinkError> {
        let where_ = if ns == NODE { "node" } else { "pod" };
        let fail = self.fail.lock().unwrap();
        if fail
            .iter()
            .any(|f| f == op || *f == format!("{op}@{where_}"))
        {
            return Err(NetlinkError::Request {
                op: format!("{op} (injected)"),
                source: errno(nix::errno::Errno::EPERM),
            });
        }
        Ok(())
    }
}

/// A kernel refusal with `e`.
fn errno(e: nix::errno::Errno) -> rtnetlink::Error {
    let mut msg = rtnetlink::packet_core::ErrorMessage::default();
    msg.code = NonZeroI32::new(-(e as i32));
    rtnetlink::Error::NetlinkError(msg)
}

impl World {
    fn ensure_ns(&mut self, ns: &str) -> &mut FakeNs {
        let fresh = !self.ns.contains_key(ns);
        if fresh {
            self.last_index += 1;
            let lo = self.new_link(self.last_index, "lo", None, Vec::new());
            self.ns.insert(ns.to_owned(), FakeNs::default());
            self.ns.get_mut(ns).expect("inserted").links.push(lo);
        }
        self.ns.get_mut(ns).expect("present")
    }

    fn new_link(&self, index: u32, name: &str, kind: Option<&str>, mac: Vec<u8>) -> FakeLink {
        FakeLink {
            info: LinkInfo {
                index,
                name: name.to_owned(),
                mac,
                mtu: 1500,
                up: false,
                controller: None,
                kind: kind.map(str::to_owned),
            },
            addrs: Vec::new(),
            addrs6: Vec::new(),
            peer: None,
        }
    }

    fn mac(&self) -> Vec<u8> {
        let i = self.last_index.to_be_bytes();
        vec![0x02, 0xfa, i[0], i[1], i[2], i[3]]
    }

    fn link_mut(&mut self, ns: &str, index: u32) -> Option<&mut FakeLink> {
        self.ns
            .get_mut(ns)?
            .links
            .iter_mut()
            .find(|l| l.info.index == index)
    }

    fn remove(&mut self, ns: &str, index: u32) {
        let Some(n) = self.ns.get_mut(ns) else { return };
        let Some(pos) = n.links.iter().position(|l| l.info.index == index) else {
            return;
        };
        let link = n.links.remove(pos);
        self.fdb.retain(|&(port, _)| port != index);
        if n.default_route.as_ref().and_then(|r| r.oif) == Some(index) {
            n.default_route = None;
        }
        if n.default_route6.is_some_and(|(_, oif)| oif == index) {
            n.default_route6 = None;
        }
        if let Some((peer_ns, peer)) = link.peer {
            self.remove(&peer_ns, peer);
        }
    }
}

/// One namespace of a [`FakeHost`].
struct FakeLinks {
    host: FakeHost,
    ns: String,
}

impl FakeLinks {
    fn with<T>(&self, f: impl FnOnce(&mut World, &str) -> T) -> T {
        let mut w = self.host.world.lock().unwrap();
        f(&mut w, &self.ns)
    }

    fn find(&self, name: &str) -> Option<LinkInfo> {
        self.with(|w, ns| {
            w.ns.get(ns)?
                .links
                .iter()
                .find(|l| l.info.name == name)
                .map(|l| l.info.clone())
        })
    }
}

#[async_trait::async_trait(?Send)]
impl Links for FakeLinks {
    async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        self.host.check("link_by_name", &self.ns)?;
        Ok(self.find(name))
    }

    async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        self.host.check("links", &self.ns)?;
        Ok(self.with(|w, ns| w.ns[ns].links.iter().map(|l| l.info.clone()).collect()))
    }

    async fn ensure_bridge(
        &self,
        name: &str,
        mtu: u32,
        mac: [u8; 6],
    ) -> Result<LinkInfo, NetlinkError> {
        self.host.check("ensure_bridge", &self.ns)?;
        if self.find(name).is_none() {
            self.with(|w, ns| {
                w.last_index += 1;
                let mut l = w.new_link(w.last_index, name, Some("bridge"), mac.to_vec());
                l.info.mtu = mtu;
                l.info.up = true;
                w.ns.get_mut(ns).expect("open namespace").links.push(l);
            });
        }
        let link = self.find(name).expect("just made");
        if link.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::WrongKind {
                name: name.into(),
                expected: "bridge",
                found: link.kind.unwrap_or_default(),
            });
        }
        Ok(link)
    }

    async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_ns: &NetnsFile,
        mtu: u32,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<(), NetlinkError> {
        self.host.check("create_veth", &self.ns)?;
        let pod = peer_ns.path().display().to_string();
        let taken = self.find(host).is_some()
            || self.host.link(&pod, peer).is_some()
            || !peer_ns.path().exists();
        if taken {
            return Err(NetlinkError::Request {
                op: format!("create veth {host} (peer {peer})"),
                source: errno(nix::errno::Errno::EEXIST),
            });
        }
        self.with(|w, ns| {
            w.last_index += 1;
            let (h, p) = (w.last_index, w.last_index + 1);
            w.last_index += 1;
            let mut hl = w.new_link(h, host, Some("veth"), w.mac());
            hl.info.mtu = mtu;
            hl.peer = Some((pod.clone(), p));
            let mac = peer_mac.map_or_else(|| w.mac(), |m| m.to_vec());
            let mut pl = w.new_link(p, peer, Some("veth"), mac);
            pl.info.mtu = mtu;
            pl.peer = Some((ns.to_owned(), h));
            w.ns.get_mut(ns).expect("open namespace").links.push(hl);
            w.ensure_ns(&pod).links.push(pl);
        });
        Ok(())
    }

    async fn set_up(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.host.check("set_up", &self.ns)?;
        self.with(|w, ns| w.link_mut(ns, index).map(|l| l.info.up = true))
            .ok_or_else(|| NetlinkError::NoSuchLink(name.into()))
    }

    async fn attach_to_bridge(
        &self,
        index: u32,
        name: &str,
        bridge_index: u32,
        _hairpin: bool,
    ) -> Result<(), NetlinkError> {
        self.host.check("attach_to_bridge", &self.ns)?;
        self.with(|w, ns| {
            w.link_mut(ns, index).map(|l| {
                l.info.controller = Some(bridge_index);
                l.info.up = true;
            })
        })
        .ok_or_else(|| NetlinkError::NoSuchLink(name.into()))
    }

    async fn add_port_mac(&self, index: u32, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.host.check("add_port_mac", &self.ns)?;
        self.with(|w, ns| {
            w.link_mut(ns, index)?;
            w.fdb.retain(|e| *e != (index, mac));
            w.fdb.push((index, mac));
            Some(())
        })
        .ok_or_else(|| NetlinkError::NoSuchLink(name.into()))
    }

    async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        self.host.check("delete_link", &self.ns)?;
        let Some(link) = self.find(name) else {
            return Ok(false);
        };
        self.with(|w, ns| w.remove(ns, link.index));
        Ok(true)
    }

    async fn ensure_address(
        &self,
        index: u32,
        name: &str,
        addr: Ipv4Network,
    ) -> Result<(), NetlinkError> {
        self.host.check("ensure_address", &self.ns)?;
        self.with(|w, ns| {
            w.link_mut(ns, index).map(|l| {
                if !l.addrs.contains(&addr) {
                    l.addrs.push(addr);
                }
            })
        })
        .ok_or_else(|| NetlinkError::NoSuchLink(name.into()))
    }

    async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Network>, NetlinkError> {
        self.host.check("ipv4_addresses", &self.ns)?;
        Ok(self
            .with(|w, ns| w.link_mut(ns, index).map(|l| l.addrs.clone()))
            .unwrap_or_default())
    }

    async fn ensure_default_route(&self, gw: Ipv4Addr, index: u32) -> Result<(), NetlinkError> {
        self.host.check("ensure_default_route", &self.ns)?;
        self.with(|w, ns| {
            w.ns.get_mut(ns).expect("open namespace").default_route = Some(DefaultRoute {
                gateway: Some(gw),
                oif: Some(index),
            });
        });
        Ok(())
    }

    async fn default_route(&self) -> Result<Option<DefaultRoute>, NetlinkError> {
        self.host.check("default_route", &self.ns)?;
        Ok(self.with(|w, ns| w.ns[ns].default_route.clone()))
    }

    async fn uplink_snapshot(&self, _named: &[String]) -> Result<Snapshot, NetlinkError> {
        self.host.check("uplink_snapshot", &self.ns)?;
        Ok(self.with(|w, _| w.uplink.clone()))
    }

    async fn ensure_address6(
        &self,
        index: u32,
        name: &str,
        addr: Ipv6Network,
    ) -> Result<(), NetlinkError> {
        self.host.check("ensure_address6", &self.ns)?;
        self.with(|w, ns| {
            w.link_mut(ns, index).map(|l| {
                if !l.addrs6.contains(&addr) {
                    l.addrs6.push(addr);
                }
            })
        })
        .ok_or_else(|| NetlinkError::NoSuchLink(name.into()))
    }

    async fn ipv6_addresses(&self, index: u32) -> Result<Vec<Ipv6Network>, NetlinkError> {
        self.host.check("ipv6_addresses", &self.ns)?;
        Ok(self
            .with(|w, ns| w.link_mut(ns, index).map(|l| l.addrs6.clone()))
            .unwrap_or_default())
    }

    async fn ensure_default_route6(&self, gw: Ipv6Addr, index: u32) -> Result<(), NetlinkError> {
        self.host.check("ensure_default_route6", &self.ns)?;
        self.with(|w, ns| {
            w.ns.get_mut(ns).expect("open namespace").default_route6 = Some((gw, index));
        });
        Ok(())
    }

    async fn default_route6(&self) -> Result<Option<Ipv6Addr>, NetlinkError> {
        self.host.check("default_route6", &self.ns)?;
        Ok(self.with(|w, ns| w.ns[ns].default_route6.map(|(gw, _)| gw)))
    }
}

impl Host for FakeHost {
    fn node(&self) -> Result<Box<dyn Links>, NetlinkError> {
        self.check("connect", NODE)?;
        Ok(Box::new(FakeLinks {
            host: self.clone(),
            ns: NODE.into(),
        }))
    }

    fn pod(&self, ns: &NetnsFile) -> Result<Box<dyn Links>, NetlinkError> {
        let path = ns.path().display().to_string();
        self.check("connect", &path)?;
        self.world.lock().unwrap().ensure_ns(&path);
        Ok(Box::new(FakeLinks {
            host: self.clone(),
            ns: path,
        }))
    }

    fn prepare(&self, bridge: &str, _nat: PortRange) -> Result<(), CniError> {
        self.world.lock().unwrap().prepared.push(bridge.to_owned());
        Ok(())
    }

    fn prepare_port(&self, port: &str) -> Result<(), CniError> {
        self.world.lock().unwrap().guarded.push(port.to_owned());
        Ok(())
    }

    fn sysctl_drift(&self, _ifname: &str) -> Vec<String> {
        Vec::new()
    }
}
