//! The backstop on the uplink's egress (`smarter_egress`): attached with the uplink program,
//! detached with it, renewed with it on an upgrade. TCX links are pinned at
//! `links/uplink_egress`; netlink (clsact egress) filters persist by themselves.

use std::path::{Path, PathBuf};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType, TcError,
    links::FdLink,
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
};
use nix::libc;
use smarter_common::progs;

use super::{
    AttachMode, EbpfDatapath, EbpfError, attach, pins, sys, tc_filters::egress_bpf_filters,
};

/// Link pin name of the backstop's TCX link.
pub(super) const EGRESS_LINK: &str = "uplink_egress";
const NL_PRIORITY: u16 = 1;
const NL_HANDLE: TcHandle = TcHandle::new(0, 1);

impl EbpfDatapath {
    /// Attaches `smarter_egress` to `ifname`'s egress (idempotent).
    ///
    /// # Errors
    ///
    /// [`EbpfError::Program`], [`EbpfError::Tc`] or [`EbpfError::Pin`] when attaching fails.
    ///
    /// # Minimum kernel version
    ///
    /// TCX needs Linux 6.6; [`AttachMode::Auto`] falls back to a netlink filter.
    pub(super) fn attach_egress(&self, ifname: &str, mode: AttachMode) -> Result<(), EbpfError> {
        let mut prog = self.program(progs::EGRESS)?;
        let pin = self.pins.link(EGRESS_LINK);
        match attach::resolve_mode(mode) {
            AttachMode::Netlink => attach_netlink(&mut prog, ifname, &pin),
            AttachMode::Tcx | AttachMode::Auto => attach_tcx(&mut prog, ifname, &pin),
        }
    }

    /// Detaches `smarter_egress` from `ifname` (TCX link and netlink filter). Success when it
    /// is not attached or the interface is gone.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Pin`] or [`EbpfError::Tc`] when a removal fails.
    pub(super) fn detach_egress(&self, ifname: &str) -> Result<(), EbpfError> {
        detach_tcx(&self.pins.link(EGRESS_LINK))?;
        detach_netlink(ifname)
    }

    /// Puts the pinned `smarter_egress` in place of whatever version runs on `ifname`: a TCX
    /// link is replaced new-first (no moment without a backstop), a netlink filter in place.
    ///
    /// # Errors
    ///
    /// As [`Self::attach_egress`].
    pub(super) fn renew_egress(&self, ifname: &str) -> Result<bool, EbpfError> {
        let pin = self.pins.link(EGRESS_LINK);
        let mut prog = self.program(progs::EGRESS)?;
        if pins::exists(&pin)? {
            let next = with_suffix(&pin, "_next");
            pins::remove_pin(&next)?;
            tcx_link(&mut prog, ifname, LinkOrder::first(), &next)?;
            detach_tcx(&pin)?;
            std::fs::rename(&next, &pin).map_err(|e| EbpfError::io("swap link pin", &pin, e))?;
            return Ok(true);
        }
        if is_attached_netlink(ifname)? {
            attach_netlink(&mut prog, ifname, &pin)?;
            return Ok(true);
        }
        Ok(false)
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn program_error(ifname: &str, how: &str, e: aya::programs::ProgramError) -> EbpfError {
    EbpfError::program(
        progs::EGRESS,
        format!("attach to {ifname} egress ({how})"),
        e,
    )
}

fn attach_tcx(prog: &mut SchedClassifier, ifname: &str, pin: &Path) -> Result<(), EbpfError> {
    let prog_id = prog
        .info()
        .map(|i| i.id())
        .map_err(|e| EbpfError::program(progs::EGRESS, "query", e))?;
    let attached = match SchedClassifier::query_tcx(ifname, TcAttachType::Egress) {
        Ok((_, programs)) => programs.iter().any(|p| p.id() == prog_id),
        Err(e) => return Err(program_error(ifname, "tcx query", e)),
    };
    if pins::exists(pin)? {
        if attached {
            return Ok(());
        }
        pins::remove_pin(pin)?;
    }
    tcx_link(prog, ifname, LinkOrder::default(), pin)?;
    detach_netlink(ifname)
}

fn tcx_link(
    prog: &mut SchedClassifier,
    ifname: &str,
    order: LinkOrder,
    pin: &Path,
) -> Result<(), EbpfError> {
    let id = prog
        .attach_with_options(
            ifname,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(order),
        )
        .map_err(|e| program_error(ifname, "tcx", e))?;
    let link = prog
        .take_link(id)
        .map_err(|e| program_error(ifname, "tcx", e))?;
    let link = FdLink::try_from(link).map_err(|e| EbpfError::Link {
        ifname: ifname.into(),
        op: "take the tcx link",
        source: Box::new(e),
    })?;
    link.pin(pin).map_err(|e| EbpfError::Pin {
        path: pin.into(),
        source: attach::pin_error_to_io(e),
    })?;
    Ok(())
}

fn attach_netlink(prog: &mut SchedClassifier, ifname: &str, pin: &Path) -> Result<(), EbpfError> {
    detach_tcx(pin)?;
    match tc::qdisc_add_clsact(ifname) {
        Err(TcError::NetlinkError(e)) if e.raw_os_error() != Some(libc::EEXIST) => {
            return Err(EbpfError::Tc {
                ifname: ifname.into(),
                op: "add clsact qdisc",
                source: std::io::Error::other(e),
            });
        }
        Err(TcError::IoError(e)) => {
            return Err(EbpfError::Interface {
                name: ifname.into(),
                source: e,
            });
        }
        _ => {}
    }
    let options = TcAttachOptions::Netlink(NlOptions {
        priority: NL_PRIORITY,
        handle: NL_HANDLE,
        ..NlOptions::default()
    });
    let id = match prog.attach_with_options(ifname, TcAttachType::Egress, options) {
        Ok(id) => id,
        Err(e) if is_eexist(&e) => {
            let ours = SchedClassifierLink::attached(
                ifname,
                TcAttachType::Egress,
                NL_PRIORITY,
                NL_HANDLE,
                None,
            )
            .map_err(|e| EbpfError::Interface {
                name: ifname.into(),
                source: e,
            })?;
            prog.attach_to_link(ours)
                .map_err(|e| program_error(ifname, "netlink", e))?
        }
        Err(e) => return Err(program_error(ifname, "netlink", e)),
    };
    let link = prog
        .take_link(id)
        .map_err(|e| program_error(ifname, "netlink", e))?;
    // Dropping the link would remove the filter: the attachment must outlive this process.
    std::mem::forget(link);
    Ok(())
}

fn is_eexist(e: &aya::programs::ProgramError) -> bool {
    use aya::programs::ProgramError;
    match e {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::EEXIST),
        ProgramError::TcError(TcError::NetlinkError(e)) => e.raw_os_error() == Some(libc::EEXIST),
        ProgramError::TcError(TcError::IoError(e)) => e.raw_os_error() == Some(libc::EEXIST),
        _ => false,
    }
}

fn detach_tcx(pin: &Path) -> Result<(), EbpfError> {
    match sys::detach_pinned_link(pin) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(EbpfError::Pin {
            path: pin.into(),
            source: e,
        }),
        _ => pins::remove_pin(pin),
    }
}

fn is_attached_netlink(ifname: &str) -> Result<bool, EbpfError> {
    let Ok(ifindex) = attach::ifindex(ifname) else {
        return Ok(false);
    };
    let filters = egress_bpf_filters(ifindex).map_err(|source| EbpfError::Tc {
        ifname: ifname.into(),
        op: "list egress filters",
        source,
    })?;
    Ok(filters.iter().any(|f| f.name == progs::EGRESS))
}

fn detach_netlink(ifname: &str) -> Result<(), EbpfError> {
    if !is_attached_netlink(ifname)? {
        return Ok(());
    }
    match tc::qdisc_detach_program(ifname, TcAttachType::Egress, progs::EGRESS) {
        Err(TcError::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EbpfError::Tc {
            ifname: ifname.into(),
            op: "remove egress filter",
            source: std::io::Error::other(e),
        }),
        Ok(()) => Ok(()),
    }
}
