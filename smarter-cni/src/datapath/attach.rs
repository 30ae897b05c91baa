//! Attaching the pod program to a host veth's ingress, idempotently, so that a short-lived
//! plugin process leaves the attachment behind: TCX links are pinned under `links/<ifname>`,
//! netlink (clsact) filters persist by themselves (their link object is forgotten).

use std::{io, path::Path};

use aya::{
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, TcError,
        links::FdLink,
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
    },
    util::KernelVersion,
};
use nix::libc;
use smarter_common::progs;

use super::{AttachMode, EbpfError, pins, sys, tc_filters};

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

/// Attaches `prog` (id `prog_id`) to `ifname`'s ingress with a TCX link pinned at `link_pin`.
/// Already attached with a pin: nothing to do. A pin whose link no longer serves this interface
/// (e.g. the veth was re-created) is replaced.
pub(super) fn attach_tcx(
    prog: &mut SchedClassifier,
    prog_id: u32,
    ifname: &str,
    link_pin: &Path,
) -> Result<(), EbpfError> {
    let attached = tcx_attached(ifname, prog_id)?;
    if pins::exists(link_pin)? {
        if attached {
            return Ok(());
        }
        pins::remove_pin(link_pin)?;
    }
    let op = || format!("attach to {ifname} ingress (tcx)");
    let options = TcAttachOptions::TcxOrder(LinkOrder::default());
    let id = match prog.attach_with_options(ifname, TcAttachType::Ingress, options) {
        Ok(id) => id,
        // Attached through a link some other process holds: it stays attached while they do.
        Err(e) if attached && errno(&e) == Some(libc::EEXIST) => return Ok(()),
        Err(e) => return Err(EbpfError::program(progs::POD, op(), e)),
    };
    let link = prog
        .take_link(id)
        .map_err(|e| EbpfError::program(progs::POD, op(), e))?;
    let link = FdLink::try_from(link).map_err(|e| EbpfError::Link {
        ifname: ifname.into(),
        op: "take the tcx link",
        source: Box::new(e),
    })?;
    link.pin(link_pin).map_err(|e| EbpfError::Pin {
        path: link_pin.into(),
        source: pin_error_to_io(e),
    })?;
    // Switching from netlink (e.g. a changed attach mode): never run the program twice.
    detach_netlink(ifname)
}

/// Attaches `prog` to `ifname`'s clsact ingress as a netlink filter (adding the qdisc if needed),
/// replacing our previous filter if there is one, and dropping a TCX link pinned at `link_pin`
/// (never run the program twice). The filter outlives this process.
pub(super) fn attach_netlink(
    prog: &mut SchedClassifier,
    ifname: &str,
    link_pin: &Path,
) -> Result<(), EbpfError> {
    detach_tcx(link_pin)?;
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
    let op = || format!("attach to {ifname} ingress (netlink)");
    let options = TcAttachOptions::Netlink(NlOptions {
        priority: NL_PRIORITY,
        handle: NL_HANDLE,
        ..NlOptions::default()
    });
    let id = match prog.attach_with_options(ifname, TcAttachType::Ingress, options) {
        Ok(id) => id,
        Err(e) if errno(&e) == Some(libc::EEXIST) => {
            let ours = SchedClassifierLink::attached(
                ifname,
                TcAttachType::Ingress,
                NL_PRIORITY,
                NL_HANDLE,
                None,
            )
            .map_err(|e| interface_error(ifname, e))?;
            prog.attach_to_link(ours)
                .map_err(|e| EbpfError::program(progs::POD, op(), e))?
        }
        Err(e) => return Err(EbpfError::program(progs::POD, op(), e)),
    };
    let link = prog
        .take_link(id)
        .map_err(|e| EbpfError::program(progs::POD, op(), e))?;
    // Dropping the link would remove the filter: the attachment must outlive this process.
    std::mem::forget(link);
    Ok(())
}

/// Whether program `prog_id` is attached to `ifname`'s ingress, by TCX or netlink.
pub(super) fn is_attached(ifname: &str, ifindex: u32, prog_id: u32) -> Result<bool, EbpfError> {
    if tcx_attached(ifname, prog_id)? {
        return Ok(true);
    }
    let filters = tc_filters::ingress_bpf_filters(ifindex).map_err(|source| EbpfError::Tc {
        ifname: ifname.into(),
        op: "list ingress filters",
        source,
    })?;
    Ok(filters.iter().any(|f| f.prog_id == prog_id))
}

fn tcx_attached(ifname: &str, prog_id: u32) -> Result<bool, EbpfError> {
    if !tcx_supported() {
        return Ok(false);
    }
    match SchedClassifier::query_tcx(ifname, TcAttachType::Ingress) {
        Ok((_revision, programs)) => Ok(programs.iter().any(|p| p.id() == prog_id)),
        Err(e) => Err(EbpfError::program(
            progs::POD,
            format!("query tcx programs on {ifname} ingress"),
            e,
        )),
    }
}

/// Detaches the pod program from `ifname`: detaches and unpins the TCX link (at once, even if
/// another process holds it) and removes our netlink filters. Success when nothing is attached
/// or the interface is gone.
pub(super) fn detach(ifname: &str, link_pin: &Path) -> Result<(), EbpfError> {
    detach_tcx(link_pin)?;
    detach_netlink(ifname)
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

/// Removes the netlink filters running the pod program on `ifname`'s ingress, if any.
fn detach_netlink(ifname: &str) -> Result<(), EbpfError> {
    detach_netlink_named(ifname, progs::POD)
}

/// Detaches the TCX link pinned at `link_pin` and the netlink filters named `name` on `ifname`.
pub(super) fn detach_named(ifname: &str, link_pin: &Path, name: &str) -> Result<(), EbpfError> {
    detach_tcx(link_pin)?;
    detach_netlink_named(ifname, name)
}

/// Removes the netlink filters running program `name` on `ifname`'s ingress, if any.
fn detach_netlink_named(ifname: &str, name: &str) -> Result<(), EbpfError> {
    let Ok(ifindex) = ifindex(ifname) else {
        return Ok(());
    };
    let tc_error = |op, source| EbpfError::Tc {
        ifname: ifname.into(),
        op,
        source,
    };
    let filters = tc_filters::ingress_bpf_filters(ifindex)
        .map_err(|e| tc_error("list ingress filters", e))?;
    if !filters.iter().any(|f| f.name == name) {
        return Ok(());
    }
    match tc::qdisc_detach_program(ifname, TcAttachType::Ingress, name) {
        Err(TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(tc_error("remove ingress filter", io::Error::other(e))),
        Ok(()) => Ok(()),
    }
}

/// Whether a netlink filter running program `name` sits on `ifname`'s ingress.
pub(super) fn is_attached_named(ifname: &str, name: &str) -> Result<bool, EbpfError> {
    let Ok(ifindex) = ifindex(ifname) else {
        return Ok(false);
    };
    let filters = tc_filters::ingress_bpf_filters(ifindex).map_err(|source| EbpfError::Tc {
        ifname: ifname.into(),
        op: "list ingress filters",
        source,
    })?;
    Ok(filters.iter().any(|f| f.name == name))
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
