//! The guest's initramfs: busybox, iproute2, iputils ping, nft, conntrack, bpftool and tayga with the
//! shared libraries they need (`readelf -d` NEEDED, resolved in the extracted packages), the
//! kernel modules the datapaths need (dependency order from a `depmod` run on the extracted
//! tree), the kernel config in `/boot`, the project's cross-built test executables and binaries
//! at the absolute paths they were built at (so `CARGO_BIN_EXE_*` baked into the tests holds in
//! the guest), and `/init`.

use std::{
    collections::{BTreeSet, HashMap},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use super::{
    cpio::{Node, Tree},
    debs::{Sysroot, TOOLS},
};
use crate::run::Cmd;

/// Modules to load (with what they depend on), where the kernel has them as modules: veth and
/// the bridge, clsact and TC BPF, nftables with NAT, conntrack and fib for the nft datapath, and
/// tun (`/dev/net/tun`: the conformance layer-3 uplink and the CLAT tests' tayga).
const MODULES: [&str; 23] = [
    "veth",
    "bridge",
    "sch_ingress",
    "cls_bpf",
    "act_bpf",
    "crc32c_generic",
    "nf_tables",
    "nf_conntrack",
    "nf_nat",
    "nft_ct",
    "nft_nat",
    "nft_masq",
    "nft_chain_nat",
    "nft_fib",
    "nft_fib_inet",
    "nft_fib_ipv4",
    "nft_fib_ipv6",
    "nft_reject",
    "nft_reject_inet",
    "nf_reject_ipv4",
    "nft_compat",
    "nf_conntrack_netlink",
    "tun",
];

/// Module directories copied whole, for the kernel's autoloading.
const AUTOLOAD_DIRS: [&str; 3] = ["kernel/net", "kernel/lib", "kernel/crypto"];

/// Adds the files below `base/rel` at `guest/rel`.
fn add_dir(tree: &mut Tree, base: &Path, rel: &Path, guest: &str) -> Result<()> {
    let Ok(rd) = fs::read_dir(base.join(rel)) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let sub = rel.join(e.file_name());
        if e.file_type()?.is_dir() {
            add_dir(tree, base, &sub, guest)?;
        } else {
            tree.add(Path::new(guest).join(&sub), Node::Host(e.path(), 0o644));
        }
    }
    Ok(())
}

/// iptables' command names, served by `xtables-nft-multi`.
const IPTABLES: [&str; 6] = [
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];

/// Where the tools' executables live in their packages.
const BIN_DIRS: [&str; 4] = ["bin", "sbin", "usr/bin", "usr/sbin"];

/// Builds the guest tree without `/init` (which needs the module list): the packages' tools and
/// libraries, the modules, and `same_path` (test executables, binaries) at the same absolute
/// paths; returns it with the module paths in load order.
///
/// # Errors
/// When a tool, library or module cannot be found, or depmod fails.
pub fn assemble(sys: &Sysroot, same_path: &[PathBuf]) -> Result<(Tree, Vec<String>)> {
    let mut tree = Tree::default();
    let libs = LibIndex::new(sys);
    let mut elves = Vec::new();
    for (tool, only) in TOOLS {
        let root = sys
            .pkg(tool)
            .with_context(|| format!("{tool} not extracted"))?;
        for dir in BIN_DIRS {
            let Ok(rd) = fs::read_dir(root.join(dir)) else {
                continue;
            };
            for e in rd.flatten() {
                let rel = Path::new(dir).join(e.file_name());
                let Some(real) = resolve(root, &rel, &libs.roots) else {
                    continue;
                };
                let wanted = only.is_empty() || only.iter().any(|o| rel.ends_with(o));
                if real.is_file() && wanted {
                    tree.add(Path::new("/").join(&rel), Node::Host(real.clone(), 0o755));
                    if is_elf(&real) {
                        elves.push(real);
                    }
                }
            }
        }
    }
    tree.add("/sbin/modprobe", Node::Symlink("/bin/kmod".into()));
    // What Debian's alternatives would link (the package ships no such links).
    for name in IPTABLES {
        tree.add(
            format!("/usr/sbin/{name}"),
            Node::Symlink("xtables-nft-multi".into()),
        );
    }
    // iptables loads its matches and targets with dlopen from <libdir>/xtables.
    let ipt = sys.pkg("iptables").context("iptables not extracted")?;
    for dir in libs.multiarch_dirs("usr/lib") {
        let Ok(rd) = fs::read_dir(ipt.join(&dir).join("xtables")) else {
            continue;
        };
        for e in rd.flatten() {
            let guest = Path::new("/")
                .join(&dir)
                .join("xtables")
                .join(e.file_name());
            tree.add(guest, Node::Host(e.path(), 0o755));
            elves.push(e.path());
        }
    }
    // The reference plugins live in /usr/lib/cni; their executables are not under a bin dir.
    let cni = sys
        .pkg("containernetworking-plugins")
        .context("containernetworking-plugins not extracted")?
        .join("usr/lib/cni");
    for e in fs::read_dir(&cni).with_context(|| format!("cannot list {}", cni.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            tree.add(
                Path::new("/usr/lib/cni").join(e.file_name()),
                Node::Host(e.path(), 0o755),
            );
            if is_elf(&e.path()) {
                elves.push(e.path());
            }
        }
    }
    // Shared libraries and the program interpreter, transitively.
    let mut seen = BTreeSet::new();
    while let Some(elf) = elves.pop() {
        let (interp, needed) = dynamic_deps(&elf)?;
        for want in interp.into_iter().chain(needed) {
            if !seen.insert(want.clone()) {
                continue;
            }
            let (guest, host) = libs
                .find(&want)
                .with_context(|| format!("{}: no {want} in the packages", elf.display()))?;
            tree.add(&guest, Node::Host(host.clone(), 0o755));
            elves.push(host);
        }
    }
    let (release, kernel) = sys.kernel()?;
    let config = kernel.join(format!("boot/config-{release}"));
    tree.add(format!("/boot/config-{release}"), Node::Host(config, 0o644));
    let order = modules(&mut tree, kernel, &release)?;
    for path in same_path {
        tree.add(path, Node::Host(path.clone(), 0o755));
    }
    for dir in ["/proc", "/sys", "/dev", "/run", "/tmp", "/root", "/etc"] {
        tree.add(dir, Node::Dir);
    }
    tree.add("/var/run", Node::Symlink("/run".into()));
    tree.add(
        "/etc/passwd",
        Node::Bytes(b"root:x:0:0:root:/root:/bin/sh\n".to_vec(), 0o644),
    );
    tree.add("/etc/group", Node::Bytes(b"root:x:0:\n".to_vec(), 0o644));
    Ok((tree, order))
}

/// Adds the [`MODULES`] (and what they depend on) under `/lib/modules/<release>/` and returns
/// their names in load order (dependencies first). Modules the kernel has built in are absent
/// from the package and skipped.
fn modules(tree: &mut Tree, kernel: &Path, release: &str) -> Result<Vec<String>> {
    let base = kernel.join("lib/modules").join(release);
    let dep_file = base.join("modules.dep");
    if !dep_file.is_file() {
        Cmd::new("depmod")
            .arg("-b")
            .arg(kernel)
            .arg(release)
            .status()
            .context("depmod (kmod) builds modules.dep for the extracted kernel")?;
    }
    let deps = fs::read_to_string(&dep_file)?;
    let mut by_name: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in deps.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        by_name.insert(
            module_name(module),
            (
                module.to_owned(),
                rest.split_whitespace().map(module_name).collect(),
            ),
        );
    }
    let mut order = Vec::new();
    fn visit(
        name: &str,
        by_name: &HashMap<String, (String, Vec<String>)>,
        order: &mut Vec<String>,
    ) {
        if order.iter().any(|o| o == name) {
            return;
        }
        let Some((_, deps)) = by_name.get(name) else {
            return;
        };
        // modules.dep lists every (transitive) dependency; load the deepest first.
        for d in deps.iter().rev() {
            visit(d, by_name, order);
        }
        order.push(name.to_owned());
    }
    for m in MODULES {
        visit(m, &by_name, &mut order);
    }
    if !order.iter().any(|m| m == "veth") {
        bail!("{release} has no veth module: not the kernel the recipe expects");
    }
    // Everything the kernel may autoload for the datapaths (nftables expressions, qdiscs,
    // conntrack helpers) through kmod's modprobe, with depmod's indexes.
    for dir in AUTOLOAD_DIRS {
        add_dir(
            tree,
            &base,
            Path::new(dir),
            &format!("/lib/modules/{release}"),
        )?;
    }
    for e in fs::read_dir(&base)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("modules.") {
            tree.add(
                format!("/lib/modules/{release}/{name}"),
                Node::Host(e.path(), 0o644),
            );
        }
    }
    let mut names = Vec::new();
    for name in &order {
        let (rel, _) = &by_name[name];
        let guest = format!("/lib/modules/{release}/{rel}");
        if !tree.contains(&guest) {
            tree.add(&guest, Node::Host(base.join(rel), 0o644));
        }
        names.push(guest);
    }
    Ok(names)
}

/// `kernel/net/bridge/bridge.ko` → `bridge` (modules.dep spells `-` and `_` as the file does;
/// the kernel treats them alike).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// Whether `path` starts with the ELF magic (scripts need no libraries).
fn is_elf(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The program interpreter and the NEEDED sonames of an ELF file (none for static ones).
fn dynamic_deps(elf: &Path) -> Result<(Option<String>, Vec<String>)> {
    let out = Cmd::new("readelf")
        .args(["-ldW"])
        .arg(elf)
        .probe()
        .with_context(|| format!("readelf {}", elf.display()))?;
    let interp = out
        .lines()
        .find_map(|l| l.split("[Requesting program interpreter: ").nth(1))
        .map(|s| s.trim_end_matches(']').to_owned());
    let needed = out
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1))
        .map(|s| s.trim_end_matches(']').to_owned())
        .collect();
    Ok((interp, needed))
}

/// Finds libraries by soname (or absolute path, for the interpreter) in the extracted packages.
struct LibIndex {
    roots: Vec<PathBuf>,
}

impl LibIndex {
    fn new(sys: &Sysroot) -> Self {
        Self {
            roots: sys.pkgs.iter().map(|(_, p)| p.clone()).collect(),
        }
    }

    /// The guest path and the host file (symlinks resolved) of `want`.
    fn find(&self, want: &str) -> Option<(PathBuf, PathBuf)> {
        let candidates: Vec<PathBuf> = if want.starts_with('/') {
            vec![PathBuf::from(want.trim_start_matches('/'))]
        } else {
            ["lib", "usr/lib"]
                .iter()
                .flat_map(|d| {
                    let multiarch = self.multiarch_dirs(d);
                    multiarch
                        .into_iter()
                        .chain([PathBuf::from(d)])
                        .map(|dir| dir.join(want))
                })
                .collect()
        };
        for rel in candidates {
            for root in &self.roots {
                if root.join(&rel).symlink_metadata().is_ok()
                    && let Some(real) = resolve(root, &rel, &self.roots)
                {
                    return Some((Path::new("/").join(&rel), real));
                }
            }
        }
        None
    }

    /// `lib/<triplet>` directories present in any package.
    fn multiarch_dirs(&self, base: &str) -> Vec<PathBuf> {
        let mut out = BTreeSet::new();
        for root in &self.roots {
            if let Ok(rd) = fs::read_dir(root.join(base)) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.ends_with("-linux-gnu") || n.ends_with("-linux-gnueabihf") {
                        out.insert(Path::new(base).join(n));
                    }
                }
            }
        }
        out.into_iter().collect()
    }
}

/// Follows symlinks of `rel` inside the extracted trees (absolute targets are relative to a
/// package root, never the host's), returning the host path of the real file.
fn resolve(root: &Path, rel: &Path, roots: &[PathBuf]) -> Option<PathBuf> {
    let mut rel = rel.to_path_buf();
    let mut root = root.to_path_buf();
    for _ in 0..16 {
        let here = root.join(&rel);
        let Ok(meta) = here.symlink_metadata() else {
            // The target may live in another package (e.g. a link into libc6's tree).
            root = roots
                .iter()
                .find(|r| r.join(&rel).symlink_metadata().is_ok())?
                .clone();
            continue;
        };
        if !meta.file_type().is_symlink() {
            return Some(here);
        }
        let target = fs::read_link(&here).ok()?;
        rel = if target.is_absolute() {
            target.strip_prefix("/").ok()?.to_path_buf()
        } else {
            normalize(&rel.parent().unwrap_or(Path::new("")).join(target))
        };
    }
    None
}

/// Removes `.` and `..` components lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
