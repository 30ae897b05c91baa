//! Program upgrades within one map layout. The layout version protects the maps; the programs
//! change more often (a fix in the NAT, a new verdict path) and must not wait for the pins to be
//! removed. Each loader records the id (a hash) of the object whose programs are pinned in
//! `<lock_dir>/ebpf-<network>.object`; an opener carrying a different object, under the loader
//! lock, loads its programs against the pinned maps (no state is lost: conntrack, endpoints and
//! counters stay), swaps the program pins, and re-attaches every endpoint and the uplink:
//! netlink filters are replaced in place, TCX links get the new program in front before the old
//! link is detached, so no packet passes unfiltered.

use smarter_common::progs;

use super::attach::Hook;
use super::error::EbpfError;
use super::handle::EbpfDatapath;
use super::{
    attach::{self},
    pins,
};

impl EbpfDatapath {
    /// Re-attaches every endpoint's pod program and the uplink program to the programs pinned
    /// now (after their pins were swapped). Interfaces that are gone are skipped. Returns how
    /// many attachments were renewed.
    ///
    /// # Errors
    ///
    /// The first failing attachment ([`EbpfError::Program`], [`EbpfError::Tc`],
    /// [`EbpfError::Pin`]).
    pub(super) fn reattach_all(&self) -> Result<usize, EbpfError> {
        let mut renewed = 0;
        for ep in self.endpoints()? {
            if attach::ifindex(&ep.host_ifname).ok() != Some(ep.host_ifindex) {
                continue;
            }
            let mut prog = self.pod_program()?;
            let pin = self.pins.link(&ep.host_ifname);
            attach::replace(
                &mut prog,
                Hook::ingress(&ep.host_ifname, progs::POD),
                &pin,
                true,
            )?;
            renewed += 1;
        }
        renewed += self.renew_external()?;
        if pins::exists(&self.pins.link(super::uplink::LOCAL_LINK))?
            || attach::is_attached_named(Hook::ingress(super::uplink::LOOPBACK, progs::LOCAL))?
        {
            let mut prog = self.program(progs::LOCAL)?;
            let pin = self.pins.link(super::uplink::LOCAL_LINK);
            let hook = Hook::ingress(super::uplink::LOOPBACK, progs::LOCAL);
            attach::replace(&mut prog, hook, &pin, true)?;
            renewed += 1;
        }
        Ok(renewed)
    }
}
