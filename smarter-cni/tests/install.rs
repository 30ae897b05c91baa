//! The installer against host-like directories in a temp dir: files and modes, atomic
//! replace (readers and a running plugin keep the old inode), idempotence (a second run
//! changes nothing, not even an mtime), an invalid ConfigMap keeps the previous conflist, and
//! uninstall removes exactly what was installed.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use smarter_cni::install::{
    self, CniBinDir, DEFAULT_BINARIES, DEFAULT_CONFLIST_NAME, InstallConfig, InstallError,
    Manifest, UninstallConfig, conflist_from,
};

/// A host stand-in: `/opt/cni/bin`, `/etc/cni/net.d`, a state dir, and the image's binaries.
struct Host {
    tmp: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let h = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(h.image()).unwrap();
        fs::create_dir_all(h.conf_dir()).unwrap();
        h.set_binaries(b"v1");
        h
    }
    fn root(&self) -> &Path {
        self.tmp.path()
    }
    fn image(&self) -> PathBuf {
        self.root().join("image/bin")
    }
    fn bin_dir(&self) -> PathBuf {
        self.root().join("opt/cni/bin")
    }
    fn conf_dir(&self) -> PathBuf {
        self.root().join("etc/cni/net.d")
    }
    fn state_dir(&self) -> PathBuf {
        self.root().join("var/lib/smarter-cni")
    }
    fn conflist(&self) -> PathBuf {
        self.conf_dir().join(DEFAULT_CONFLIST_NAME)
    }
    /// The default `BPFFS_DIR` of [`Host::config`]: under a plain directory, not bpffs.
    fn pin_root(&self) -> PathBuf {
        self.root().join("sys/fs/bpf/smarter-cni")
    }
    fn set_binaries(&self, version: &[u8]) {
        for b in DEFAULT_BINARIES {
            fs::write(self.image().join(b), [b.as_bytes(), b" ", version].concat()).unwrap();
        }
    }
    /// The knobs of a ConfigMap: these pairs plus this host's state directory.
    fn config(&self, knobs: &[(&str, &str)]) -> Result<InstallConfig, InstallError> {
        let mut pairs: Vec<(String, String)> = knobs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        pairs.push(("STATE_DIR".into(), self.state_dir().display().to_string()));
        // Never the machine's /sys/fs/bpf: a plain directory here (no bpffs, so the installer
        // creates no pin root and warns), unless the test names one.
        if !knobs.iter().any(|(k, _)| *k == "BPFFS_DIR") {
            pairs.push(("BPFFS_DIR".into(), self.pin_root().display().to_string()));
        }
        let conflist =
            conflist_from(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))?;
        Ok(InstallConfig {
            source_dir: self.image(),
            binaries: DEFAULT_BINARIES.iter().map(|s| (*s).to_owned()).collect(),
            cni_bin_dir: CniBinDir::Auto {
                root: self.root().to_path_buf(),
            },
            cni_conf_dir: self.conf_dir(),
            conflist_name: DEFAULT_CONFLIST_NAME.into(),
            conflist,
        })
    }
    /// Uninstalls the files; the datapath part (pins, nftables, bridge) is left out here, as
    /// it works on the calling thread's network namespace: `install_datapath.rs` tests it in
    /// a namespace world.
    fn uninstall(&self, force: bool) -> install::UninstallReport {
        install::uninstall(&UninstallConfig {
            state_dir: self.state_dir(),
            force,
            keep_datapath: true,
        })
        .unwrap()
    }
    /// Every file under the root with its mode, inode and mtime.
    fn snapshot(&self) -> Vec<(PathBuf, u32, u64, i64, i64)> {
        common::tree_snapshot(self.root())
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn install_places_binaries_and_conflist_with_their_modes() {
    let h = Host::new();
    let report = install::install(
        &h.config(&[("CIDR", "172.39.0.0/16"), ("GW", "172.39.0.1")])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report.written.len(), 3, "{report:?}");
    for b in DEFAULT_BINARIES {
        let p = h.bin_dir().join(b);
        assert_eq!(mode(&p), 0o755, "{}", p.display());
        assert_eq!(fs::read(&p).unwrap(), [b.as_bytes(), b" v1"].concat());
    }
    assert_eq!(mode(&h.conflist()), 0o644);
    let doc: Value = serde_json::from_slice(&fs::read(h.conflist()).unwrap()).unwrap();
    assert_eq!(doc["name"], "smartnet");
    assert_eq!(doc["plugins"][0]["type"], "smarter-cni");
    assert_eq!(doc["plugins"][0]["subnet"], "172.39.0.0/16");
    assert_eq!(doc["plugins"][0]["capabilities"]["portMappings"], true);
    // What the agent reads is what the plugin would accept.
    smarter_cni::agent::parse_network_config(&fs::read(h.conflist()).unwrap()).unwrap();
    let m = Manifest::load(&h.state_dir()).unwrap().expect("manifest");
    assert_eq!(m.files.len(), 3);
    assert_eq!(mode(&Manifest::path_in(&h.state_dir())), 0o600);
    // Nothing but our files: no temporary file left behind.
    let names: Vec<_> = fs::read_dir(h.conf_dir()).unwrap().flatten().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn libexec_cni_is_used_where_it_exists() {
    let h = Host::new();
    let libexec = h.root().join("usr/libexec/cni");
    fs::create_dir_all(&libexec).unwrap();
    install::install(&h.config(&[]).unwrap()).unwrap();
    assert!(libexec.join("smarter-cni").is_file());
    assert!(!h.bin_dir().exists());
}

#[test]
fn second_run_changes_nothing() {
    let h = Host::new();
    let cfg = h.config(&[("DENY_CIDRS", "192.168.0.0/16")]).unwrap();
    install::install(&cfg).unwrap();
    let before = h.snapshot();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let report = install::install(&cfg).unwrap();
    assert!(report.written.is_empty(), "{report:?}");
    assert_eq!(report.unchanged.len(), 3);
    assert_eq!(h.snapshot(), before, "inodes, modes and mtimes unchanged");
}

#[test]
fn changes_replace_atomically_even_under_a_running_plugin() {
    let h = Host::new();
    install::install(&h.config(&[]).unwrap()).unwrap();
    let plugin = h.bin_dir().join("smarter-cni");
    // A real executable running from the installed path: writing into it in place would fail
    // with ETXTBSY; a rename over it cannot.
    fs::copy("/bin/sleep", &plugin).unwrap();
    let mut running = Command::new(&plugin).arg("30").spawn().unwrap();
    let old_conf = fs::File::open(h.conflist()).unwrap();
    let old_ino = fs::metadata(h.conflist()).unwrap().ino();

    h.set_binaries(b"v2");
    let report = install::install(&h.config(&[("CT_MAX_ENTRIES", "131072")]).unwrap()).unwrap();
    running.kill().unwrap();
    running.wait().unwrap();
    assert_eq!(report.written.len(), 3, "{report:?}");
    assert_eq!(fs::read(&plugin).unwrap(), b"smarter-cni v2");
    assert_ne!(
        fs::metadata(h.conflist()).unwrap().ino(),
        old_ino,
        "renamed, not rewritten"
    );
    let old: Value = serde_json::from_reader(old_conf).unwrap();
    assert!(
        old["plugins"][0].get("ctMaxEntries").is_none(),
        "a reader keeps the old file whole"
    );
    let new: Value = serde_json::from_slice(&fs::read(h.conflist()).unwrap()).unwrap();
    assert_eq!(new["plugins"][0]["ctMaxEntries"], 131_072);
}

#[test]
fn invalid_configuration_keeps_the_previous_one() {
    let h = Host::new();
    install::install(
        &h.config(&[("CIDR", "10.7.0.0/16"), ("GW", "10.7.0.1")])
            .unwrap(),
    )
    .unwrap();
    let before = h.snapshot();
    let err = h
        .config(&[("CIDR", "10.8.0.0/16"), ("GW", "10.7.0.1")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ConfigMap key GW") && err.contains("outside subnet 10.8.0.0/16"),
        "{err}"
    );
    assert!(err.contains("unchanged"), "{err}");
    assert_eq!(h.snapshot(), before);
}

#[test]
fn missing_binary_is_refused_before_anything_changes() {
    let h = Host::new();
    fs::remove_file(h.image().join("smarter-bpfctl")).unwrap();
    let err = install::install(&h.config(&[]).unwrap()).unwrap_err();
    assert!(matches!(err, InstallError::MissingBinary { .. }), "{err}");
    assert!(!h.bin_dir().join("smarter-cni").exists());
    assert!(!h.conflist().exists());
}

#[test]
fn uninstall_removes_exactly_what_was_installed() {
    let h = Host::new();
    // Someone else's files in the same directories stay.
    fs::create_dir_all(h.bin_dir()).unwrap();
    fs::write(h.bin_dir().join("bridge"), b"reference plugin").unwrap();
    fs::write(h.conf_dir().join("10-flannel.conflist"), b"{}").unwrap();
    let before = h.snapshot();
    install::install(&h.config(&[]).unwrap()).unwrap();
    let report = h.uninstall(false);
    assert_eq!(report.removed.len(), 3, "{report:?}");
    assert!(report.kept.is_empty(), "{report:?}");
    // Only our files went (the manifest too).
    let after: Vec<_> = h.snapshot().into_iter().map(|f| f.0).collect();
    let before: Vec<_> = before.into_iter().map(|f| f.0).collect();
    assert_eq!(after, before);
    // A second uninstall finds nothing to do.
    assert!(!h.uninstall(false).had_manifest);
}

#[test]
fn uninstall_leaves_files_changed_since_and_binaries_pods_still_need() {
    let h = Host::new();
    install::install(&h.config(&[]).unwrap()).unwrap();
    // An attachment record: a pod still on the network.
    let records = h.state_dir().join("smartnet");
    fs::create_dir_all(&records).unwrap();
    fs::write(records.join("c1+eth0.json"), ATTACHMENT).unwrap();
    fs::write(
        h.bin_dir().join("smarter-bpfctl"),
        b"replaced by the operator",
    )
    .unwrap();
    let report = h.uninstall(false);
    assert_eq!(report.attachments, 1);
    assert_eq!(report.removed, vec![h.conflist()], "{report:?}");
    assert!(
        h.bin_dir().join("smarter-cni").exists(),
        "kept for the pod's DEL"
    );
    assert!(
        h.bin_dir().join("smarter-bpfctl").exists(),
        "not ours any more"
    );
    assert!(records.join("c1+eth0.json").exists(), "datapath state kept");
    // Once the pod is gone, the rest goes.
    fs::remove_file(records.join("c1+eth0.json")).unwrap();
    let report = h.uninstall(false);
    assert_eq!(
        report.removed,
        vec![h.bin_dir().join("smarter-cni")],
        "{report:?}"
    );
    assert!(!h.uninstall(false).had_manifest);
}

#[test]
fn renamed_conflist_replaces_the_old_one() {
    let h = Host::new();
    install::install(&h.config(&[]).unwrap()).unwrap();
    let mut cfg = h.config(&[]).unwrap();
    cfg.conflist_name = "00-smarter-cni.conflist".into();
    let report = install::install(&cfg).unwrap();
    assert_eq!(report.removed, vec![h.conflist()]);
    assert!(h.conf_dir().join("00-smarter-cni.conflist").exists());
}

#[test]
fn a_config_sorting_first_is_reported() {
    let h = Host::new();
    fs::write(h.conf_dir().join("00-other.conf"), b"{}").unwrap();
    fs::write(h.conf_dir().join("10-flannel.conflist"), b"{}").unwrap();
    let report = install::install(&h.config(&[]).unwrap()).unwrap();
    let sorting: Vec<_> = report
        .warnings
        .iter()
        .filter(|w| w.contains("sort(s) before"))
        .collect();
    assert_eq!(sorting.len(), 1, "{report:?}");
    assert!(sorting[0].contains("00-other.conf"));
    assert!(!sorting[0].contains("10-flannel"));
}

#[test]
fn install_creates_the_pin_root_on_bpffs_and_nothing_elsewhere() {
    if !smarter_testbed::require_root("install_pin_root") {
        return;
    }
    let h = Host::new();
    // A node's layout: bpffs mounted (plays /sys/fs/bpf), the pin root not there yet.
    let bpffs = smarter_testbed::ScratchBpfFs::new("install").unwrap();
    let root = bpffs.path().join("smarter-cni");
    let root_text = root.display().to_string();
    let knobs = [("BPFFS_DIR", root_text.as_str())];
    let report = install::install(&h.config(&knobs).unwrap()).unwrap();
    assert_eq!(report.created_pin_root.as_deref(), Some(root.as_path()));
    assert!(
        !report.warnings.iter().any(|w| w.contains("eBPF")),
        "{report:?}"
    );
    let meta = fs::metadata(&root).unwrap();
    assert!(meta.is_dir());
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, 0));
    // Idempotent: a second run finds it and creates nothing.
    let again = install::install(&h.config(&knobs).unwrap()).unwrap();
    assert_eq!(again.created_pin_root, None, "{again:?}");
    // A pin root someone else could write to is refused (the plugin would refuse it too).
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    let unsafe_root = install::install(&h.config(&knobs).unwrap()).unwrap();
    assert!(
        unsafe_root
            .warnings
            .iter()
            .any(|w| w.contains(&root_text) && w.contains("writable by others")),
        "{unsafe_root:?}"
    );
    fs::remove_dir(&root).unwrap();

    // datapath iptables: no pin root.
    let nft = [("BPFFS_DIR", root_text.as_str()), ("DATAPATH", "nftables")];
    let report = install::install(&h.config(&nft).unwrap()).unwrap();
    assert_eq!(report.created_pin_root, None);
    assert!(!root.exists());

    // Off bpffs: nothing created, a warning naming the path (auto: nftables; ebpf: 103).
    for (datapath, consequence) in [("auto", "nftables"), ("ebpf", "code 103")] {
        let knobs = [("DATAPATH", datapath)];
        let report = install::install(&h.config(&knobs).unwrap()).unwrap();
        assert_eq!(report.created_pin_root, None);
        let pin_root = h.pin_root().display().to_string();
        assert!(
            report.warnings.iter().any(|w| w.contains(&pin_root)
                && w.contains("not on a bpf filesystem")
                && w.contains(consequence)),
            "{datapath}: {report:?}"
        );
        assert!(!h.root().join("sys").exists(), "nothing created off bpffs");
    }
}

const ATTACHMENT: &str = r#"{"containerId":"c1","ifname":"eth0","netns":"/proc/1/ns/net",
"hostIfname":"smv000000000001","ip":"172.39.0.2","prefix":16,"mac":"02:00:00:00:00:01",
"datapath":"ebpf","result":{}}"#;
