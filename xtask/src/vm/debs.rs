//! The guest's Debian bookworm packages: downloaded with `apt-get download` for the guest's
//! architecture and extracted with `dpkg-deb -x`, once, into a cache under `target/vm-test/`.
//!
//! Layout of the cache for one architecture (`<target>/vm-test/<deb-arch>/`):
//! `debs/*.deb` (what apt-get downloaded) and `pkgs/<package>/` (each package extracted on its
//! own, with `.extracted` written last, so an interrupted extraction is redone and a finished one
//! is never repeated). A second run downloads and extracts nothing.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::run::Cmd;

/// The guest tools besides the kernel, each with the executables taken from it (empty: all);
/// their libraries come from the dependency closure. util-linux's `nsenter`: busybox's would
/// run its own applets (`ping`, `ip`) instead of the real tools. kmod: the kernel's module
/// autoloading (`/sbin/modprobe`), which nftables relies on for its expressions. The
/// reference plugins and iptables (nft backend): the conformance suite's oracle chain. tayga:
/// the NAT64 of the CLAT tests (`World::add_nat64`; it needs only libc).
pub const TOOLS: [(&str, &[&str]); 11] = [
    ("busybox-static", &["busybox"]),
    ("iproute2", &[]),
    ("iputils-ping", &[]),
    ("nftables", &[]),
    ("conntrack", &[]),
    ("bpftool", &[]),
    ("util-linux", &["nsenter"]),
    ("kmod", &["kmod"]),
    ("containernetworking-plugins", &[]),
    ("iptables", &["xtables-nft-multi"]),
    ("tayga", &["tayga"]),
];

/// The packages of one architecture, extracted.
pub struct Sysroot {
    /// One extracted directory per package name.
    pub pkgs: Vec<(String, PathBuf)>,
    /// The versioned kernel package, e.g. `linux-image-6.1.0-57-arm64`.
    pub kernel_pkg: String,
}

impl Sysroot {
    /// The extracted tree of `package`.
    pub fn pkg(&self, package: &str) -> Option<&Path> {
        self.pkgs
            .iter()
            .find(|(n, _)| n == package)
            .map(|(_, p)| p.as_path())
    }

    /// The kernel release (`6.1.0-57-arm64`) and the kernel package's tree.
    ///
    /// # Errors
    /// When the package has no `boot/vmlinuz-*`.
    pub fn kernel(&self) -> Result<(String, &Path)> {
        let tree = self.pkg(&self.kernel_pkg).context("kernel package")?;
        let boot = tree.join("boot");
        for e in fs::read_dir(&boot).with_context(|| format!("cannot list {}", boot.display()))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some(release) = name.strip_prefix("vmlinuz-") {
                return Ok((release.to_owned(), tree));
            }
        }
        bail!("{} has no vmlinuz", boot.display())
    }
}

/// `dpkg --add-architecture` for `deb_arch` (and `apt-get update`) unless dpkg has it.
///
/// # Errors
/// When dpkg or apt-get fail, or we are not root and the architecture is missing.
pub fn ensure_architecture(deb_arch: &str) -> Result<()> {
    let native = Cmd::new("dpkg")
        .arg("--print-architecture")
        .probe()
        .unwrap_or_default();
    let foreign = Cmd::new("dpkg")
        .arg("--print-foreign-architectures")
        .probe()
        .unwrap_or_default();
    if native == deb_arch || foreign.lines().any(|l| l.trim() == deb_arch) {
        return Ok(());
    }
    ensure!(
        nix::unistd::geteuid().is_root(),
        "dpkg does not know the architecture {deb_arch}: run `sudo cargo xtask setup`"
    );
    Cmd::new("dpkg")
        .args(["--add-architecture", deb_arch])
        .status()?;
    Cmd::new("apt-get").args(["update", "-q"]).status()
}

/// Downloads (if missing) and extracts (if not yet) the kernel, the [`TOOLS`] and the
/// libraries they depend on for `deb_arch` into `cache`.
///
/// # Errors
/// When apt-get or dpkg-deb fail.
pub fn prepare(cache: &Path, deb_arch: &'static str, flavour: &str) -> Result<Sysroot> {
    ensure_architecture(deb_arch)?;
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    let kernel_pkg = kernel_package(deb_arch, flavour)?;
    let mut wanted = vec![kernel_pkg.clone()];
    wanted.extend(libraries(deb_arch)?);
    wanted.extend(TOOLS.iter().map(|(t, _)| (*t).to_owned()));
    wanted.sort();
    wanted.dedup();

    let have = |pkg: &str| find_deb(&debs, pkg);
    let missing: Vec<String> = wanted
        .iter()
        .filter(|p| have(p).is_none())
        .map(|p| format!("{p}:{deb_arch}"))
        .collect();
    if missing.is_empty() {
        println!(
            "vm-test: {deb_arch}: {} packages cached in {}",
            wanted.len(),
            debs.display()
        );
    } else {
        println!(
            "vm-test: {deb_arch}: downloading {} packages",
            missing.len()
        );
        Cmd::new("apt-get")
            .arg("download")
            .args(&missing)
            .current_dir(&debs)
            .status()?;
    }
    let mut pkgs = Vec::new();
    for pkg in &wanted {
        let deb = have(pkg).with_context(|| format!("apt-get did not download {pkg}"))?;
        let dir = cache.join("pkgs").join(pkg);
        let stamp = dir.join(".extracted");
        let stamp_of = deb.file_name().unwrap_or_default().to_string_lossy();
        if fs::read_to_string(&stamp).ok().as_deref() != Some(&*stamp_of) {
            if dir.exists() {
                fs::remove_dir_all(&dir)?;
            }
            fs::create_dir_all(&dir)?;
            Cmd::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&dir)
                .status()?;
            fs::write(&stamp, stamp_of.as_bytes())?;
        }
        pkgs.push((pkg.clone(), dir));
    }
    Ok(Sysroot { pkgs, kernel_pkg })
}

/// The versioned kernel package the meta-package `linux-image-<flavour>` depends on.
fn kernel_package(deb_arch: &str, flavour: &str) -> Result<String> {
    let meta = format!("linux-image-{flavour}:{deb_arch}");
    let out = Cmd::new("apt-cache")
        .args(["depends", &meta])
        .probe()
        .with_context(|| format!("apt-cache depends {meta} failed (is {deb_arch} added?)"))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(|d| d.split(':').next().unwrap_or(d))
        .find(|d| d.starts_with("linux-image-6."))
        .map(str::to_owned)
        .with_context(|| format!("{meta} names no linux-image-6.* package"))
}

/// The library packages (`lib*`, `zlib1g`; of `deb_arch`) in the dependency closure of the [`TOOLS`].
fn libraries(deb_arch: &str) -> Result<Vec<String>> {
    let native = Cmd::new("dpkg")
        .arg("--print-architecture")
        .probe()
        .unwrap_or_default();
    let mut cmd = Cmd::new("apt-cache").args([
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
    ]);
    for (t, _) in TOOLS {
        cmd = cmd.arg(format!("{t}:{deb_arch}"));
    }
    let out = cmd
        .probe()
        .context("apt-cache depends --recurse of the guest tools failed")?;
    let mut libs: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
        .filter_map(|l| match l.split_once(':') {
            Some((name, arch)) if arch == deb_arch => Some(name),
            None if native == deb_arch => Some(l),
            _ => None,
        })
        .filter(|n| n.starts_with("lib") || n.starts_with("zlib"))
        .map(str::to_owned)
        .collect();
    libs.sort();
    libs.dedup();
    Ok(libs)
}

/// The downloaded `.deb` of `pkg` in `dir` (`<pkg>_<version>_<arch>.deb`).
fn find_deb(dir: &Path, pkg: &str) -> Option<PathBuf> {
    let prefix = format!("{pkg}_");
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}
