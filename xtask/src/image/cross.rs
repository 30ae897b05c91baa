//! Cross-building for the image's and the QEMU guests' platforms: the static Rust target of a
//! platform (added with rustup), its Debian cross packages, the environment a cross `cargo`
//! run needs, and the check that what came out is a static ELF of the right machine.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};

use super::{Platform, Target};
use crate::{run::Cmd, setup};

/// The static Rust target for `p`, added with rustup when missing. Where rustup has no musl
/// std for it (armv7 since Rust 1.94), the glibc target linked with `+crt-static`.
pub(crate) fn rust_target(root: &Path, p: &Platform) -> Result<Target> {
    let installed = Cmd::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root)
        .probe()
        .unwrap_or_default();
    let has = |t: &str| installed.lines().any(|l| l.trim() == t);
    let add = |t: &str| {
        Cmd::new("rustup")
            .args(["target", "add", t])
            .current_dir(root)
            .status()
    };
    if has(p.musl) {
        return Ok(Target {
            triple: p.musl.into(),
            static_glibc: false,
        });
    }
    let err = match add(p.musl) {
        Ok(()) => {
            return Ok(Target {
                triple: p.musl.into(),
                static_glibc: false,
            });
        }
        Err(e) => e,
    };
    let Some((glibc, _)) = p.glibc_fallback else {
        return Err(err.context(format!("{} needs the Rust target {}", p.name, p.musl)));
    };
    println!(
        "xtask image: rustup has no standard library for {} with this toolchain ({err:#}); \
         {} uses {glibc} linked fully static (+crt-static) instead",
        p.musl, p.name
    );
    if !has(glibc) {
        add(glibc)?;
    }
    Ok(Target {
        triple: glibc.into(),
        static_glibc: true,
    })
}

/// Debian packages the chosen platforms need.
pub(crate) fn debian_packages(
    platforms: &[Platform],
    targets: &[Target],
    images: bool,
) -> Vec<&'static str> {
    let mut pkgs = Vec::new();
    for (p, t) in platforms.iter().zip(targets) {
        if !p.native() {
            pkgs.push(cross_gcc_package(p));
            pkgs.push("qemu-user-static");
        }
        if let (true, Some((_, libc))) = (t.static_glibc, p.glibc_fallback) {
            pkgs.push(libc);
        }
    }
    if images {
        pkgs.extend(["buildah", "podman", "runc"]);
    }
    pkgs.sort_unstable();
    pkgs.dedup();
    pkgs
}

pub(super) fn cross_gcc_package(p: &Platform) -> &'static str {
    match p.gnu {
        "x86_64-linux-gnu" => "gcc-x86-64-linux-gnu",
        "aarch64-linux-gnu" => "gcc-aarch64-linux-gnu",
        _ => "gcc-arm-linux-gnueabihf",
    }
}

/// `cargo build --release` of the four binaries for one target; returns the output directory.
pub(super) fn build(root: &Path, cross_dir: &Path, p: &Platform, t: &Target) -> Result<PathBuf> {
    let cmd = crate::run::cargo(
        root,
        [
            "build",
            "--release",
            "--locked",
            "-p",
            "smarter-cni",
            "--bins",
            "--target",
        ],
        &[t.triple.clone().into()],
    )
    .env("CARGO_TARGET_DIR", cross_dir);
    println!("xtask image: building {} ({})", p.oci(), t.triple);
    cross_env(cmd, p, t)?.status()?;
    Ok(cross_dir.join(&t.triple).join("release"))
}

/// Adds to a cargo command for target `t` the cross linker and, for a glibc target, the
/// `+crt-static` flags: its binaries are static executables for `p`.
pub(crate) fn cross_env(mut cmd: Cmd, p: &Platform, t: &Target) -> Result<Cmd> {
    let key = t.triple.to_uppercase().replace('-', "_");
    if !p.native() {
        let linker = format!("{}-gcc", p.gnu);
        ensure_tool(&linker)?;
        cmd = cmd.env(format!("CARGO_TARGET_{key}_LINKER"), linker);
    }
    if t.static_glibc {
        cmd = cmd.env(
            format!("CARGO_TARGET_{key}_RUSTFLAGS"),
            "-C target-feature=+crt-static",
        );
    }
    Ok(cmd)
}

/// Fails unless `path` is an ELF executable for `machine` without a program interpreter
/// (`PT_INTERP`), i.e. statically linked.
pub(crate) fn check_static_elf(path: &Path, machine: u16) -> Result<()> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let field = |at: usize, len: usize| -> Result<u64> {
        let b = bytes
            .get(at..at + len)
            .with_context(|| format!("{}: truncated ELF header", path.display()))?;
        Ok(b.iter().rev().fold(0, |n, &x| (n << 8) | u64::from(x)))
    };
    ensure!(
        bytes.starts_with(b"\x7fELF") && bytes.get(5) == Some(&1),
        "{} is not a little-endian ELF file",
        path.display()
    );
    let elf64 = bytes.get(4) == Some(&2);
    let found = field(18, 2)?;
    ensure!(
        found == u64::from(machine),
        "{}: ELF machine {found}, expected {machine}",
        path.display()
    );
    let (phoff, phentsize, phnum) = if elf64 {
        (field(32, 8)?, field(54, 2)?, field(56, 2)?)
    } else {
        (field(28, 4)?, field(42, 2)?, field(44, 2)?)
    };
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize)?;
        if field(at, 4)? == 3 {
            bail!(
                "{} is dynamically linked (it has a program interpreter)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Fails naming `name` when it is not on the PATH.
pub(crate) fn ensure_tool(name: &str) -> Result<()> {
    if setup::find_on_path(name).is_none() {
        bail!("{name} is not installed (run `cargo xtask image` as root to install it)");
    }
    Ok(())
}
