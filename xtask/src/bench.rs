//! `cargo xtask bench [--quick]`: builds the release binaries, then runs `smarter-bench` as root
//! (through sudo if needed), writing `bench/results/{results.json,results.md,chart.svg}`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::run::{self, Cmd};

pub fn bench(root: &Path, quick: bool) -> Result<()> {
    let build = [
        "build",
        "--release",
        "-p",
        "smarter-cni",
        "--bins",
        "-p",
        "smarter-bench",
    ];
    run::cargo(root, build, &[]).status()?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let release = target.join("release");
    let mut cmd = if nix::unistd::geteuid().is_root() {
        Cmd::new(release.join("smarter-bench"))
    } else {
        println!("xtask: the benchmark builds network namespaces and needs root: using sudo");
        Cmd::new("sudo").arg(release.join("smarter-bench"))
    };
    cmd = cmd
        .arg("--plugin")
        .arg(release.join("smarter-cni"))
        .arg("--agent")
        .arg(release.join("smarter-agent"))
        .arg("--out")
        .arg(root.join("bench/results"));
    if quick {
        cmd = cmd.arg("--quick");
    }
    cmd.status()
}
