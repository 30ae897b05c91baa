//! `cargo xtask fuzz`: installs cargo-fuzz if missing, then runs every target of
//! `smarter-cni/fuzz` for a while on its committed corpus (new interesting inputs are added to
//! it), then minimizes the corpus. Crashes stop the run and leave the input under
//! `smarter-cni/fuzz/artifacts/<target>/`. Not part of `cargo xtask test` (which only replays the
//! corpora).

use std::path::Path;

use anyhow::Result;

use crate::run::Cmd;

/// The targets in `smarter-cni/fuzz/Cargo.toml`.
const TARGETS: [&str; 4] = ["netconf", "cni_args", "runtime_config", "dns_query"];

pub fn fuzz(root: &Path, seconds: u64, only: Option<&str>) -> Result<()> {
    if Cmd::new("cargo")
        .args(["fuzz", "--version"])
        .probe()
        .is_none()
    {
        Cmd::new("cargo").args(["install", "cargo-fuzz"]).status()?;
    }
    let dir = root.join("smarter-cni/fuzz");
    let target_dir = root.join("target/fuzz");
    for target in TARGETS.into_iter().filter(|t| only.is_none_or(|o| o == *t)) {
        let corpus = format!("corpus/{target}");
        let fuzz = |args: &[&str]| {
            Cmd::new("cargo")
                .arg("+nightly")
                .arg("fuzz")
                .args(args)
                .current_dir(&dir)
                // The fuzzed code needs no eBPF object; sanitizer flags must not reach the
                // BPF build.
                .env("AYA_BUILD_SKIP", "1")
                .env("CARGO_TARGET_DIR", &target_dir)
        };
        let time = format!("-max_total_time={seconds}");
        fuzz(&["run", target, &corpus, "--", &time, "-max_len=4096"]).status()?;
        fuzz(&["cmin", target, &corpus]).status()?;
    }
    Ok(())
}
