//! [`EbpfDatapath`]: one network's pinned programs and maps, opened from their pins, and the
//! network configuration record. Loading is [`super::load`]'s.

use std::{
    net::Ipv4Addr,
    path::Path,
    sync::{Mutex, MutexGuard},
};

use aya::{
    maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap},
    programs::SchedClassifier,
};
use smarter_common::{
    ClatValue, CtKey, CtValue, EndpointKey, EndpointMeta, EndpointStats, EndpointValue,
    HostPortKey, HostPortValue, IfStatsKey, NetConfig, UplinkValue, VerdictStats,
    maps::{self, MapSpec},
    progs,
    v6::{Ct6Key, Ct6Value, Endpoint6Key, HostPort6Value, Uplink6Value},
};

use super::error::EbpfError;
use super::object::pinned_program_id;
use super::{pins, pins::PinLayout};
use crate::datapath::types::DatapathConfig;

/// The typed maps of one network. aya's map writes take `&mut`, hence the mutex around them.
pub(super) struct Maps {
    pub(super) endpoints: HashMap<MapData, EndpointKey, EndpointValue>,
    pub(super) meta: HashMap<MapData, EndpointKey, EndpointMeta>,
    pub(super) stats: PerCpuHashMap<MapData, u32, EndpointStats>,
    pub(super) config: Array<MapData, NetConfig>,
    pub(super) verdicts: PerCpuArray<MapData, VerdictStats>,
    pub(super) deny: LpmTrie<MapData, u32, u8>,
    pub(super) ct_out: HashMap<MapData, CtKey, CtValue>,
    pub(super) ct_in: HashMap<MapData, CtKey, CtValue>,
    pub(super) hostports: HashMap<MapData, HostPortKey, HostPortValue>,
    pub(super) ifaces: HashMap<MapData, u32, EndpointKey>,
    pub(super) uplinks: HashMap<MapData, u32, UplinkValue>,
    pub(super) node_addrs: HashMap<MapData, u32, u32>,
    pub(super) if_stats: PerCpuHashMap<MapData, IfStatsKey, EndpointStats>,
    pub(super) clat: HashMap<MapData, u32, ClatValue>,
    pub(super) endpoints6: HashMap<MapData, Endpoint6Key, EndpointValue>,
    pub(super) node_addrs6: HashMap<MapData, [u8; 16], u32>,
    pub(super) uplinks6: HashMap<MapData, u32, Uplink6Value>,
    pub(super) ct6_out: HashMap<MapData, Ct6Key, Ct6Value>,
    pub(super) ct6_in: HashMap<MapData, Ct6Key, Ct6Value>,
    pub(super) hostports6: HashMap<MapData, HostPortKey, HostPort6Value>,
}

/// The eBPF datapath of one CNI network, opened from its pins under
/// `<bpffs_root>/<network>/v<LAYOUT_VERSION>/`.
///
/// Programs and maps are loaded once per network (and layout version) and shared by every
/// plugin invocation, the node agent and operators' tools through their pins. Methods resolve
/// interface names in the calling thread's network namespace.
pub struct EbpfDatapath {
    pub(super) network: String,
    pub(super) pins: PinLayout,
    /// Id of the pinned pod program; `None` when only the maps are pinned ([`Self::open_existing`]).
    pub(super) prog_id: Option<u32>,
    pub(super) maps: Mutex<Maps>,
}

impl std::fmt::Debug for EbpfDatapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfDatapath")
            .field("network", &self.network)
            .field("pins", &self.pins.dir())
            .field("prog_id", &self.prog_id)
            .finish_non_exhaustive()
    }
}

impl EbpfDatapath {
    /// Opens the pins of `network` without loading anything, for DEL, CHECK and GC.
    ///
    /// Returns `Ok(None)` when this network has no complete set of pinned maps at this layout
    /// version (nothing was ever attached, or everything was removed). A missing program pin is
    /// not an error here; [`Self::check_endpoint`] reports it.
    ///
    /// # Errors
    ///
    /// As [`Self::open_or_load`], except that nothing is loaded or locked.
    pub fn open_existing(bpffs_root: &Path, network: &str) -> Result<Option<Self>, EbpfError> {
        let layout = PinLayout::new(bpffs_root, network)?;
        if !pins::exists(layout.dir())? {
            return Ok(None);
        }
        pins::check_bpffs(bpffs_root)?;
        for spec in &maps::ALL {
            if !pins::exists(&layout.map(spec.name))? {
                return Ok(None);
            }
        }
        Self::open_pins(network, layout, false).map(Some)
    }

    /// Checks that `bpffs_root` is on a bpf filesystem (for STATUS).
    ///
    /// # Errors
    ///
    /// [`EbpfError::NotBpffs`], or [`EbpfError::Io`] when it cannot be examined (e.g. missing).
    pub fn check_bpffs(bpffs_root: &Path) -> Result<(), EbpfError> {
        pins::check_bpffs(bpffs_root)
    }

    /// The network's versioned pin directory, `<bpffs_root>/<network>/v<LAYOUT_VERSION>`.
    #[must_use]
    pub fn pin_dir(&self) -> &Path {
        self.pins.dir()
    }

    /// The kernel id of the pinned pod program (`None` when only the maps are pinned). Every
    /// opener of a network's pins sees the same id: the program is loaded once.
    #[must_use]
    pub fn program_id(&self) -> Option<u32> {
        self.prog_id
    }

    /// The network's configuration record as the datapath sees it.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the config map cannot be read.
    pub fn config(&self) -> Result<NetConfig, EbpfError> {
        let maps = self.lock_maps();
        maps.config
            .get(&maps::CONFIG_INDEX, 0)
            .map_err(|e| EbpfError::map(maps::CONFIG, "read", e))
    }

    pub(super) fn open_pins(
        network: &str,
        layout: PinLayout,
        need_prog: bool,
    ) -> Result<Self, EbpfError> {
        let prog_pin = layout.prog(progs::POD);
        let prog_id = if need_prog || pins::exists(&prog_pin)? {
            Some(pinned_program_id(&prog_pin)?)
        } else {
            None
        };
        let open = |spec: &'static MapSpec| -> Result<Map, EbpfError> {
            let data = pins::open_map(&layout.map(spec.name), spec)?;
            Map::from_map_data(data).map_err(|e| EbpfError::map(spec.name, "open", e))
        };
        let [
            endpoints,
            meta,
            stats,
            config,
            verdicts,
            deny,
            ct_out,
            ct_in,
            hostports,
            _events,
            _frag,
            ifaces,
            uplinks,
            node_addrs,
            if_stats,
            clat,
            _clat_scratch,
            endpoints6,
            node_addrs6,
            uplinks6,
            ct6_out,
            ct6_in,
            _tails,
            _nat66_scratch,
            _frag6,
            hostports6,
        ] = &maps::ALL;
        let typed = |spec: &'static MapSpec, e| EbpfError::map(spec.name, "open", e);
        let maps = Maps {
            endpoints: open(endpoints)?
                .try_into()
                .map_err(|e| typed(endpoints, e))?,
            meta: open(meta)?.try_into().map_err(|e| typed(meta, e))?,
            stats: open(stats)?.try_into().map_err(|e| typed(stats, e))?,
            config: open(config)?.try_into().map_err(|e| typed(config, e))?,
            verdicts: open(verdicts)?.try_into().map_err(|e| typed(verdicts, e))?,
            deny: open(deny)?.try_into().map_err(|e| typed(deny, e))?,
            ct_out: open(ct_out)?.try_into().map_err(|e| typed(ct_out, e))?,
            ct_in: open(ct_in)?.try_into().map_err(|e| typed(ct_in, e))?,
            hostports: open(hostports)?
                .try_into()
                .map_err(|e| typed(hostports, e))?,
            ifaces: open(ifaces)?.try_into().map_err(|e| typed(ifaces, e))?,
            uplinks: open(uplinks)?.try_into().map_err(|e| typed(uplinks, e))?,
            node_addrs: open(node_addrs)?
                .try_into()
                .map_err(|e| typed(node_addrs, e))?,
            if_stats: open(if_stats)?.try_into().map_err(|e| typed(if_stats, e))?,
            clat: open(clat)?.try_into().map_err(|e| typed(clat, e))?,
            endpoints6: open(endpoints6)?
                .try_into()
                .map_err(|e| typed(endpoints6, e))?,
            node_addrs6: open(node_addrs6)?
                .try_into()
                .map_err(|e| typed(node_addrs6, e))?,
            uplinks6: open(uplinks6)?.try_into().map_err(|e| typed(uplinks6, e))?,
            ct6_out: open(ct6_out)?.try_into().map_err(|e| typed(ct6_out, e))?,
            ct6_in: open(ct6_in)?.try_into().map_err(|e| typed(ct6_in, e))?,
            hostports6: open(hostports6)?
                .try_into()
                .map_err(|e| typed(hostports6, e))?,
        };
        Ok(Self {
            network: network.into(),
            pins: layout,
            prog_id,
            maps: Mutex::new(maps),
        })
    }

    /// Sets the fields this plugin owns (gateway, subnet) and keeps the others.
    pub(super) fn write_config(&self, cfg: &DatapathConfig) -> Result<(), EbpfError> {
        let mut maps = self.lock_maps();
        let current = maps
            .config
            .get(&maps::CONFIG_INDEX, 0)
            .map_err(|e| EbpfError::map(maps::CONFIG, "read", e))?;
        let (subnet6, gateway6, prefix6_len) =
            cfg.v6.as_ref().map_or(([0; 16], [0; 16], 0), |v6| {
                (
                    v6.subnet.network().octets(),
                    v6.gateway.octets(),
                    v6.subnet.prefix(),
                )
            });
        let wanted = NetConfig {
            gateway: addr(cfg.gateway),
            subnet: addr(cfg.subnet.network()),
            prefix_len: cfg.subnet.prefix(),
            subnet6,
            gateway6,
            prefix6_len,
            ..current
        };
        if wanted != current {
            maps.config
                .set(maps::CONFIG_INDEX, wanted, 0)
                .map_err(|e| EbpfError::map(maps::CONFIG, "write", e))?;
        }
        Ok(())
    }

    pub(super) fn lock_maps(&self) -> MutexGuard<'_, Maps> {
        // The maps hold no invariant a panicking holder could break: recover from poisoning.
        self.maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the pinned pod program (attaching needs `&mut`, so each caller gets its own handle).
    pub(super) fn pod_program(&self) -> Result<SchedClassifier, EbpfError> {
        self.program(progs::POD)
    }

    /// Opens the pinned program `name` (one of [`progs::ALL`]).
    pub(super) fn program(&self, name: &'static str) -> Result<SchedClassifier, EbpfError> {
        let path = self.pins.prog(name);
        SchedClassifier::from_pin(&path)
            .map_err(|e| EbpfError::program(name, format!("open pin {}", path.display()), e))
    }
}

/// An IPv4 address as the maps store it (network byte order).
pub(super) fn addr(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}
