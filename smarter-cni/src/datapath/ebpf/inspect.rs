//! What operators ask of a running datapath (`smarter-bpfctl`, the agent's metrics): how full
//! each map is, where the programs are attached and how, and careful conntrack removal.

use crate::datapath::types::MapFill;
use std::net::Ipv4Addr;

use smarter_common::{CtKey, CtValue, maps, progs};

use super::error::EbpfError;
use super::handle::EbpfDatapath;
use super::{
    attach,
    uplink::{LOCAL_LINK, LOOPBACK},
};

/// One program hook: a TC program on an interface (the CNI "attachment" is the pod's record,
/// [`crate::state::Attachment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookView {
    /// Interface name.
    pub ifname: String,
    /// Program name.
    pub program: &'static str,
    /// Always `ingress` (every program runs there).
    pub direction: &'static str,
    /// `tcx`, `netlink`, or `none` when expected but not attached.
    pub mode: &'static str,
}

impl EbpfDatapath {
    /// Entries and capacity of every keyed map.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be read.
    pub fn map_fill(&self) -> Result<Vec<MapFill>, EbpfError> {
        let capacity = |name: &'static str| -> Result<u32, EbpfError> {
            let data = aya::maps::MapData::from_pin(self.pins.map(name))
                .map_err(|e| EbpfError::map(name, "open pin", e))?;
            data.info()
                .map(|i| i.max_entries())
                .map_err(|e| EbpfError::map(name, "info", e))
        };
        // The fragment map is only ever read here: opened from its pin for the count.
        let frag = {
            let data = aya::maps::MapData::from_pin(self.pins.map(maps::FRAG))
                .map_err(|e| EbpfError::map(maps::FRAG, "open pin", e))?;
            let map: aya::maps::HashMap<_, smarter_common::FragKey, smarter_common::FragValue> =
                aya::maps::HashMap::try_from(
                    aya::maps::Map::from_map_data(data)
                        .map_err(|e| EbpfError::map(maps::FRAG, "open", e))?,
                )
                .map_err(|e| EbpfError::map(maps::FRAG, "open", e))?;
            map.keys().count()
        };
        let counts = {
            let m = self.lock_maps();
            [
                (maps::ENDPOINTS, m.endpoints.keys().count()),
                (maps::EP_IFACES, m.ifaces.keys().count()),
                (maps::CT_OUT, m.ct_out.keys().count()),
                (maps::CT_IN, m.ct_in.keys().count()),
                (maps::HOSTPORTS, m.hostports.keys().count()),
                (maps::DENY, m.deny.keys().count()),
                (maps::FRAG, frag),
                (maps::ENDPOINTS6, m.endpoints6.keys().count()),
                (maps::CT6_OUT, m.ct6_out.keys().count()),
                (maps::CT6_IN, m.ct6_in.keys().count()),
                (maps::HOSTPORTS6, m.hostports6.keys().count()),
            ]
        };
        counts
            .into_iter()
            .map(|(map, entries)| {
                Ok(MapFill {
                    map,
                    entries,
                    capacity: capacity(map)?,
                })
            })
            .collect()
    }

    /// Where the programs run: every endpoint's host veth, every external interface (ingress
    /// program and egress backstop), the loopback.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] or [`EbpfError::Tc`] when the maps or filters cannot be read.
    pub fn attachments(&self) -> Result<Vec<HookView>, EbpfError> {
        let mut wanted: Vec<(String, &'static str, &'static str, String)> = self
            .endpoints()?
            .into_iter()
            .map(|e| (e.host_ifname.clone(), progs::POD, "ingress", e.host_ifname))
            .collect();
        // Every external interface: its ingress program and its egress backstop.
        for up in self.uplinks()? {
            let Some(name) = up.name else { continue };
            let (ingress, egress) = super::external::programs(up.l3);
            let (inp, outp) = (
                super::external::in_pin(up.ifindex),
                super::external::out_pin(up.ifindex),
            );
            wanted.push((name.clone(), ingress, "ingress", inp));
            wanted.push((name, egress, "egress", outp));
        }
        wanted.push((
            LOOPBACK.to_string(),
            progs::LOCAL,
            "ingress",
            LOCAL_LINK.to_string(),
        ));
        let mut out = Vec::new();
        for (ifname, program, direction, pin) in wanted {
            let hook = if direction == "egress" {
                attach::Hook::egress(&ifname, program)
            } else {
                attach::Hook::ingress(&ifname, program)
            };
            let mode = if super::pins::exists(&self.pins.link(&pin))? {
                "tcx"
            } else if attach::is_attached_named(hook)? {
                "netlink"
            } else {
                "none"
            };
            out.push(HookView {
                ifname,
                program,
                direction,
                mode,
            });
        }
        Ok(out)
    }

    /// Removes the flows (both conntrack directions) for which `keep` is false; returns how
    /// many. For operators' careful flushes (`smarter-bpfctl ct flush`).
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be read or an entry cannot be removed.
    pub fn ct_remove(
        &self,
        doomed: impl Fn(u8, Ipv4Addr, u16, Ipv4Addr, u16) -> bool,
    ) -> Result<usize, EbpfError> {
        self.ct_remove_where(|k: &CtKey, _v: &CtValue| {
            doomed(
                k.proto,
                Ipv4Addr::from(k.a.to_ne_bytes()),
                u16::from_be(k.a_port),
                Ipv4Addr::from(k.b.to_ne_bytes()),
                u16::from_be(k.b_port),
            )
        })
    }
}
