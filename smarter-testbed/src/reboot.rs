//! A power cut and a boot, as far as a world can have one: everything that lives in the
//! kernel or on tmpfs goes, the persistent state directory stays.

use std::io;

use super::{World, ns};

/// What survives a [`World::reboot`] besides the state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootId {
    /// The node boots with a new kernel boot id (a real boot): the recorded boot id of every
    /// network in the state directory is replaced with another boot's, since a test cannot
    /// change the kernel's.
    New,
    /// The recorded boot ids are left as they are: the plugin sees no boot, as on a kernel
    /// without `/proc/sys/kernel/random/boot_id`; only ownership checks protect the new pods.
    Unchanged,
}

/// A boot id that is not this boot's (a fixed, valid one).
pub const PREVIOUS_BOOT_ID: &str = "00000000-0000-4000-8000-00000000b007";

impl World {
    /// Simulates a power cut and a boot: every pod namespace is gone; the node's namespace
    /// loses its links (bridge, veths, the uplinks and the LAN, which are wired again as at
    /// boot, the layer-3 uplink with a new relay), its nftables ruleset, its conntrack table
    /// and the programs on its loopback; the bpffs is mounted afresh (every pin gone); the
    /// data directory (IPAM, on tmpfs under `/var/run` on a real node) is emptied. The state
    /// directory (`/var/lib`) is kept.
    ///
    /// # Errors
    /// When a step fails (`ip`, `nft`, `tc`, mount, the file system).
    pub fn reboot(&mut self, boot_id: BootId) -> io::Result<()> {
        self.pods.clear();
        self.far = None;
        self.stop_relay();
        let n = self.node.name().to_owned();
        // The pods' namespaces are destroyed asynchronously, their veths' host ends with
        // them: delete what is left, tolerating what vanishes meanwhile, until only `lo` is.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let links = self.node_links()?;
            if links.is_empty() {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(io::Error::other(format!("node links left: {links:?}")));
            }
            for link in links {
                let _ = ns::ip(&["-n", &n, "link", "del", &link]);
            }
        }
        self.node.exec(&["nft", "flush", "ruleset"])?;
        // The loopback stays (it cannot be deleted): take its filters off as a boot does.
        let _ = self
            .node
            .exec(&["tc", "qdisc", "del", "dev", "lo", "clsact"]);
        let _ = self.node.exec(&["conntrack", "-F"]);
        if let Some(wan) = &self.wan {
            let _ = wan.exec(&["conntrack", "-F"]);
        }
        self.bpffs.remount()?;
        match std::fs::remove_dir_all(self.data_dir()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        if boot_id == BootId::New
            && let Ok(dirs) = std::fs::read_dir(self.state_dir())
        {
            for d in dirs.flatten().filter(|d| d.path().is_dir()) {
                std::fs::write(d.path().join("boot_id"), format!("{PREVIOUS_BOOT_ID}\n"))?;
            }
        }
        self.wire_uplink()?;
        self.rewire_extras()
    }

    fn node_links(&self) -> io::Result<Vec<String>> {
        let out = self.node.exec(&["ip", "-o", "link", "show"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .filter(|n| n != "lo")
            .collect())
    }
}
