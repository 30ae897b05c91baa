//! Opening a network's datapath: the one place that chooses. The plugin, the node agent,
//! `smarter-bpfctl` and the installer all come through here.
//!
//! [`open`] picks the datapath from the configuration (`auto`: eBPF unless it cannot run
//! here — no bpf file system for `bpffsDir`, no bpf(2) permission, the kernel refusing the
//! programs — then iptables, saying why) and records the choice in
//! `<stateDir>/<network>/datapath.choice`. [`open_existing`] opens what is there without
//! creating anything (DEL, CHECK, GC, inspection, uninstall).

use super::choice::{ChoiceReason, DatapathChoice};
use super::ebpf::EbpfNetwork;
use super::nftables::NftablesNetwork;
use super::seam::{Datapath, DatapathError, Settings};
use super::types::AttachMode;
use super::types::DatapathKind;
use crate::cni::{NetConf, TcAttachMode};

/// A datapath opened for new pods, with why it is the one.
#[derive(Debug)]
pub struct Opened {
    /// The datapath.
    pub datapath: Box<dyn Datapath>,
    /// The choice and its reason (for STATUS, health and metrics).
    pub choice: DatapathChoice,
}

/// The settings of `conf`'s network.
#[must_use]
pub fn settings(conf: &NetConf) -> Settings {
    Settings {
        network: conf.name.clone(),
        bridge: conf.bridge.clone(),
        gateway: conf.gateway,
        subnet: conf.subnet,
        v6: (conf.ipv6 != crate::cni::config::Ipv6Mode::Off).then(|| super::V6Config {
            subnet: conf.subnet6,
            gateway: conf.gateway6(),
        }),
        ct_max_entries: conf.ct_max_entries,
        ct_timeouts: conf.ct_timeouts,
        nat_ports: (conf.nat_port_range.start, conf.nat_port_range.end),
        deny: conf.deny_cidrs.clone(),
        attach: match conf.tc_attach {
            TcAttachMode::Auto => AttachMode::Auto,
            TcAttachMode::Tcx => AttachMode::Tcx,
            TcAttachMode::Netlink => AttachMode::Netlink,
        },
        bpffs_dir: conf.bpffs_dir.clone(),
        state: crate::state::StateDir::new(&conf.state_dir, &conf.name),
    }
}

/// The datapath `conf` selects before anything is opened: as configured, or for `auto` eBPF
/// unless there is no bpf file system for `bpffsDir` (a missing pin root whose parent is
/// bpffs counts: it is created) or no permission to use bpf(2).
#[must_use]
pub fn select(conf: &NetConf) -> DatapathChoice {
    DatapathChoice::select(conf.datapath, &conf.bpffs_dir)
}

/// Opens, loading or creating as needed, the datapath `conf` selects. With `datapath: auto`
/// a load that fails for a reason making eBPF unusable falls back to iptables; the choice is
/// logged (a fallback as a warning naming the reason) and recorded.
///
/// # Errors
///
/// When the selected datapath cannot be opened (`datapath: ebpf` without bpffs, a changed
/// map layout...).
pub fn open(conf: &NetConf) -> Result<Opened, DatapathError> {
    let s = settings(conf);
    let mut choice = select(conf);
    let mut datapath: Option<Box<dyn Datapath>> = None;
    if choice.datapath == DatapathKind::Ebpf
        && let Some(msg) = super::ebpf::attach::unsupported(s.attach)
    {
        return Err(DatapathError::Config {
            key: "tcAttach",
            msg,
        });
    }
    if choice.datapath == DatapathKind::Ebpf {
        match EbpfNetwork::open(s.clone()) {
            Ok(dp) => datapath = Some(Box::new(dp)),
            Err(e) => match choice.after_failure(&e) {
                Some(fallback) => choice = fallback,
                None => return Err(e.into()),
            },
        }
    }
    report(conf, &choice);
    let datapath = datapath.unwrap_or_else(|| Box::new(NftablesNetwork::open(&s)));
    Ok(Opened { datapath, choice })
}

/// Opens the `kind` datapath of `conf`'s network without creating anything; `None` when it
/// has nothing there.
///
/// # Errors
///
/// When its state exists but cannot be read.
pub fn open_existing(
    conf: &NetConf,
    kind: DatapathKind,
) -> Result<Option<Box<dyn Datapath>>, DatapathError> {
    let s = settings(conf);
    Ok(match kind {
        DatapathKind::Ebpf => {
            EbpfNetwork::open_existing(s)?.map(|d| Box::new(d) as Box<dyn Datapath>)
        }
        DatapathKind::Nftables => {
            NftablesNetwork::open_existing(&s)?.map(|d| Box::new(d) as Box<dyn Datapath>)
        }
    })
}

/// Whether the `kind` driver can serve on this node, found without opening or creating
/// anything of the network (STATUS, the installer): eBPF when the pin root is (or can be
/// made) on bpffs and bpf(2) is permitted ([`super::ebpf::probe`]); nftables when `nft` runs and the
/// kernel accepts what its tables need (a throwaway table, created and deleted in one batch).
///
/// # Errors
///
/// Why it cannot, in words.
pub fn usable(conf: &NetConf, kind: DatapathKind) -> Result<(), String> {
    match kind {
        DatapathKind::Ebpf => super::ebpf::probe(&conf.bpffs_dir)
            .map(drop)
            .map_err(|u| u.to_string()),
        DatapathKind::Nftables => {
            super::nftables::NftablesDatapath::available().map_err(|e| e.to_string())
        }
    }
}

/// Whether `path` is on a bpf file system.
#[must_use]
pub fn on_bpffs(path: &std::path::Path) -> bool {
    super::ebpf::EbpfDatapath::check_bpffs(path).is_ok()
}

/// Logs the choice and records it for `smarter-bpfctl status` (best effort).
fn report(conf: &NetConf, choice: &DatapathChoice) {
    match &choice.reason {
        ChoiceReason::Unavailable(u) => tracing::warn!(
            reason = choice.reason_label(),
            "datapath auto: eBPF unavailable ({u}); using nftables"
        ),
        _ => tracing::debug!("datapath {choice}"),
    }
    let dir = crate::state::StateDir::new(&conf.state_dir, &conf.name);
    let stored = dir
        .create()
        .map_err(|e| e.source)
        .and_then(|()| choice.store(&conf.state_dir, &conf.name));
    if let Err(e) = stored {
        tracing::debug!(
            "cannot record the datapath choice in {}: {e}",
            dir.path().display()
        );
    }
}

/// How the verbs reach datapaths: the real ones ([`System`]), or a fake in unit tests, so
/// the verbs' datapath logic is tested without root.
pub trait Datapaths: Sync {
    /// As [`open`].
    ///
    /// # Errors
    ///
    /// As [`open`].
    fn open(&self, conf: &NetConf) -> Result<Opened, DatapathError>;

    /// As [`open_existing`].
    ///
    /// # Errors
    ///
    /// As [`open_existing`].
    fn open_existing(
        &self,
        conf: &NetConf,
        kind: DatapathKind,
    ) -> Result<Option<Box<dyn Datapath>>, DatapathError>;

    /// Both datapaths that have state for `conf`'s network (GC sweeps both).
    ///
    /// # Errors
    ///
    /// As [`open_existing`].
    fn open_all(&self, conf: &NetConf) -> Result<Vec<Box<dyn Datapath>>, DatapathError> {
        let mut all = Vec::new();
        for kind in [DatapathKind::Ebpf, DatapathKind::Nftables] {
            all.extend(self.open_existing(conf, kind)?);
        }
        Ok(all)
    }
}

/// The node's real datapaths.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Datapaths for System {
    fn open(&self, conf: &NetConf) -> Result<Opened, DatapathError> {
        open(conf)
    }

    fn open_existing(
        &self,
        conf: &NetConf,
        kind: DatapathKind,
    ) -> Result<Option<Box<dyn Datapath>>, DatapathError> {
        open_existing(conf, kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::config::Ipv6Mode;

    #[test]
    fn settings_carry_the_ipv6_subnet_unless_ipv6_is_off() {
        let conf = NetConf::default();
        let v6 = settings(&conf).v6.expect("auto: the IPv6 half is there");
        assert_eq!(v6.subnet.to_string(), "fd00:ac27::/64");
        assert_eq!(v6.gateway.to_string(), "fd00:ac27::1");
        let on = NetConf {
            ipv6: Ipv6Mode::On,
            subnet6: "fd12::/112".parse().unwrap(),
            ..NetConf::default()
        };
        let v6 = settings(&on).v6.expect("on");
        assert_eq!(
            (v6.subnet, v6.gateway.to_string()),
            (on.subnet6, "fd12::1".into())
        );
        let off = NetConf {
            ipv6: Ipv6Mode::Off,
            ..NetConf::default()
        };
        assert_eq!(settings(&off).v6, None);
    }
}
