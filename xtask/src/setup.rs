//! `cargo xtask setup`: each step checks first and only acts when something is missing.

use std::{
    env, fs,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::run::Cmd;

/// Debian packages the project's tests, demo and benchmarks use.
const PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "iptables",
    "nftables",
    "bpftool",
    "iperf3",
    "ethtool",
    "containernetworking-plugins",
    "util-linux",
    "procps",
    "podman",
    "runc",
    // containerd 1.6 (its CRI plugin): the containerd_e2e suite.
    "containerd",
    "busybox-static",
    // The containerd_e2e suite's static pause binary (gcc -static, glibc's libc.a).
    "gcc",
    "libc6-dev",
    "buildah",
    // GNU time: the benchmark's peak-RSS figures of the plugin.
    "time",
    // The NAT64 of the IPv6-only uplink (`World::add_nat64`, the CLAT's world).
    "tayga",
];
const TOOLCHAIN: &str = "nightly";

pub fn setup(root: &Path) -> Result<()> {
    debian_packages(PACKAGES)?;
    ebpf_toolchain(root)?;
    println!("xtask setup: done");
    Ok(())
}

/// What building the eBPF programs needs: the nightly toolchain, its rust-src, bpf-linker.
pub fn ebpf_toolchain(root: &Path) -> Result<()> {
    nightly_toolchain()?;
    rust_src()?;
    bpf_linker(root)
}

/// Installs those of `packages` that are missing (as root; says what is missing otherwise).
pub fn debian_packages(packages: &[&str]) -> Result<()> {
    if find_on_path("dpkg-query").is_none() {
        println!(
            "setup: not a Debian system (no dpkg-query): install by hand if missing: {}",
            packages.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            Cmd::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .probe()
                .is_none_or(|status| !status.ends_with(" installed"))
        })
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages: all installed");
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        println!(
            "setup: skipping apt-get (not root); missing packages: {} (run `sudo cargo xtask setup` or install them)",
            missing.join(" ")
        );
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(" "));
    Cmd::new("apt-get").arg("update").status()?;
    Cmd::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
}

fn rustup() -> Result<()> {
    if find_on_path("rustup").is_none() {
        bail!(
            "rustup is not on PATH: install it from https://rustup.rs, then rerun `cargo xtask setup`"
        );
    }
    Ok(())
}

fn nightly_sysroot() -> Option<PathBuf> {
    Cmd::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        .probe()
        .map(PathBuf::from)
}

fn nightly_toolchain() -> Result<()> {
    rustup()?;
    if nightly_sysroot().is_some() {
        println!("setup: {TOOLCHAIN} toolchain: installed");
        return Ok(());
    }
    println!("setup: installing the {TOOLCHAIN} toolchain (eBPF programs need -Z build-std)");
    Cmd::new("rustup")
        .args(["toolchain", "install", TOOLCHAIN, "--profile", "minimal"])
        .status()
}

fn rust_src() -> Result<()> {
    let sysroot = nightly_sysroot().context("the nightly toolchain does not run")?;
    if sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
    {
        println!("setup: rust-src ({TOOLCHAIN}): installed");
        return Ok(());
    }
    println!("setup: adding rust-src to {TOOLCHAIN} (to build core for the BPF target)");
    Cmd::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", TOOLCHAIN])
        .status()
}

/// bpf-linker built against the LLVM that ships with the nightly toolchain: a prefix directory
/// under `target/` whose `lib/libLLVM.so` points at the toolchain's libLLVM, then
/// `LLVM_PREFIX=<prefix> cargo install bpf-linker --no-default-features --features llvm-<major>`.
fn bpf_linker(root: &Path) -> Result<()> {
    let runs = Cmd::new("rustup")
        .args(["run", TOOLCHAIN, "bpf-linker", "--version"])
        .probe();
    if let (Some(_), Some(version)) = (find_on_path("bpf-linker"), runs) {
        println!("setup: bpf-linker: installed ({version})");
        return Ok(());
    }
    let lib = nightly_sysroot()
        .context("the nightly toolchain does not run")?
        .join("lib");
    let (file, major) = toolchain_libllvm(&lib)?;
    let prefix = root.join("target/bpf-linker-llvm");
    let link = prefix.join("lib/libLLVM.so");
    fs::create_dir_all(prefix.join("lib"))
        .with_context(|| format!("cannot create {}", prefix.display()))?;
    if link.symlink_metadata().is_ok() {
        fs::remove_file(&link).with_context(|| format!("cannot replace {}", link.display()))?;
    }
    symlink(lib.join(&file), &link)
        .with_context(|| format!("cannot link {} to {file}", link.display()))?;
    println!(
        "setup: installing bpf-linker against the {TOOLCHAIN} toolchain's LLVM {major} ({file})"
    );
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let features = format!("llvm-{major}");
    Cmd::new(cargo)
        .args([
            "install",
            "--force",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(&features)
        .env("LLVM_PREFIX", &prefix)
        .status()
}

/// The toolchain's libLLVM file name and its LLVM major version, e.g.
/// `("libLLVM.so.22.1-rust-1.97.0-nightly", 22)` (or `libLLVM-22-rust-….so` on older layouts).
fn toolchain_libllvm(lib: &Path) -> Result<(String, u32)> {
    let names: Vec<String> = fs::read_dir(lib)
        .with_context(|| format!("cannot list {}", lib.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let major_of = |name: &str| -> Option<u32> {
        let rest = name
            .strip_prefix("libLLVM.so.")
            .or_else(|| name.strip_prefix("libLLVM-"))?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    // Prefer the versioned file (the real library) over the `libLLVM-N-…so` alias.
    let mut found: Vec<(String, u32)> = names
        .into_iter()
        .filter_map(|n| major_of(&n).map(|m| (n, m)))
        .collect();
    found.sort_by_key(|(n, _)| !n.starts_with("libLLVM.so."));
    found.into_iter().next().with_context(|| {
        format!(
            "no libLLVM in {}: is the nightly toolchain complete?",
            lib.display()
        )
    })
}

/// The first executable `program` on `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_toolchain_libllvm() {
        let dir = std::env::temp_dir().join(format!("xtask-llvm-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for name in [
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-x.so",
        ] {
            fs::write(dir.join(name), b"").unwrap();
        }
        let found = toolchain_libllvm(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found.unwrap(),
            ("libLLVM.so.22.1-rust-1.97.0-nightly".into(), 22)
        );
    }
}
