//! Links: bridge, veth pairs, bridge ports, up/down, namespaces.

use std::net::IpAddr;

use futures::TryStreamExt as _;
use ipnetwork::Ipv4Network;
use nix::errno::Errno;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourState};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth};

use super::{Netlink, NetlinkError, NetnsFile, is_errno, request};

/// What the verbs need to know about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address (empty for devices without one).
    pub mac: Vec<u8>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Index of the controller (bridge) the interface is attached to.
    pub controller: Option<u32>,
    /// Link kind (`bridge`, `veth`, ...), when the kernel reports one.
    pub kind: Option<String>,
}

impl LinkInfo {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut info = LinkInfo {
            index: msg.header.index,
            name: String::new(),
            mac: Vec::new(),
            mtu: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            controller: None,
            kind: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => info.name.clone_from(n),
                LinkAttribute::Address(a) => info.mac.clone_from(a),
                LinkAttribute::Mtu(m) => info.mtu = *m,
                LinkAttribute::Controller(c) => info.controller = Some(*c),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let NlLinkInfo::Kind(k) = i {
                            info.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        info
    }

    /// The MAC as `aa:bb:cc:dd:ee:ff`.
    #[must_use]
    pub fn mac_string(&self) -> String {
        format_mac(&self.mac)
    }
}

/// Formats a hardware address as lower-case colon-separated hex.
#[must_use]
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Netlink {
    /// Looks an interface up by name; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// [`NetlinkError::Request`] for any failure other than "no such device".
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut req = self
            .handle()
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match req.try_next().await {
            Ok(Some(msg)) => Ok(Some(LinkInfo::from_message(&msg))),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, Errno::ENODEV) => Ok(None),
            Err(e) => Err(request(format!("get link {name}"))(e)),
        }
    }

    /// Looks an interface up by index (one request, not a dump of every link: a node with
    /// hundreds of pods has hundreds of veths); `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// [`NetlinkError::Request`] for any failure other than "no such device".
    pub async fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut req = self.handle().link().get().match_index(index).execute();
        match req.try_next().await {
            Ok(Some(msg)) => Ok(Some(LinkInfo::from_message(&msg))),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, Errno::ENODEV) => Ok(None),
            Err(e) => Err(request(format!("get link {index}"))(e)),
        }
    }

    /// All interfaces in this namespace.
    ///
    /// # Errors
    /// [`NetlinkError::Request`] when the dump fails.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let msgs: Vec<LinkMessage> = self
            .handle()
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("dump links"))?;
        Ok(msgs.iter().map(LinkInfo::from_message).collect())
    }

    /// Creates the bridge `name` if it does not exist (racing creators are fine) with the
    /// fixed MAC `mac` (a bridge without one takes the lowest port MAC, which changes as pods
    /// come and go and would break the datapath's MAC rewrites), brings it up and returns it.
    /// An existing interface of another kind is an error.
    ///
    /// # Errors
    /// [`NetlinkError::WrongKind`] or a refused request.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        mtu: u32,
        mac: [u8; 6],
    ) -> Result<LinkInfo, NetlinkError> {
        if self.link_by_name(name).await?.is_none() {
            let msg = LinkBridge::new(name)
                .mtu(mtu)
                .address(mac.to_vec())
                .up()
                .build();
            match self.handle().link().add(msg).execute().await {
                Ok(()) => {}
                Err(e) if is_errno(&e, Errno::EEXIST) => {}
                Err(e) => return Err(request(format!("create bridge {name}"))(e)),
            }
        }
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_string()))?;
        if link.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::WrongKind {
                name: name.to_string(),
                expected: "bridge",
                found: link.kind.unwrap_or_else(|| "device of unknown kind".into()),
            });
        }
        if !link.up {
            self.set_up(link.index, name).await?;
        }
        Ok(link)
    }

    /// Creates a veth pair whose host end `host` stays here and whose peer is created
    /// directly inside `peer_ns` as `peer` (so the pod-side name never clashes with an
    /// interface of this namespace), both with `mtu`, the peer with `peer_mac` if given.
    ///
    /// # Errors
    /// A refused request; `EEXIST` means the host or the peer name is taken.
    pub async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_ns: &NetnsFile,
        mtu: u32,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<(), NetlinkError> {
        let mut peer_msg = LinkUnspec::new_with_name(peer)
            .mtu(mtu)
            .setns_by_fd(peer_ns.raw_fd());
        if let Some(mac) = peer_mac {
            peer_msg = peer_msg.address(mac.to_vec());
        }
        let msg = LinkVeth::new(host, peer)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())))
            .build();
        self.handle()
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(request(format!("create veth {host} (peer {peer})")))
    }

    /// Brings an interface up.
    ///
    /// # Errors
    /// A refused request.
    pub async fn set_up(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.handle()
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(request(format!("set {name} up")))
    }

    /// Attaches `index` to the bridge `bridge_index`, sets hairpin mode, turns off learning
    /// and unknown-unicast flooding on the port (the bridge never learns a MAC from a pod, and
    /// frames to a MAC it was not told of reach no pod: [`Self::add_port_mac`] tells it the
    /// pod's), and brings it up.
    ///
    /// # Errors
    /// A refused request.
    pub async fn attach_to_bridge(
        &self,
        index: u32,
        name: &str,
        bridge_index: u32,
        hairpin: bool,
    ) -> Result<(), NetlinkError> {
        self.handle()
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .controller(bridge_index)
                    .build(),
            )
            .execute()
            .await
            .map_err(request(format!("attach {name} to bridge")))?;
        let port: LinkMessage = LinkBridgePort::new(index)
            .hairpin(hairpin)
            .learning(false)
            .flood(false)
            .build();
        self.handle()
            .link()
            .set_port(port)
            .execute()
            .await
            .map_err(request(format!(
                "set hairpin={hairpin}, learning and flooding off on {name}"
            )))?;
        self.set_up(index, name).await
    }

    /// Tells the bridge that `mac` is behind its port `index` (`bridge fdb replace <mac> dev
    /// <name> master static`): with learning off on every pod port, frames to a pod reach
    /// exactly its port. The entry goes with the port.
    ///
    /// # Errors
    /// A refused request.
    pub async fn add_port_mac(
        &self,
        index: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<(), NetlinkError> {
        self.handle()
            .neighbours()
            .add_bridge(index, &mac)
            .flags(NeighbourFlags::Controller)
            .state(NeighbourState::Noarp)
            .replace()
            .execute()
            .await
            .map_err(request(format!(
                "add static fdb entry {} on {name}",
                format_mac(&mac)
            )))
    }

    /// Deletes an interface by name; success when it is already gone.
    ///
    /// # Errors
    /// A refused request other than "no such device".
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(false);
        };
        match self.handle().link().del(link.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, Errno::ENODEV) => Ok(false),
            Err(e) => Err(request(format!("delete {name}"))(e)),
        }
    }

    /// Adds `addr` to an interface; success when it is already there.
    ///
    /// # Errors
    /// A refused request other than "exists".
    pub async fn ensure_address(
        &self,
        index: u32,
        name: &str,
        addr: Ipv4Network,
    ) -> Result<(), NetlinkError> {
        match self
            .handle()
            .address()
            .add(index, IpAddr::V4(addr.ip()), addr.prefix())
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, Errno::EEXIST) => Ok(()),
            Err(e) => Err(request(format!("add address {addr} to {name}"))(e)),
        }
    }

    /// The IPv4 addresses on an interface.
    ///
    /// # Errors
    /// A refused request.
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Network>, NetlinkError> {
        let msgs: Vec<_> = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(request(format!("list addresses of ifindex {index}")))?;
        let mut out = Vec::new();
        for m in msgs {
            for a in &m.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = a
                    && let Ok(net) = Ipv4Network::new(*ip, m.header.prefix_len)
                {
                    out.push(net);
                }
            }
        }
        Ok(out)
    }
}
