//! Removing a network's datapath once no pod uses it: the uplink and loopback programs, the
//! pins (maps, programs, links), the nftables tables, the bridge and the state directory.
//! Runs in the calling thread's network namespace; keeps going after a failure and reports
//! every one.

use std::fs;
use std::path::Path;

use super::Manifest;
use crate::cni::NetConf;
use crate::datapath::{self, DatapathKind, remove_network_pins};
use crate::netlink::Netlink;
use crate::state::StateStore;

/// The number of attachment records of `network`; `None` when they cannot be listed (then
/// the network must be treated as in use).
pub(super) fn attachment_count(state_dir: &Path, network: &str) -> Option<usize> {
    if !state_dir.join(network).is_dir() {
        return Some(0);
    }
    StateStore::open(state_dir, network)
        .and_then(|s| s.list())
        .map(|records| records.len())
        .ok()
}

/// Removes the datapath of the manifest's network: `(what was removed, what failed)`.
pub(super) fn remove_datapath(m: &Manifest) -> (Vec<String>, Vec<String>) {
    let conf = NetConf {
        name: m.network.clone(),
        bridge: m.bridge.clone(),
        bpffs_dir: m.bpffs_dir.clone(),
        state_dir: m.state_dir.clone(),
        ..NetConf::default()
    };
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut step = |what: String, result: Result<bool, String>| match result {
        Ok(true) => done.push(what),
        Ok(false) => {}
        Err(e) => failed.push(format!("{what}: {e}")),
    };
    step(
        format!(
            "eBPF programs and pins {}",
            m.bpffs_dir.join(&m.network).display()
        ),
        remove_ebpf(&conf),
    );
    step(
        format!("empty pin root {}", m.bpffs_dir.display()),
        remove_empty_pin_root(&m.bpffs_dir),
    );
    match datapath::open_existing(&conf, DatapathKind::Nftables) {
        Ok(Some(dp)) => step(
            format!("nftables tables smarter_{}", m.network),
            dp.remove().map(|()| true).map_err(|e| e.to_string()),
        ),
        Ok(None) => {
            // No `nft` here (the image has none): tables cannot be listed, so say so.
            if let Err(e) = datapath::usable(&conf, DatapathKind::Nftables) {
                step(
                    format!(
                        "nothing of nftables: not checked ({e}); remove any `smarter_{}` tables with \
                 `nft delete table`",
                        m.network
                    ),
                    Ok(true),
                );
            }
        }
        Err(e) => step(
            format!("nftables tables smarter_{}", m.network),
            Err(e.to_string()),
        ),
    }
    step(format!("bridge {}", m.bridge), remove_bridge(&m.bridge));
    let state = crate::state::StateDir::new(&m.state_dir, &m.network);
    step(
        format!("state directory {}", state.path().display()),
        state.remove_all().map_err(|e| e.to_string()),
    );
    (done, failed)
}

fn remove_ebpf(conf: &NetConf) -> Result<bool, String> {
    if !conf.bpffs_dir.join(&conf.name).exists() {
        return Ok(false);
    }
    // Programs off the interfaces (netlink filters outlive pins), then the pins; pins of an
    // incomplete load are removed all the same.
    match datapath::open_existing(conf, DatapathKind::Ebpf).map_err(|e| e.to_string())? {
        Some(dp) => dp.remove().map_err(|e| e.to_string())?,
        None => remove_network_pins(&conf.bpffs_dir, &conf.name).map_err(|e| e.to_string())?,
    }
    Ok(true)
}

/// Removes the pin root when nothing is left in it (other networks' pins keep it) and it is
/// on a bpf file system; `Ok(false)` when it is absent, in use, or not bpffs.
fn remove_empty_pin_root(bpffs_dir: &Path) -> Result<bool, String> {
    if !datapath::on_bpffs(bpffs_dir) {
        return Ok(false);
    }
    match fs::remove_dir(bpffs_dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        // A mount point (a bpffs mounted at the pin root itself): not ours to remove.
        Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

fn remove_bridge(name: &str) -> Result<bool, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let nl = Netlink::connect().map_err(|e| e.to_string())?;
        nl.delete_link(name).await.map_err(|e| e.to_string())
    })
}
