//! The node-wide settings of the datapath: the config record (NAT ports and timeouts, bridge),
//! the loopback attachment (`links/local`), deny ranges and the per-verdict counters. The
//! external interfaces are [`super::external`]'s.

use std::net::Ipv4Addr;

use aya::maps::lpm_trie::Key;
use ipnetwork::Ipv4Network;
use smarter_common::{NetConfig, Verdict, maps, progs};

use super::attach::Hook;
use super::error::EbpfError;
use super::handle::EbpfDatapath;
use super::{attach, handle::addr};
use crate::datapath::types::AttachMode;
use smarter_common::CtTimeouts;

/// Pin name of the loopback's TCX link under `links/`.
pub(super) const LOCAL_LINK: &str = "local";
/// The node's loopback, where `smarter_local` runs.
pub(super) const LOOPBACK: &str = "lo";

impl EbpfDatapath {
    /// Writes the NAT port range (host byte order, inclusive) and the idle timeouts after which
    /// the kernel treats a flow as new into the config map (read-modify-write). Timeouts are
    /// whole seconds (rounded up; zero disables the kernel-side check).
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the config map
    /// cannot be read or written. An empty or inverted range falls back to the default
    /// ([`smarter_common::ct::NAT_PORT_MIN`]..=[`smarter_common::ct::NAT_PORT_MAX`]).
    pub fn set_nat(&self, ports: (u16, u16), timeouts: &CtTimeouts) -> Result<(), EbpfError> {
        self.update_config(|c| {
            c.nat_port_min = ports.0;
            c.nat_port_max = ports.1;
            c.ct_timeout_s = timeouts.slots();
        })
    }

    /// Writes the bridge's ifindex and MAC (the source MAC of packets delivered into pods) into
    /// the config map (read-modify-write).
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the config map cannot be read or written.
    pub fn set_bridge(&self, ifindex: u32, mac: [u8; 6]) -> Result<(), EbpfError> {
        self.update_config(|c| {
            c.bridge_ifindex = ifindex;
            c.bridge_mac = mac;
        })
    }

    pub(super) fn update_config(&self, f: impl FnOnce(&mut NetConfig)) -> Result<(), EbpfError> {
        let maps_guard = &mut *self.lock_maps();
        let current = maps_guard
            .config
            .get(&maps::CONFIG_INDEX, 0)
            .map_err(|e| EbpfError::map(maps::CONFIG, "read", e))?;
        let mut wanted = current;
        f(&mut wanted);
        if wanted != current {
            maps_guard
                .config
                .set(maps::CONFIG_INDEX, wanted, 0)
                .map_err(|e| EbpfError::map(maps::CONFIG, "write", e))?;
        }
        Ok(())
    }

    /// Attaches `smarter_local` to the loopback's ingress, so the node's own connections to a
    /// hostPort on the uplink address reach the pod. Idempotent; TCX link pinned at
    /// `links/local`.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Program`], [`EbpfError::Tc`] or [`EbpfError::Pin`] when attaching fails.
    pub fn attach_local(&self, mode: AttachMode) -> Result<(), EbpfError> {
        let mut prog = self.program(progs::LOCAL)?;
        let pin = self.pins.link(LOCAL_LINK);
        attach::attach(&mut prog, Hook::ingress(LOOPBACK, progs::LOCAL), mode, &pin)
    }

    /// Detaches `smarter_local` from the loopback. Success when it is not attached.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Pin`] or [`EbpfError::Tc`] when a removal fails.
    pub fn detach_local(&self) -> Result<(), EbpfError> {
        attach::detach(
            Hook::ingress(LOOPBACK, progs::LOCAL),
            &self.pins.link(LOCAL_LINK),
        )
    }

    /// Replaces the deny ranges (destinations pods may never reach) with `cidrs`. New ranges are
    /// inserted before stale ones are removed, so no range is briefly open.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the deny map cannot be read or written (e.g. more than
    /// [`maps::DENY_MAX`] ranges).
    pub fn set_deny(&self, cidrs: &[Ipv4Network]) -> Result<(), EbpfError> {
        let maps_guard = &mut *self.lock_maps();
        let wanted: Vec<(u32, u32)> = cidrs
            .iter()
            .map(|c| (u32::from(c.prefix()), addr(c.network())))
            .collect();
        for &(prefix, net) in &wanted {
            maps_guard
                .deny
                .insert(&Key::new(prefix, net), 1, 0)
                .map_err(|e| EbpfError::map(maps::DENY, "write", e))?;
        }
        let present: Vec<(u32, u32)> = maps_guard
            .deny
            .keys()
            .filter_map(Result::ok)
            .map(|k| (k.prefix_len(), k.data()))
            .collect();
        for key in present.into_iter().filter(|k| !wanted.contains(k)) {
            maps_guard
                .deny
                .remove(&Key::new(key.0, key.1))
                .map_err(|e| EbpfError::map(maps::DENY, "remove", e))?;
        }
        Ok(())
    }

    /// The deny ranges currently in the datapath.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the deny map cannot be read.
    pub fn deny(&self) -> Result<Vec<Ipv4Network>, EbpfError> {
        let maps_guard = self.lock_maps();
        let mut out = Vec::new();
        for key in maps_guard.deny.keys() {
            let key = key.map_err(|e| EbpfError::map(maps::DENY, "read", e))?;
            let ip = Ipv4Addr::from(key.data().to_ne_bytes());
            let prefix = u8::try_from(key.prefix_len()).unwrap_or(32);
            if let Ok(net) = Ipv4Network::new(ip, prefix) {
                out.push(net);
            }
        }
        Ok(out)
    }

    /// Packets and bytes per verdict (summed over CPUs), in [`Verdict::ALL`] order.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the counters cannot be read.
    pub fn verdict_stats(&self) -> Result<Vec<(&'static str, u64, u64)>, EbpfError> {
        let maps_guard = self.lock_maps();
        let mut out = Vec::with_capacity(Verdict::ALL.len());
        for v in Verdict::ALL {
            let per_cpu = maps_guard
                .verdicts
                .get(&(v as u32), 0)
                .map_err(|e| EbpfError::map(maps::VERDICTS, "read", e))?;
            let (packets, bytes) = per_cpu
                .iter()
                .fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes));
            out.push((v.name(), packets, bytes));
        }
        Ok(out)
    }
}
