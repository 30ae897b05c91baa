//! Opening a network's datapath for ADD and the agent: load and pin once under the loader
//! lock, reuse the pins afterwards, swap the programs when this build's object differs from
//! the pinned one.

use std::path::Path;

use smarter_common::{maps, progs};

use super::error::EbpfError;
use super::handle::EbpfDatapath;
use super::{object, pins, pins::PinLayout};
use crate::datapath::types::DatapathConfig;

impl EbpfDatapath {
    /// Opens the pinned programs and maps of `network` under `<bpffs_root>/<network>/v<N>/`,
    /// loading and pinning them first if absent, then writes `cfg` into the config map
    /// (preserving fields owned by others, e.g. the uplink).
    ///
    /// The first loader wins: everything happens under an exclusive `flock` on
    /// `<lock_dir>/ebpf-<network>.lock` (bpffs cannot hold regular files), so concurrent ADDs
    /// never race. The program pin is written last and marks a complete load.
    ///
    /// # Errors
    ///
    /// [`EbpfError::NotBpffs`] when `bpffs_root` is not a bpf filesystem (a missing
    /// `bpffs_root` is created when its parent is one: [`crate::datapath::ensure_pin_root`]);
    /// [`EbpfError::LayoutMismatch`] when an existing pinned map's type, key size, value size or
    /// max entries differ from this build (a changed layout is never silently reused);
    /// [`EbpfError::IncompletePins`] when the program is pinned but a map is not;
    /// [`EbpfError::Load`] when the kernel refuses the object (e.g. the verifier);
    /// [`EbpfError::InvalidName`], [`EbpfError::Io`], [`EbpfError::Map`], [`EbpfError::Program`],
    /// [`EbpfError::Pin`] for the rest.
    pub fn open_or_load(
        bpffs_root: &Path,
        network: &str,
        lock_dir: &Path,
        cfg: &DatapathConfig,
    ) -> Result<Self, EbpfError> {
        let layout = PinLayout::new(bpffs_root, network)?;
        pins::ensure_root(bpffs_root)?;
        let _lock = pins::lock(lock_dir, network)?;
        layout.create_dirs()?;

        let mut missing = None;
        for spec in &maps::ALL {
            let path = layout.map(spec.name);
            if pins::exists(&path)? {
                pins::open_map(&path, spec)?;
            } else {
                missing.get_or_insert(spec.name);
            }
        }
        let prog_pin = layout.prog(progs::POD);
        let recorded = object::recorded(lock_dir, network);
        let current = object::object_id();
        let mut upgraded = false;
        match (pins::exists(&prog_pin)?, missing) {
            (false, _) => object::load_and_pin(&layout, cfg.ct_max_entries)?,
            (true, None) if recorded.as_deref() != Some(current.as_str()) => {
                tracing::info!(
                    network,
                    from = recorded.as_deref().unwrap_or("unknown"),
                    to = %current,
                    "upgrading the pinned programs (maps and their state are kept)"
                );
                object::load_and_pin(&layout, cfg.ct_max_entries)?;
                upgraded = true;
            }
            (true, None) => {}
            (true, Some(map)) => {
                return Err(EbpfError::IncompletePins {
                    dir: layout.dir().into(),
                    missing: format!("maps/{map}"),
                });
            }
        }
        let datapath = Self::open_pins(network, layout, true)?;
        datapath.write_config(cfg)?;
        if upgraded {
            let renewed = datapath.reattach_all()?;
            tracing::info!(
                network,
                renewed,
                "attachments moved to the upgraded programs"
            );
        }
        if recorded.as_deref() != Some(current.as_str()) {
            object::record(lock_dir, network)?;
        }
        Ok(datapath)
    }
}
