//! Program upgrades within one map layout. The layout version protects the maps; the programs
//! change more often (a fix in the NAT, a new verdict path) and must not wait for the pins to be
//! removed. Each loader records the id (a hash) of the object whose programs are pinned in
//! `<lock_dir>/ebpf-<network>.object`; an opener carrying a different object, under the loader
//! lock, loads its programs against the pinned maps (no state is lost: conntrack, endpoints and
//! counters stay), swaps the program pins, and re-attaches every endpoint and the uplink:
//! netlink filters are replaced in place, TCX links get the new program in front before the old
//! link is detached, so no packet passes unfiltered.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, links::FdLink, tc::TcAttachOptions};
use sha2::{Digest as _, Sha256};
use smarter_common::progs;

use super::{
    EbpfDatapath, EbpfError,
    attach::{self, pin_error_to_io},
    ebpf::EBPF_OBJECT,
    pins, sys,
};

/// Name of the uplink's link pin (see `uplink.rs`).
const UPLINK_LINK: &str = "uplink";

/// A short hash of the embedded eBPF object.
pub(super) fn object_id() -> String {
    let digest = Sha256::digest(EBPF_OBJECT);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the id of the pinned programs' object is recorded (bpffs holds no regular files).
pub(super) fn marker(lock_dir: &Path, network: &str) -> PathBuf {
    lock_dir.join(format!("ebpf-{network}.object"))
}

/// The recorded object id, `None` when unknown (a network pinned by an older release).
pub(super) fn recorded(lock_dir: &Path, network: &str) -> Option<String> {
    fs::read_to_string(marker(lock_dir, network))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Records that the pinned programs come from this build's object (atomically).
pub(super) fn record(lock_dir: &Path, network: &str) -> Result<(), EbpfError> {
    let path = marker(lock_dir, network);
    let tmp = path.with_extension(format!("object.tmp.{}", std::process::id()));
    fs::write(&tmp, object_id())
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            EbpfError::io("record the pinned object", &path, e)
        })
}

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
            replace(&mut prog, progs::POD, &ep.host_ifname, &pin)?;
            renewed += 1;
        }
        let ifindex = self.config()?.uplink_ifindex;
        if ifindex != 0
            && let Some(name) = nix::net::if_::if_indextoname(ifindex)
                .ok()
                .and_then(|n| n.into_string().ok())
        {
            let mut prog = self.program(progs::UPLINK)?;
            replace(
                &mut prog,
                progs::UPLINK,
                &name,
                &self.pins.link(UPLINK_LINK),
            )?;
            renewed += 1;
            if self.renew_egress(&name)? {
                renewed += 1;
            }
        }
        if pins::exists(&self.pins.link(super::uplink::LOCAL_LINK))?
            || attach::is_attached_named(super::uplink::LOOPBACK, progs::LOCAL)?
        {
            let mut prog = self.program(progs::LOCAL)?;
            let pin = self.pins.link(super::uplink::LOCAL_LINK);
            replace(&mut prog, progs::LOCAL, super::uplink::LOOPBACK, &pin)?;
            renewed += 1;
        }
        Ok(renewed)
    }
}

/// Puts `prog` in place of whatever version of it runs on `ifname`'s ingress: a TCX link pinned
/// at `link_pin` is replaced (new link first, then the old one detached, then the pin swapped);
/// otherwise our netlink filter is replaced in place.
fn replace(
    prog: &mut SchedClassifier,
    name: &'static str,
    ifname: &str,
    link_pin: &Path,
) -> Result<(), EbpfError> {
    if !pins::exists(link_pin)? {
        return attach::attach_netlink(prog, ifname, link_pin);
    }
    let op = || format!("re-attach to {ifname} ingress (tcx)");
    let options = TcAttachOptions::TcxOrder(LinkOrder::first());
    let id = prog
        .attach_with_options(ifname, TcAttachType::Ingress, options)
        .map_err(|e| EbpfError::program(name, op(), e))?;
    let link = prog
        .take_link(id)
        .map_err(|e| EbpfError::program(name, op(), e))?;
    let link = FdLink::try_from(link).map_err(|e| EbpfError::Link {
        ifname: ifname.into(),
        op: "take the tcx link",
        source: Box::new(e),
    })?;
    let mut next = link_pin.as_os_str().to_owned();
    next.push("_next");
    let next = PathBuf::from(next);
    pins::remove_pin(&next)?;
    link.pin(&next).map_err(|e| EbpfError::Pin {
        path: next.clone(),
        source: pin_error_to_io(e),
    })?;
    match sys::detach_pinned_link(link_pin) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(EbpfError::Pin {
                path: link_pin.into(),
                source: e,
            });
        }
        _ => {}
    }
    fs::rename(&next, link_pin).map_err(|e| EbpfError::io("swap link pin", link_pin, e))
}
