//! Project tasks, run as `cargo xtask <task>` (alias in `.cargo/config.toml`).
//!
//! - `setup`: install what building and testing need (Debian packages, the nightly toolchain
//!   with rust-src, bpf-linker), skipping what is already there;
//! - `test`: setup, then `cargo test --workspace`;
//! - `demo`: setup, build the demo example, run it as root;
//! - `bench`: the benchmark (reference chain vs iptables vs eBPF vs the bare-veth limit);
//! - `fuzz`: cargo-fuzz on `netconf`, `cni_args`, `runtime_config`, `dns_query`, a while each;
//! - `vm-test`: the datapath tests inside QEMU guests of Debian's 6.1 kernels (arm64, armhf,
//!   amd64), from the same test sources cross-built for each; `test` runs it after the workspace;
//! - `image`: static binaries and `FROM scratch` images for amd64, arm64 and armv7 (buildah);
//! - `layers`: the import graph's circles and upward imports (also checked by the tests);
//! - `clippy`, `fmt`: the workspace's lints and formatting.

mod bench;
mod fuzz;
mod image;
mod layers;
mod run;
mod setup;
mod vm;

use std::{ffi::OsString, path::PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "smarter-cni project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install missing prerequisites: Debian packages (as root), the nightly toolchain with
    /// rust-src, bpf-linker. Idempotent.
    Setup,
    /// Run setup, then `cargo test --workspace [ARGS]` with RUST_BACKTRACE=1, then `vm-test`
    /// (all three guests) unless `--no-vm`.
    Test {
        /// Skip the QEMU guests (`vm-test`).
        #[arg(long)]
        no_vm: bool,
        /// Passed to `cargo test` (e.g. `-- --nocapture`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run setup, build the demo example (as the calling user) and run it as root.
    Demo {
        /// Passed to the demo.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run setup, build release binaries and benchmark the reference chain, smarter-cni's
    /// iptables and eBPF datapaths and the bare-veth limit (as root); results in bench/results.
    Bench(bench::BenchArgs),
    /// Fuzz the input parsers (cargo-fuzz, nightly) on the committed corpora, then minimize
    /// them; not part of `test`, which replays the corpora.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// Only this target (`netconf`, `cni_args`, `runtime_config`).
        #[arg(long)]
        target: Option<String>,
    },
    /// Cross-compile static release binaries for amd64, arm64 and armv7 and build one
    /// `FROM scratch` image per platform plus a manifest list with buildah (deploy/Containerfile).
    Image(image::ImageArgs),
    /// Print the import circles of every crate of the workspace, and the upward imports of
    /// those that declare layers (the tests fail on any).
    Layers,
    /// Boot Debian bookworm 6.1 kernels (arm64, armhf, amd64) under QEMU with the project's
    /// cross-built static binaries and test executables in an initramfs, and run the datapath
    /// tests inside (as root; no network in the guest).
    VmTest(vm::VmArgs),
    /// `cargo clippy --workspace --all-targets [ARGS]`.
    Clippy {
        /// Passed to `cargo clippy` (e.g. `-- -D warnings`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// `cargo fmt --all [ARGS]`.
    Fmt {
        /// Passed to `cargo fmt` (e.g. `--check`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> Result<()> {
    let root = workspace_root();
    match Cli::parse().task {
        Task::Setup => {
            setup::setup(&root)?;
            vm::setup(&root)
        }
        Task::Test { no_vm, args } => {
            setup::setup(&root)?;
            let vm = !no_vm && nix::unistd::geteuid().is_root();
            // The guests' cross build runs beside the workspace tests, at SCHED_IDLE.
            let pending = if vm {
                Some(vm::start_build(&root)?)
            } else {
                None
            };
            let skip_log = release_dir(&root).with_file_name("test-skips.log");
            let _ = std::fs::remove_file(&skip_log);
            run::cargo(&root, ["test", "--workspace"], &args)
                .env("RUST_BACKTRACE", "1")
                .env("SMARTER_SKIP_LOG", &skip_log)
                .status_with_test_summary(&skip_log)?;
            if no_vm {
                return Ok(());
            }
            if !vm {
                println!("SKIP vm-test: the QEMU guests need root (apt, namespaces in them)");
                return Ok(());
            }
            vm::vm_test_with(&root, &vm::VmArgs::default(), pending)
        }
        Task::Demo { args } => {
            setup::setup(&root)?;
            demo(&root, &args)
        }
        Task::Bench(args) => {
            setup::setup(&root)?;
            bench::bench(&root, &args)
        }
        Task::Fuzz { seconds, target } => fuzz::fuzz(&root, seconds, target.as_deref()),
        Task::Image(args) => image::image(&root, &args),
        Task::Layers => layers::report(&root),
        Task::VmTest(args) => vm::vm_test(&root, &args),
        Task::Clippy { args } => {
            run::cargo(&root, ["clippy", "--workspace", "--all-targets"], &args).status()
        }
        Task::Fmt { args } => run::cargo(&root, ["fmt", "--all"], &args).status(),
    }
}

/// Builds the demo as the calling user, then runs the binary as root (through sudo if needed).
fn demo(root: &std::path::Path, args: &[OsString]) -> Result<()> {
    let build = [
        "build",
        "--release",
        "-p",
        "smarter-cni",
        "--bins",
        "--example",
        "demo",
    ];
    run::cargo(root, build, &[]).status()?;
    as_root(&release_dir(root).join("examples/demo"), "the demo")
        .args(args)
        .status()
}

/// Where release binaries land (`CARGO_TARGET_DIR` honoured).
fn release_dir(root: &std::path::Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release")
}

/// `program` as root: directly when we are, through sudo (saying why) otherwise.
fn as_root(program: &std::path::Path, what: &str) -> run::Cmd {
    if nix::unistd::geteuid().is_root() {
        run::Cmd::new(program)
    } else {
        println!("xtask: {what} builds network namespaces and needs root: running it with sudo");
        run::Cmd::new("sudo").arg(program)
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}
