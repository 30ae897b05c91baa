//! The `ep_ifaces` map: which endpoint sits behind a pod port (host veth ifindex), so the pod
//! program checks the source MAC of frames that carry no IPv4 source (IPv6) too. An entry is
//! only a pointer: the program trusts it when the endpoint's own entry names the same
//! ifindex, so a stale entry never lets anything through.

use std::net::Ipv4Addr;

use smarter_common::{EndpointKey, maps};

use super::error::EbpfError;
use super::error::is_absent;
use super::handle::EbpfDatapath;
use super::handle::addr;

impl EbpfDatapath {
    /// Points host veth `ifindex` at the endpoint `ip`; returns the entry it replaced, for
    /// [`Self::restore_iface`].
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read or written (e.g. full).
    pub fn set_iface(&self, ifindex: u32, ip: Ipv4Addr) -> Result<Option<Ipv4Addr>, EbpfError> {
        let mut maps = self.lock_maps();
        let before = match maps.ifaces.get(&ifindex, 0) {
            Ok(k) => Some(Ipv4Addr::from(k.octets())),
            Err(e) if is_absent(&e) => None,
            Err(e) => {
                return Err(EbpfError::map(
                    maps::EP_IFACES,
                    format!("read {ifindex}"),
                    e,
                ));
            }
        };
        maps.ifaces
            .insert(ifindex, EndpointKey { addr: addr(ip) }, 0)
            .map_err(|e| EbpfError::map(maps::EP_IFACES, format!("write {ifindex}"), e))?;
        Ok(before)
    }

    /// Puts back what [`Self::set_iface`] replaced (`None`: removes the entry). Failures are
    /// logged: this undoes a failed ADD, which reports its own error.
    pub fn restore_iface(&self, ifindex: u32, before: Option<Ipv4Addr>) {
        let mut maps = self.lock_maps();
        let result = match before {
            Some(ip) => maps
                .ifaces
                .insert(ifindex, EndpointKey { addr: addr(ip) }, 0),
            None => match maps.ifaces.remove(&ifindex) {
                Err(e) if !is_absent(&e) => Err(e),
                _ => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::error!(
                "restoring {} entry of ifindex {ifindex}: {e}",
                maps::EP_IFACES
            );
        }
    }

    /// Removes every entry pointing at `ip` (its current veth and any earlier one) except the
    /// port of an endpoint that holds `ip` now (another attachment's: an address reused after
    /// a reboot), and every entry of an interface that no longer exists (an ADD killed
    /// midway); success when there is none.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read or an entry cannot be removed.
    pub fn remove_ifaces_of(&self, ip: Ipv4Addr) -> Result<(), EbpfError> {
        let want = addr(ip);
        // The port of the endpoint now at `ip`, if any, is its owner's (an address reused
        // after a reboot): its pointer stays.
        let owner = self
            .lock_maps()
            .endpoints
            .get(&EndpointKey { addr: want }, 0)
            .ok()
            .map(|v| v.ifindex);
        self.remove_ifaces_where(|ifindex, key| {
            (key.addr == want && Some(ifindex) != owner) || !exists(ifindex)
        })
    }

    /// Removes the entries of interfaces that no longer exist (the agent's periodic GC).
    ///
    /// # Errors
    ///
    /// As [`Self::remove_ifaces_of`].
    pub fn prune_ifaces(&self) -> Result<(), EbpfError> {
        self.remove_ifaces_where(|ifindex, _| !exists(ifindex))
    }

    fn remove_ifaces_where(
        &self,
        doomed: impl Fn(u32, EndpointKey) -> bool,
    ) -> Result<(), EbpfError> {
        let mut maps = self.lock_maps();
        let mut gone = Vec::new();
        for key in maps.ifaces.keys() {
            let ifindex = key.map_err(|e| EbpfError::map(maps::EP_IFACES, "list", e))?;
            match maps.ifaces.get(&ifindex, 0) {
                Ok(k) if doomed(ifindex, k) => gone.push(ifindex),
                Ok(_) => {}
                Err(e) if is_absent(&e) => {}
                Err(e) => {
                    return Err(EbpfError::map(
                        maps::EP_IFACES,
                        format!("read {ifindex}"),
                        e,
                    ));
                }
            }
        }
        for ifindex in gone {
            match maps.ifaces.remove(&ifindex) {
                Err(e) if !is_absent(&e) => {
                    return Err(EbpfError::map(
                        maps::EP_IFACES,
                        format!("remove {ifindex}"),
                        e,
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// What differs from `ifindex` pointing at `ip` (CHECK): one sentence, or none.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read.
    pub fn check_iface(&self, ifindex: u32, ip: Ipv4Addr) -> Result<Vec<String>, EbpfError> {
        let maps = self.lock_maps();
        match maps.ifaces.get(&ifindex, 0) {
            Ok(k) if k.addr == addr(ip) => Ok(Vec::new()),
            Ok(k) => Ok(vec![format!(
                "ifindex {ifindex} points at {} in map {}, expected {ip}",
                Ipv4Addr::from(k.octets()),
                maps::EP_IFACES
            )]),
            Err(e) if is_absent(&e) => Ok(vec![format!(
                "ifindex {ifindex} ({ip}) is missing from map {}",
                maps::EP_IFACES
            )]),
            Err(e) => Err(EbpfError::map(
                maps::EP_IFACES,
                format!("read {ifindex}"),
                e,
            )),
        }
    }
}

/// Whether interface `ifindex` exists in the calling thread's namespace (the node's).
fn exists(ifindex: u32) -> bool {
    nix::net::if_::if_indextoname(ifindex).is_ok()
}
