//! The real [`DatapathControl`]s: [`EbpfControl`] (pinned programs and maps) and
//! [`NftControl`] (the nftables tables), chosen by [`open_choosing`] exactly as the plugin
//! chooses.
//!
//! Ownership between agent and plugin: both open the same pins under the same loader lock, so
//! whoever comes first loads and pins and the other reuses (a restarted agent drops no flow).
//! The plugin writes what it learns on ADD (bridge, NAT range, deny list, the uplink as the
//! kernel shows it then); the agent writes the uplink whenever the kernel's view changes, and
//! alone expires conntrack entries. Both derive the uplink from the same kernel state, so their
//! writes agree.

use anyhow::Context as _;

use super::{DatapathControl, UplinkInfo};
use crate::cni::NetConf;
use crate::datapath::iptables::{NftConfig, NftDatapath};
use crate::datapath::{
    AttachMode, ChoiceReason, CtTimeouts, DatapathChoice, DatapathConfig, DatapathKind,
    EbpfDatapath, EbpfError, Uplink,
};

/// Opens the datapath `conf` selects, as [`open_choosing`] does, without the choice.
///
/// # Errors
///
/// As [`open_choosing`].
pub fn open(conf: &NetConf) -> anyhow::Result<Box<dyn DatapathControl + Send>> {
    open_choosing(conf).map(|(dp, _)| dp)
}

/// Opens the datapath `conf` selects exactly as the plugin selects it (`auto`: eBPF unless it
/// cannot run here — no bpf file system for `bpffsDir`, no bpf(2) permission, the kernel
/// refusing the programs — then nftables, the reason logged), loading and pinning programs
/// and maps if nobody has yet (a missing pin root whose parent is bpffs is created). Returns
/// the choice with its reason (for health and metrics) and records it in
/// `<stateDir>/<network>/datapath.choice`.
///
/// # Errors
///
/// When the selected datapath cannot be opened (`datapath: ebpf` and no bpffs, a changed
/// map layout, `nft` missing...).
pub fn open_choosing(
    conf: &NetConf,
) -> anyhow::Result<(Box<dyn DatapathControl + Send>, DatapathChoice)> {
    let mut choice = DatapathChoice::select(conf.datapath, &conf.bpffs_dir);
    let mut control: Option<Box<dyn DatapathControl + Send>> = None;
    if choice.datapath == DatapathKind::Ebpf {
        match EbpfControl::open(conf) {
            Ok(c) => control = Some(Box::new(c)),
            Err(e) => {
                let fallback = e
                    .downcast_ref::<EbpfError>()
                    .and_then(|ee| choice.after_failure(ee));
                match fallback {
                    Some(f) => choice = f,
                    None => return Err(e),
                }
            }
        }
    }
    if let ChoiceReason::Unavailable(u) = &choice.reason {
        tracing::warn!(
            reason = choice.reason_label(),
            "datapath auto: eBPF unavailable ({u}); using nftables"
        );
    }
    tracing::info!("datapath {choice}");
    let stored = crate::state::StateStore::open(&conf.state_dir, &conf.name)
        .map_err(|e| e.to_string())
        .and_then(|_| {
            choice
                .store(&conf.state_dir, &conf.name)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = stored {
        tracing::warn!("cannot record the datapath choice: {e}");
    }
    let control = control.unwrap_or_else(|| Box::new(NftControl::new(conf)));
    Ok((control, choice))
}

/// Drives the eBPF datapath of one network.
#[derive(Debug)]
pub struct EbpfControl {
    dp: EbpfDatapath,
    timeouts: CtTimeouts,
}

impl EbpfControl {
    /// Opens (or loads and pins) the network's programs and maps and writes the NAT settings
    /// and deny list of `conf`.
    ///
    /// # Errors
    ///
    /// When loading, pinning or a map write fails.
    pub fn open(conf: &NetConf) -> anyhow::Result<Self> {
        let cfg = DatapathConfig {
            gateway: conf.gateway,
            subnet: conf.subnet,
            ct_max_entries: conf.ct_max_entries,
        };
        let lock_dir = conf.state_dir.join(&conf.name);
        std::fs::create_dir_all(&lock_dir)
            .with_context(|| format!("creating {}", lock_dir.display()))?;
        let dp = EbpfDatapath::open_or_load(&conf.bpffs_dir, &conf.name, &lock_dir, &cfg)
            .context("opening the eBPF datapath")?;
        let timeouts = CtTimeouts::from(conf.ct_timeouts);
        dp.set_nat(
            (conf.nat_port_range.start, conf.nat_port_range.end),
            &timeouts,
        )?;
        dp.set_deny(&conf.deny_cidrs)?;
        dp.attach_local(AttachMode::Auto)?;
        tracing::info!(
            pins = %dp.pin_dir().display(),
            program = ?dp.program_id(),
            "eBPF datapath ready"
        );
        Ok(Self { dp, timeouts })
    }

    /// The datapath, for inspection.
    #[must_use]
    pub fn datapath(&self) -> &EbpfDatapath {
        &self.dp
    }
}

impl DatapathControl for EbpfControl {
    fn uplink_changed(&mut self, uplink: Option<&UplinkInfo>) -> anyhow::Result<()> {
        match uplink.filter(|u| !u.addr.is_unspecified()) {
            Some(u) => {
                let up = Uplink {
                    ifindex: u.ifindex,
                    name: u.name.clone(),
                    addr: u.addr,
                    mac: u.mac,
                };
                self.dp.attach_uplink(&up, AttachMode::Auto)?;
                self.dp.set_uplink(Some(&up))?;
                tracing::info!("eBPF datapath: NAT to {} via {}", u.addr, u.name);
            }
            None => {
                // A flap (link down, route gone) must not kill NATed flows: as long as the
                // recorded interface still holds the recorded address, keep the NAT state, so
                // replies arriving after the outage still find their pods (clearing it would
                // hand them to the host stack, which resets them). Only an address that is
                // gone is forgotten.
                let cfg = self.dp.config()?;
                let addr = std::net::Ipv4Addr::from(cfg.uplink_addr.to_ne_bytes());
                if cfg.uplink_ifindex != 0 && interface_has(cfg.uplink_ifindex, addr) {
                    tracing::warn!(
                        "eBPF datapath: uplink unavailable; keeping NAT to {addr} for its return"
                    );
                } else {
                    self.dp.set_uplink(None)?;
                    tracing::warn!("eBPF datapath: no usable uplink; NAT paused");
                }
            }
        }
        Ok(())
    }

    fn gc(&mut self) -> anyhow::Result<usize> {
        Ok(self.dp.ct_gc(&self.timeouts)?)
    }
}

/// Whether interface `ifindex` (in this namespace) holds IPv4 address `addr`.
fn interface_has(ifindex: u32, addr: std::net::Ipv4Addr) -> bool {
    let Ok(name) = nix::net::if_::if_indextoname(ifindex) else {
        return false;
    };
    nix::ifaddrs::getifaddrs().is_ok_and(|mut all| {
        all.any(|a| {
            a.interface_name.as_bytes() == name.as_bytes()
                && a.address
                    .and_then(|s| s.as_sockaddr_in().map(|sin| sin.ip()))
                    == Some(addr)
        })
    })
}

/// Drives the nftables datapath of one network: its masquerade follows the uplink's name (the
/// kernel's masquerade already follows address changes); conntrack is the kernel's own.
#[derive(Debug)]
pub struct NftControl {
    cfg: NftConfig,
}

impl NftControl {
    /// The control for `conf`'s network (tables are created on the first uplink report).
    #[must_use]
    pub fn new(conf: &NetConf) -> Self {
        Self {
            cfg: NftConfig {
                network: conf.name.clone(),
                bridge: conf.bridge.clone(),
                subnet: conf.subnet,
                gateway: conf.gateway,
                uplink: None,
                deny: conf.deny_cidrs.clone(),
                nat_ports: (conf.nat_port_range.start, conf.nat_port_range.end),
            },
        }
    }
}

impl DatapathControl for NftControl {
    fn uplink_changed(&mut self, uplink: Option<&UplinkInfo>) -> anyhow::Result<()> {
        let name = uplink.map(|u| u.name.clone());
        if name != self.cfg.uplink || NftDatapath::open(&self.cfg.network)?.is_none() {
            self.cfg.uplink = name;
            NftDatapath::ensure(&self.cfg)?;
            tracing::info!(
                "nftables datapath: masquerade via {}",
                self.cfg
                    .uplink
                    .as_deref()
                    .unwrap_or("any non-bridge interface")
            );
        }
        Ok(())
    }

    fn gc(&mut self) -> anyhow::Result<usize> {
        Ok(0)
    }
}

impl<T: DatapathControl + ?Sized> DatapathControl for Box<T> {
    fn uplink_changed(&mut self, uplink: Option<&UplinkInfo>) -> anyhow::Result<()> {
        (**self).uplink_changed(uplink)
    }

    fn gc(&mut self) -> anyhow::Result<usize> {
        (**self).gc()
    }
}
