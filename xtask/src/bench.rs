//! `cargo xtask bench [--quick]`: builds the release binaries, then runs `smarter-bench` as root
//! (through sudo if needed), writing `bench/results/{results.json,results.md,chart.svg}`.

use std::path::Path;

use anyhow::Result;

use crate::run;

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
    let release = crate::release_dir(root);
    let mut cmd = crate::as_root(&release.join("smarter-bench"), "the benchmark")
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
