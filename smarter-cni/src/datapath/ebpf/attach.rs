//! Attaching a program at a [`Hook`] (an interface, ingress or egress), idempotently, so that a
//! short-lived plugin process leaves the attachment behind: TCX links are pinned under
//! `links/`, netlink (clsact) filters persist by themselves (their link object is forgotten).
//! Every program of the datapath (pod, uplink, egress backstop, loopback) goes through here.

use std::io;
use std::path::{Path, PathBuf};

use aya::{
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, TcError,
        links::FdLink,
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
    },
    util::KernelVersion,
};
use nix::libc;

use super::error::EbpfError;
use super::{pins, sys, tc_filters};
use crate::datapath::types::AttachMode;

/// Netlink attachments use a fixed priority and handle, so re-attaching replaces our own filter
/// instead of stacking a second one.
const NL_PRIORITY: u16 = 1;
const NL_HANDLE: TcHandle = TcHandle::new(0, 1);

/// How an endpoint is attached on this kernel: TCX from Linux 6.6 (as aya decides), else netlink.
pub(super) fn resolve_mode(mode: AttachMode) -> AttachMode {
    match mode {
        AttachMode::Auto if tcx_supported() => AttachMode::Tcx,
        AttachMode::Auto => AttachMode::Netlink,
        forced => forced,
    }
}

/// Why this kernel cannot attach as `mode` asks: a forced TCX before Linux 6.6.
pub(in crate::datapath) fn unsupported(mode: AttachMode) -> Option<String> {
    if mode != AttachMode::Tcx || tcx_supported() {
        return None;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |r| r.trim().to_owned());
    Some(format!(
        "tcAttach \"tcx\" needs TCX links (Linux 6.6 or later) and this kernel is {release}: \
         use \"auto\" (netlink clsact filters on this kernel) or \"netlink\""
    ))
}

fn tcx_supported() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// The ifindex of `name` in the calling thread's network namespace.
pub(super) fn ifindex(name: &str) -> Result<u32, EbpfError> {
    nix::net::if_::if_nametoindex(name).map_err(|e| EbpfError::Interface {
        name: name.into(),
        source: e.into(),
    })
}

/// Where a program runs: an interface, a direction, and the program (by name).
#[derive(Debug, Clone, Copy)]
pub(super) struct Hook<'a> {
    /// The interface (in the calling thread's network namespace).
    pub ifname: &'a str,
    /// Ingress or egress.
    pub dir: TcAttachType,
    /// The program's name (`smarter_pod`, `smarter_uplink`...).
    pub prog: &'static str,
}

impl<'a> Hook<'a> {
    /// `prog` on `ifname`'s ingress.
    pub(super) fn ingress(ifname: &'a str, prog: &'static str) -> Self {
        Self {
            ifname,
            dir: TcAttachType::Ingress,
            prog,
        }
    }

    /// `prog` on `ifname`'s egress.
    pub(super) fn egress(ifname: &'a str, prog: &'static str) -> Self {
        Self {
            ifname,
            dir: TcAttachType::Egress,
            prog,
        }
    }

    fn side(self) -> &'static str {
        match self.dir {
            TcAttachType::Egress => "egress",
            _ => "ingress",
        }
    }

    fn error(self, how: &str, e: ProgramError) -> EbpfError {
        EbpfError::program(
            self.prog,
            format!("attach to {} {} ({how})", self.ifname, self.side()),
            e,
        )
    }

    /// The BPF filters on this side of the interface's clsact qdisc.
    fn filters(self) -> Result<Vec<tc_filters::BpfFilter>, EbpfError> {
        let Ok(ifindex) = ifindex(self.ifname) else {
            return Ok(Vec::new());
        };
        let list = match self.dir {
            TcAttachType::Egress => tc_filters::egress_bpf_filters(ifindex),
            _ => tc_filters::ingress_bpf_filters(ifindex),
        };
        list.map_err(|source| EbpfError::Tc {
            ifname: self.ifname.into(),
            op: "list filters",
            source,
        })
    }
}

/// Attaches `prog` as `mode` resolves on this kernel (see [`attach_tcx`], [`attach_netlink`]).
pub(super) fn attach(
    prog: &mut SchedClassifier,
    hook: Hook<'_>,
    mode: AttachMode,
    link_pin: &Path,
) -> Result<(), EbpfError> {
    match resolve_mode(mode) {
        AttachMode::Netlink => attach_netlink(prog, hook, link_pin),
        AttachMode::Tcx | AttachMode::Auto => {
            let prog_id = prog
                .info()
                .map(|i| i.id())
                .map_err(|e| hook.error("query", e))?;
            attach_tcx(prog, prog_id, hook, link_pin)
        }
    }
}

/// Attaches `prog` (id `prog_id`) at `hook` with a TCX link pinned at `link_pin`. Already
/// attached with a pin: nothing to do. A pin whose link no longer serves this interface (e.g.
/// the veth was re-created) is replaced.
pub(super) fn attach_tcx(
    prog: &mut SchedClassifier,
    prog_id: u32,
    hook: Hook<'_>,
    link_pin: &Path,
) -> Result<(), EbpfError> {
    let attached = tcx_attached(hook, prog_id)?;
    if pins::exists(link_pin)? {
        if attached {
            return Ok(());
        }
        pins::remove_pin(link_pin)?;
    }
    match tcx_link(prog, hook, LinkOrder::default(), link_pin) {
        // Attached through a link some other process holds: it stays attached while they do.
        // Also when that process attached it just now (concurrent first ADDs both found it
        // unattached): the kernel refuses the second attachment of the same program.
        Err(Failed::Attach(e))
            if errno(&e) == Some(libc::EEXIST) && (attached || tcx_attached(hook, prog_id)?) =>
        {
            return Ok(());
        }
        Err(Failed::Attach(e)) => return Err(hook.error("tcx", e)),
        Err(Failed::Other(e)) => return Err(e),
        Ok(()) => {}
    }
    // Switching from netlink (e.g. a changed attach mode): never run the program twice.
    detach_netlink(hook)
}

/// Why [`tcx_link`] failed: the attach call itself (callers look at its errno) or after it.
enum Failed {
    Attach(ProgramError),
    Other(EbpfError),
}

/// A new TCX link of `prog` at `hook` in `order`, pinned at `pin`.
fn tcx_link(
    prog: &mut SchedClassifier,
    hook: Hook<'_>,
    order: LinkOrder,
    pin: &Path,
) -> Result<(), Failed> {
    let id = prog
        .attach_with_options(hook.ifname, hook.dir, TcAttachOptions::TcxOrder(order))
        .map_err(Failed::Attach)?;
    let link = prog
        .take_link(id)
        .map_err(|e| Failed::Other(hook.error("tcx", e)))?;
    let link = FdLink::try_from(link).map_err(|e| {
        Failed::Other(EbpfError::Link {
            ifname: hook.ifname.into(),
            op: "take the tcx link",
            source: Box::new(e),
        })
    })?;
    link.pin(pin).map(drop).map_err(|e| {
        Failed::Other(EbpfError::Pin {
            path: pin.into(),
            source: pin_error_to_io(e),
        })
    })
}

/// Attaches `prog` at `hook` as a netlink filter on the clsact qdisc (adding the qdisc if
/// needed), replacing our previous filter if there is one, and dropping a TCX link pinned at
/// `link_pin` (never run the program twice). The filter outlives this process.
pub(super) fn attach_netlink(
    prog: &mut SchedClassifier,
    hook: Hook<'_>,
    link_pin: &Path,
) -> Result<(), EbpfError> {
    detach_tcx(link_pin)?;
    let ifname = hook.ifname;
    match tc::qdisc_add_clsact(ifname) {
        Err(TcError::NetlinkError(e)) if e.raw_os_error() != Some(libc::EEXIST) => {
            return Err(EbpfError::Tc {
                ifname: ifname.into(),
                op: "add clsact qdisc",
                source: io::Error::other(e),
            });
        }
        Err(TcError::IoError(e)) => return Err(interface_error(ifname, e)),
        _ => {}
    }
    let options = TcAttachOptions::Netlink(NlOptions {
        priority: NL_PRIORITY,
        handle: NL_HANDLE,
        ..NlOptions::default()
    });
    let id = match prog.attach_with_options(ifname, hook.dir, options) {
        Ok(id) => id,
        Err(e) if errno(&e) == Some(libc::EEXIST) => {
            let ours =
                SchedClassifierLink::attached(ifname, hook.dir, NL_PRIORITY, NL_HANDLE, None)
                    .map_err(|e| interface_error(ifname, e))?;
            prog.attach_to_link(ours)
                .map_err(|e| hook.error("netlink", e))?
        }
        Err(e) => return Err(hook.error("netlink", e)),
    };
    let link = prog.take_link(id).map_err(|e| hook.error("netlink", e))?;
    // Dropping the link would remove the filter: the attachment must outlive this process.
    std::mem::forget(link);
    Ok(())
}

/// Puts the pinned `prog` in place of whatever version runs at `hook`: a TCX link pinned at
/// `link_pin` is replaced new-first (a new link, then the old one detached, then the pin
/// swapped: never a moment without the program); otherwise our netlink filter is replaced in
/// place, or attached when `or_attach` says so. Whether anything was (re)attached.
pub(super) fn replace(
    prog: &mut SchedClassifier,
    hook: Hook<'_>,
    link_pin: &Path,
    or_attach: bool,
) -> Result<bool, EbpfError> {
    if !pins::exists(link_pin)? {
        if or_attach || is_attached_named(hook)? {
            attach_netlink(prog, hook, link_pin)?;
            return Ok(true);
        }
        return Ok(false);
    }
    let mut next = link_pin.as_os_str().to_owned();
    next.push("_next");
    let next = PathBuf::from(next);
    pins::remove_pin(&next)?;
    match tcx_link(prog, hook, LinkOrder::first(), &next) {
        Err(Failed::Attach(e)) => return Err(hook.error("tcx", e)),
        Err(Failed::Other(e)) => return Err(e),
        Ok(()) => {}
    }
    match sys::detach_pinned_link(link_pin) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(EbpfError::Pin {
                path: link_pin.into(),
                source: e,
            });
        }
        _ => {}
    }
    std::fs::rename(&next, link_pin).map_err(|e| EbpfError::io("swap link pin", link_pin, e))?;
    Ok(true)
}

/// Whether program `prog_id` runs at `hook`, by TCX or netlink.
pub(super) fn is_attached(hook: Hook<'_>, prog_id: u32) -> Result<bool, EbpfError> {
    if tcx_attached(hook, prog_id)? {
        return Ok(true);
    }
    Ok(hook.filters()?.iter().any(|f| f.prog_id == prog_id))
}

fn tcx_attached(hook: Hook<'_>, prog_id: u32) -> Result<bool, EbpfError> {
    if !tcx_supported() {
        return Ok(false);
    }
    match SchedClassifier::query_tcx(hook.ifname, hook.dir) {
        Ok((_revision, programs)) => Ok(programs.iter().any(|p| p.id() == prog_id)),
        Err(e) => Err(EbpfError::program(
            hook.prog,
            format!("query tcx programs on {} {}", hook.ifname, hook.side()),
            e,
        )),
    }
}

/// Detaches the program at `hook`: detaches and unpins the TCX link (at once, even if another
/// process holds it) and removes our netlink filters. Success when nothing is attached or the
/// interface is gone.
pub(super) fn detach(hook: Hook<'_>, link_pin: &Path) -> Result<(), EbpfError> {
    detach_tcx(link_pin)?;
    detach_netlink(hook)
}

/// Detaches (`BPF_LINK_DETACH`) and unpins the TCX link pinned at `link_pin`, if any.
fn detach_tcx(link_pin: &Path) -> Result<(), EbpfError> {
    match sys::detach_pinned_link(link_pin) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(EbpfError::Pin {
            path: link_pin.into(),
            source: e,
        }),
        _ => pins::remove_pin(link_pin),
    }
}

/// Removes the netlink filters running the hook's program, if any.
fn detach_netlink(hook: Hook<'_>) -> Result<(), EbpfError> {
    if !is_attached_named(hook)? {
        return Ok(());
    }
    match tc::qdisc_detach_program(hook.ifname, hook.dir, hook.prog) {
        Err(TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EbpfError::Tc {
            ifname: hook.ifname.into(),
            op: "remove filter",
            source: io::Error::other(e),
        }),
        Ok(()) => Ok(()),
    }
}

/// Whether a netlink filter running the hook's program sits there.
pub(super) fn is_attached_named(hook: Hook<'_>) -> Result<bool, EbpfError> {
    Ok(hook.filters()?.iter().any(|f| f.name == hook.prog))
}

/// The errno behind a failed attach, whichever way it was attempted.
fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
        ProgramError::TcError(TcError::NetlinkError(e)) => e.raw_os_error(),
        ProgramError::TcError(TcError::IoError(e)) => e.raw_os_error(),
        _ => None,
    }
}

fn interface_error(ifname: &str, source: io::Error) -> EbpfError {
    EbpfError::Interface {
        name: ifname.into(),
        source,
    }
}

pub(super) fn pin_error_to_io(e: aya::pin::PinError) -> io::Error {
    match e {
        aya::pin::PinError::SyscallError(e) => e.io_error,
        other => io::Error::other(other),
    }
}
