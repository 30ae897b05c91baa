//! Builds the eBPF programs (`smarter-ebpf`) for `bpf{el,eb}-unknown-none` with aya-build and
//! leaves the object at `$OUT_DIR/smarter-ebpf`, where `datapath::ebpf` embeds it.
//!
//! The eBPF build needs rustup's nightly toolchain with `rust-src` (for `-Z build-std=core`) and
//! `bpf-linker` on `PATH`. They are checked first, so a fresh machine gets one sentence naming the
//! fix (`cargo xtask setup`) instead of a page of cargo output. `AYA_BUILD_SKIP=1` skips the eBPF
//! build (an empty object is embedded; loading it fails with a clear error at run time).

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

const TOOLCHAIN: &str = "nightly";
const FIX: &str = "run `cargo xtask setup`";

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("smarter-cni is inside the workspace");
    let ebpf_dir = workspace.join("smarter-ebpf");
    for dir in [&ebpf_dir, &workspace.join("smarter-common")] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");

    if skip_requested() {
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
        if let Err(e) = fs::write(out.join("smarter-ebpf"), b"") {
            return fail(&format!("cannot write the placeholder eBPF object: {e}"));
        }
        println!("cargo:warning=AYA_BUILD_SKIP is set: smarter-cni embeds no eBPF programs");
        return ExitCode::SUCCESS;
    }
    if let Err(sentence) = check_prerequisites() {
        return fail(&sentence);
    }

    let package = aya_build::Package {
        name: "smarter-ebpf",
        root_dir: ebpf_dir.to_str().expect("workspace path is UTF-8"),
        ..Default::default()
    };
    match aya_build::build_ebpf([package], aya_build::Toolchain::Nightly) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("building the eBPF programs failed: {e:#}")),
    }
}

fn skip_requested() -> bool {
    env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// `Err(one sentence)` when something the eBPF build needs is missing.
fn check_prerequisites() -> Result<(), String> {
    if find_on_path("bpf-linker").is_none() {
        return Err(format!(
            "smarter-cni's eBPF programs need bpf-linker, which is not on PATH: {FIX}"
        ));
    }
    if find_on_path("rustup").is_none() {
        return Err(format!(
            "smarter-cni's eBPF programs are built with rustup's {TOOLCHAIN} toolchain, but rustup \
             is not on PATH: install it from https://rustup.rs, then {FIX}"
        ));
    }
    let sysroot = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        .env_remove("RUSTC")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .ok_or_else(|| {
            format!(
                "smarter-cni's eBPF programs are built with the Rust {TOOLCHAIN} toolchain, \
                 which is not installed: {FIX}"
            )
        })?;
    let core_src = sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if !core_src.is_file() {
        return Err(format!(
            "smarter-cni's eBPF programs need the rust-src component of the {TOOLCHAIN} \
             toolchain, which is missing: {FIX}"
        ));
    }
    Ok(())
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let is_executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

/// Reports one sentence as a build error. `cargo::error` fails the build by itself; exiting
/// successfully keeps cargo from repeating the script's whole output after the sentence.
fn fail(sentence: &str) -> ExitCode {
    println!("cargo::error={sentence}");
    ExitCode::SUCCESS
}
