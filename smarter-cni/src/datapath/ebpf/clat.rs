//! The CLAT in the eBPF datapath ([`crate::datapath::clat`]): its [`maps::CLAT`] entry (the
//! uplink's CLAT address and the NAT64 prefix), the config record's `clat_ifindex` (set by
//! [`EbpfDatapath::set_external`] last, cleared first) and the CLAT address on the uplink, added
//! `/128` without duplicate detection or prefix route so the node answers neighbour discovery
//! for it. The map entry is the address's owner record: an address is removed only where the
//! map says the datapath put it.

use std::io;
use std::net::Ipv6Addr;

use rtnetlink::{
    packet_core::{
        NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    },
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope},
    },
    sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE},
};
use smarter_common::{ClatValue, clat::CLAT_V4, maps};

use super::error::EbpfError;
use super::handle::EbpfDatapath;
use crate::datapath::clat::Clat;

impl EbpfDatapath {
    /// Before the uplinks are served: the CLAT address on its uplink, then its map entry.
    pub(super) fn add_clat(&self, clat: Option<&Clat>) -> Result<(), EbpfError> {
        let Some(c) = clat else { return Ok(()) };
        let value = ClatValue {
            src6: c.addr.octets(),
            pref64: c.pref64_bytes(),
            v4: CLAT_V4,
        };
        address(c.ifindex, c.addr, true).map_err(|source| EbpfError::ClatAddress {
            op: "add",
            addr: c.addr,
            ifindex: c.ifindex,
            source,
        })?;
        let mut m = self.lock_maps();
        if m.clat.get(&c.ifindex, 0).ok() != Some(value) {
            m.clat
                .insert(c.ifindex, value, 0)
                .map_err(|e| EbpfError::map(maps::CLAT, "write", e))?;
            tracing::info!(
                "eBPF datapath: pods' IPv4 leaves {} translated to IPv6 from {} to {}/96 (CLAT)",
                c.name,
                c.addr,
                c.pref64
            );
        }
        Ok(())
    }

    /// After the config record no longer names them: every CLAT entry but `clat`'s, with the
    /// address it put on its uplink.
    pub(super) fn prune_clat(&self, clat: Option<&Clat>) -> Result<(), EbpfError> {
        let stale: Vec<(u32, ClatValue)> = {
            let m = self.lock_maps();
            m.clat
                .iter()
                .filter_map(Result::ok)
                .filter(|(i, v)| clat.is_none_or(|c| c.ifindex != *i || c.addr.octets() != v.src6))
                .collect()
        };
        for (ifindex, v) in stale {
            let addr = Ipv6Addr::from(v.src6);
            address(ifindex, addr, false).map_err(|source| EbpfError::ClatAddress {
                op: "remove",
                addr,
                ifindex,
                source,
            })?;
            let mut m = self.lock_maps();
            match m.clat.remove(&ifindex) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(EbpfError::map(maps::CLAT, "remove", e)),
            }
            tracing::info!("eBPF datapath: the CLAT on ifindex {ifindex} ({addr}) is gone");
        }
        Ok(())
    }

    /// The CLAT entries, for status: uplink ifindex, CLAT address, NAT64 prefix.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read.
    pub fn clats(&self) -> Result<Vec<(u32, Ipv6Addr, Ipv6Addr)>, EbpfError> {
        let m = self.lock_maps();
        let mut out = Vec::new();
        for r in m.clat.iter() {
            let (i, v) = r.map_err(|e| EbpfError::map(maps::CLAT, "read", e))?;
            let mut p = [0u8; 16];
            p[..12].copy_from_slice(&v.pref64);
            out.push((i, Ipv6Addr::from(v.src6), Ipv6Addr::from(p)));
        }
        Ok(out)
    }
}

/// Adds (`add`) or removes `addr/128` on `ifindex` in the calling thread's namespace, by one
/// synchronous netlink request. Adding what is there and removing what is not (or from an
/// interface that is gone) succeed.
fn address(ifindex: u32, addr: Ipv6Addr, add: bool) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet6;
    m.header.prefix_len = 128;
    m.header.scope = AddressScope::Universe;
    m.header.index = ifindex;
    m.attributes.push(AddressAttribute::Address(addr.into()));
    m.attributes.push(AddressAttribute::Local(addr.into()));
    m.attributes.push(AddressAttribute::Flags(
        AddressFlags::Nodad | AddressFlags::Noprefixroute,
    ));
    let (inner, flags) = if add {
        (
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
    } else {
        (
            RouteNetlinkMessage::DelAddress(m),
            NLM_F_REQUEST | NLM_F_ACK,
        )
    };
    let mut msg = NetlinkMessage::from(inner);
    msg.header.flags = flags;
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let (data, _) = socket.recv_from_full()?;
    let reply =
        NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data).map_err(io::Error::other)?;
    match reply.payload {
        NetlinkPayload::Error(e) => match e.code.map(|c| -c.get()) {
            None => Ok(()),
            Some(nix::libc::EEXIST) if add => Ok(()),
            Some(nix::libc::EADDRNOTAVAIL | nix::libc::ENODEV) if !add => Ok(()),
            Some(_) => Err(e.to_io()),
        },
        _ => Ok(()),
    }
}
