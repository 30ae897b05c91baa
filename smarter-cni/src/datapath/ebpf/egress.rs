//! The backstop on the uplink's egress (`smarter_egress`): attached with the uplink program,
//! detached with it, renewed with it on an upgrade. TCX links are pinned at
//! `links/uplink_egress`; netlink (clsact egress) filters persist by themselves. The attaching
//! itself is [`attach`]'s, at an egress [`Hook`].

use smarter_common::progs;

use super::attach::{self, Hook};
use super::error::EbpfError;
use super::handle::EbpfDatapath;
use crate::datapath::types::AttachMode;

/// Link pin name of the backstop's TCX link.
pub(super) const EGRESS_LINK: &str = "uplink_egress";

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
        attach::attach(&mut prog, Hook::egress(ifname, progs::EGRESS), mode, &pin)
    }

    /// Detaches `smarter_egress` from `ifname` (TCX link and netlink filter). Success when it
    /// is not attached or the interface is gone.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Pin`] or [`EbpfError::Tc`] when a removal fails.
    pub(super) fn detach_egress(&self, ifname: &str) -> Result<(), EbpfError> {
        attach::detach(
            Hook::egress(ifname, progs::EGRESS),
            &self.pins.link(EGRESS_LINK),
        )
    }

    /// Puts the pinned `smarter_egress` in place of whatever version runs on `ifname`: a TCX
    /// link is replaced new-first (no moment without a backstop), a netlink filter in place.
    /// Whether one was running.
    ///
    /// # Errors
    ///
    /// As [`Self::attach_egress`].
    pub(super) fn renew_egress(&self, ifname: &str) -> Result<bool, EbpfError> {
        let mut prog = self.program(progs::EGRESS)?;
        let pin = self.pins.link(EGRESS_LINK);
        attach::replace(&mut prog, Hook::egress(ifname, progs::EGRESS), &pin, false)
    }
}
