//! `cargo xtask vm-test`: the datapath tests inside QEMU guests running the kernels edge
//! gateways run — Debian bookworm's 6.1 for arm64, armhf (armmp-lpae) and amd64 — under TCG.
//!
//! 1. Per architecture, the kernel, busybox-static, iproute2, iputils-ping, nftables,
//!    conntrack, bpftool and tayga (the NAT64 of the CLAT tests) `.deb`s of that architecture
//!    with their libraries, downloaded and extracted once into `target/vm-test/<deb-arch>/`
//!    ([`debs`]);
//! 2. the test executables of [`TESTS`] cross-built statically for every architecture by one
//!    `cargo test --no-run --target <triple>…` ([`build`]: the same sources and the same
//!    behaviour table as on the host; the target and linker choice is `cargo xtask image`'s),
//!    with the plugin, agent, bpfctl and DNS binaries beside them, in `target/vm-test/build`
//!    (under `cargo xtask test` started before the workspace tests and run beside them at
//!    `SCHED_IDLE`: [`start_build`]);
//! 3. per architecture, an initramfs ([`initramfs`]) holding those at the absolute paths they
//!    were built at (`CARGO_BIN_EXE_*` holds in the guest), the tools and the kernel modules;
//! 4. the guests booted side by side (`--jobs`, one per host CPU by default: each is one
//!    single-threaded TCG vCPU), each with `-nic none` and an `/init` that runs every test
//!    executable and powers off; the console is echoed with an `[arch]` prefix and kept in
//!    `target/vm-test/<arch>/console.log`.
//!
//! `--btf off` hides `/sys/kernel/btf/vmlinux` under an empty tmpfs (Raspberry Pi OS ships no
//! BTF); the default (`auto`) does that on arm64 only, keeps it on amd64, and armhf's kernel
//! has none. armhf runs everything with `bpf_jit_enable=1`, then the eBPF tests again with the
//! JIT off. At the end: a table of each program's verifier count, sizes and load time per
//! architecture, and each guest's results, per-test seconds and wall time.

mod build;
mod cpio;
mod debs;
mod guest;
mod initramfs;
mod placement;
mod report;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::ValueEnum;

use crate::{
    image::{self, Arch},
    setup,
};
pub use build::Pending;
use guest::{GuestTest, Machine};
use placement::Placement;

/// The test files run in the guests: the package, the test target (`tests/<name>.rs` or
/// `tests/<name>/main.rs`), the libtest arguments each gets there (filters included), and the
/// filter for the repeated passes with the JIT off (`None`: not repeated; `""`: every test the
/// arguments select). Of the driver tests (`datapath`) the guests run the program upgrade;
/// `clat` runs the CLAT through a real NAT64 (tayga on a TUN device in the wan), with
/// `--nocapture` like `conformance` so a skip shows on the console. The `smarter-ebpf-tests`
/// files run the crafted-packet and parity tables through `BPF_PROG_TEST_RUN` in the guest's
/// kernel (and, on armhf, its arm32 JIT); `nat66` there runs the dual-stack pods' IPv6
/// programs (tail calls included), `clat_pod` the CLAT's pod-side tail call, `nat66_l3` NAT66
/// on a layer-3 uplink, `nat66_ext` NAT66 behind extension headers. The matrix in IPv6 is `conformance`'s `conformance_ipv6`.
pub const TESTS: [(&str, &str, &[&str], Option<&str>); 15] = [
    ("smarter-cni", "ebpf_programs", &["--nocapture"], Some("")),
    ("smarter-cni", "datapath_behaviour", &[], Some("ebpf::")),
    ("smarter-cni", "datapath", &["ebpf_upgrade::"], Some("")),
    ("smarter-cni", "conformance", &["--nocapture"], None),
    ("smarter-cni", "clat", &["--nocapture"], None),
    ("smarter-ebpf-tests", "object", &[], Some("")),
    ("smarter-ebpf-tests", "verdicts", &[], Some("")),
    ("smarter-ebpf-tests", "nat", &[], Some("")),
    ("smarter-ebpf-tests", "parity", &[], Some("")),
    ("smarter-ebpf-tests", "guard", &[], Some("")),
    ("smarter-ebpf-tests", "clat_translate", &[], Some("")),
    ("smarter-ebpf-tests", "clat_pod", &[], Some("")),
    ("smarter-ebpf-tests", "nat66", &[], Some("")),
    ("smarter-ebpf-tests", "nat66_l3", &[], Some("")),
    ("smarter-ebpf-tests", "nat66_ext", &[], Some("")),
];
/// Host packages the guests need (the cross compilers come from `image`'s list).
const HOST_PACKAGES: [&str; 4] = ["qemu-system-arm", "qemu-system-x86", "kmod", "binutils"];
/// `--conformance`'s default (the flag and [`VmArgs::default`], which `cargo xtask test` runs).
const DEFAULT_CONFORMANCE: [&str; 3] = [
    "arm64",
    "armhf:conformance_failover",
    "armhf:conformance_lan",
];
/// Guest architectures in the default order, which is also the boot order: the two longest
/// guests first, so that on a 2-CPU host amd64 follows whichever ends first.
const ALL: [Arch; 3] = [Arch::Armv7, Arch::Arm64, Arch::Amd64];

/// `cargo xtask vm-test` flags.
#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Guest architectures, comma-separated (`armv7` is Debian's `armhf`).
    #[arg(long, value_delimiter = ',', default_values = ["arm64", "armhf", "amd64"])]
    pub arch: Vec<Arch>,
    /// Kernel BTF in the guest: `on`, `off` (hidden, as on Raspberry Pi OS) or `auto` (off on
    /// arm64, on on amd64; armhf's kernel has none).
    #[arg(long, value_enum, default_value = "auto")]
    pub btf: Btf,
    /// Guests that also run the conformance suite, comma-separated, or `none`. `ARCH` runs the
    /// suite; `ARCH:TEST` runs that one test of it there instead of in the `ARCH` guests (the
    /// default, `arm64,armhf:conformance_failover,armhf:conformance_lan`, balances the two CPU
    /// lanes for CI's budget; see docs/testing.md).
    #[arg(long, value_delimiter = ',', default_values = DEFAULT_CONFORMANCE)]
    pub conformance: Vec<String>,
    /// Only the conformance cases whose description contains this (`CONFORMANCE_FILTER`;
    /// empty: every topology's whole matrix).
    #[arg(long, default_value = "")]
    pub conformance_filter: String,
    /// Also run the `eth` topology's 266-case matrix in the guests (60% of the suite's time;
    /// its packet shapes run in every guest through `smarter-ebpf-tests`' parity tables, and
    /// the suite's other topologies include an Ethernet uplink).
    #[arg(long)]
    pub conformance_eth: bool,
    /// Seconds a guest may run before it is killed.
    #[arg(long, default_value_t = 2400)]
    pub timeout: u64,
    /// Guests booted at once (each is one single-threaded TCG vCPU); 0: one per host CPU.
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
}

impl Default for VmArgs {
    /// What `cargo xtask test` runs: every guest, `--btf auto`, the default timeout.
    fn default() -> Self {
        Self {
            arch: ALL.to_vec(),
            btf: Btf::Auto,
            conformance: DEFAULT_CONFORMANCE.map(String::from).to_vec(),
            conformance_filter: String::new(),
            conformance_eth: false,
            timeout: 2400,
            jobs: 0,
        }
    }
}

/// `--btf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Btf {
    /// Keep `/sys/kernel/btf/vmlinux` if the kernel has it.
    On,
    /// Hide it.
    Off,
    /// Off on arm64 (the Raspberry Pi OS stand-in), on elsewhere.
    Auto,
}

fn machine(arch: Arch) -> Machine {
    match arch {
        Arch::Arm64 => Machine {
            deb_arch: "arm64",
            flavour: "arm64",
            qemu: "qemu-system-aarch64",
            machine: &["-M", "virt", "-cpu", "cortex-a72"],
            console: "ttyAMA0",
            jit_passes: &[1],
        },
        Arch::Armv7 => Machine {
            deb_arch: "armhf",
            flavour: "armmp-lpae",
            qemu: "qemu-system-arm",
            machine: &["-M", "virt", "-cpu", "cortex-a15"],
            console: "ttyAMA0",
            jit_passes: &[1, 0],
        },
        Arch::Amd64 => Machine {
            deb_arch: "amd64",
            flavour: "amd64",
            qemu: "qemu-system-x86_64",
            machine: &["-accel", "tcg", "-cpu", "max"],
            console: "ttyS0",
            jit_passes: &[1],
        },
    }
}

/// `target/vm-test` (honouring `CARGO_TARGET_DIR`).
fn cache_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("vm-test")
}

/// What `cargo xtask setup` does for the guests: QEMU, the cross compilers, the Rust targets,
/// the guests' packages (downloaded and extracted into the cache). Idempotent.
///
/// # Errors
/// When a package, target or download cannot be installed.
pub fn setup(root: &Path) -> Result<()> {
    let platforms: Vec<_> = ALL.iter().map(|a| a.platform()).collect();
    let targets = platforms
        .iter()
        .map(|p| image::rust_target(root, p))
        .collect::<Result<Vec<_>>>()?;
    let mut pkgs = image::debian_packages(&platforms, &targets, false);
    pkgs.extend(HOST_PACKAGES);
    setup::debian_packages(&pkgs)?;
    if !nix::unistd::geteuid().is_root() {
        println!("setup: vm-test guests: not root, their packages are fetched by `vm-test`");
        return Ok(());
    }
    for arch in ALL {
        let m = machine(arch);
        debs::prepare(&cache_dir(root).join(m.deb_arch), m.deb_arch, m.flavour)?;
    }
    Ok(())
}

/// Sets the guests up and starts their cross build (every guest of [`VmArgs::default`]) in
/// the background: `cargo xtask test` does this before the workspace tests, whose idle CPU
/// time the build fills, and hands the result to [`vm_test_with`].
///
/// # Errors
/// When the guests' packages or a Rust target cannot be installed.
pub fn start_build(root: &Path) -> Result<Pending> {
    setup(root)?;
    let log = cache_dir(root).join("build.log");
    Pending::start(root, &VmArgs::default().arch, log)
}

/// Runs `cargo xtask vm-test`; see the [module docs](self).
///
/// # Errors
/// When a guest cannot be built or booted, or any test in it fails.
pub fn vm_test(root: &Path, args: &VmArgs) -> Result<()> {
    vm_test_with(root, args, None)
}

/// [`vm_test`], with the cross build `pending` from [`start_build`] if there is one (then
/// `args` must name the default guests).
///
/// # Errors
/// As [`vm_test`].
pub fn vm_test_with(root: &Path, args: &VmArgs, pending: Option<Pending>) -> Result<()> {
    let started = Instant::now();
    if !nix::unistd::geteuid().is_root() {
        bail!("vm-test downloads Debian packages with apt and needs root (run it with sudo)");
    }
    let mut arches = Vec::new();
    for a in &args.arch {
        if !arches.contains(a) {
            arches.push(*a);
        }
    }
    arches.sort_by_key(|a| ALL.iter().position(|x| x == a));
    if pending.is_none() {
        setup(root)?;
    }
    // Build every guest first (one cargo run for all targets, every CPU busy), then boot
    // them side by side: each guest is one TCG vCPU, so on an N-CPU host N guests run in the
    // time of the longest.
    let mut ready = Vec::new();
    let mut results = Vec::new();
    let t = Instant::now();
    let built = match pending {
        Some(p) => {
            ensure!(
                arches == VmArgs::default().arch,
                "the cross build started in the background is for the default guests"
            );
            println!("vm-test: waiting for the cross build started before the workspace tests");
            p.wait()
        }
        None => build::cross_build(root, &arches).map(|b| (b, t.elapsed())),
    };
    match built {
        Ok((built, build_time)) => {
            for (arch, b) in arches.iter().zip(built) {
                let t = Instant::now();
                match prepare_guest(root, *arch, args, b, build_time) {
                    Ok(g) => ready.push((g, build_time + t.elapsed())),
                    Err(e) => results.push((*arch, Err(e), build_time + t.elapsed())),
                }
            }
        }
        Err(e) => {
            for arch in &arches {
                results.push((*arch, Err(anyhow::anyhow!("{e:#}")), t.elapsed()));
            }
        }
    }
    let jobs = match args.jobs {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    println!(
        "vm-test: booting {} guest(s), {jobs} at a time",
        ready.len()
    );
    results.extend(boot_all(ready, jobs, Duration::from_secs(args.timeout)));
    results.sort_by_key(|(a, ..)| ALL.iter().position(|x| x == a));
    print!("{}", report::summary(&results));
    println!(
        "vm-test: {} guest(s) in {:.0?}",
        results.len(),
        started.elapsed()
    );
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(a, r, _)| match r {
            Ok(g) if g.failures().is_empty() => None,
            Ok(g) => Some(format!(
                "{}: {}",
                a.platform().name,
                g.failures().join(", ")
            )),
            Err(e) => Some(format!("{}: {e:#}", a.platform().name)),
        })
        .collect();
    if !failed.is_empty() {
        bail!("vm-test failed: {}", failed.join("; "));
    }
    Ok(())
}

/// A guest built and ready to boot.
struct Prepared {
    arch: Arch,
    machine: Machine,
    tests: Vec<GuestTest>,
    kernel: PathBuf,
    initrd: PathBuf,
    log: PathBuf,
    /// The shared cross build's time.
    build: Duration,
}

/// Writes one guest's initramfs around its built tests and binaries (`build_time`: the
/// shared cross build's).
fn prepare_guest(
    root: &Path,
    arch: Arch,
    args: &VmArgs,
    b: build::Built,
    build_time: Duration,
) -> Result<Prepared> {
    let m = machine(arch);
    let p = arch.platform();
    let cache = cache_dir(root).join(m.deb_arch);
    let sys = debs::prepare(&cache, m.deb_arch, m.flavour)?;
    let (mut tests, bins) = (b.tests, b.bins);
    let place = Placement::of(&args.conformance, &[m.deb_arch, p.name]);
    tests.retain(|t| t.name != "conformance" || place.runs());
    for t in &mut tests {
        // The nftables half of the behaviour table runs where the conformance suite does (the
        // kernel's nftables is the same C on every architecture); the eBPF half everywhere
        // (the verifier's and JITs' differ).
        if t.name == "datapath_behaviour" && !place.whole {
            t.args.extend(["--skip".into(), "nftables::".into()]);
        }
        if t.name == "conformance" {
            t.env
                .push(("CONFORMANCE_FILTER".into(), args.conformance_filter.clone()));
            t.args.extend(place.libtest_args(args.conformance_eth));
        }
    }
    let hide_btf = match args.btf {
        Btf::On => false,
        Btf::Off => true,
        Btf::Auto => arch == Arch::Arm64,
    };
    let mut same_path = bins;
    same_path.extend(tests.iter().map(|t| PathBuf::from(&t.path)));
    let (mut tree, modules) = initramfs::assemble(&sys, &same_path)?;
    let init = guest::init_script(&m, &modules, hide_btf, &tests);
    tree.add("/init", cpio::Node::Bytes(init.into_bytes(), 0o755));
    let initrd = cache.join("initrd.cpio");
    let size = tree
        .write(&initrd)
        .with_context(|| format!("cannot write {}", initrd.display()))?;
    let (release, kernel_tree) = sys.kernel()?;
    println!(
        "vm-test: {}: kernel {release}, initramfs {} MiB, BTF {}",
        p.name,
        size / 1_048_576,
        if hide_btf {
            "hidden"
        } else {
            "as the kernel has it"
        }
    );
    Ok(Prepared {
        arch,
        machine: m,
        tests,
        kernel: kernel_tree.join(format!("boot/vmlinuz-{release}")),
        initrd,
        log: cache.join("console.log"),
        build: build_time,
    })
}

/// Boots the `ready` guests, at most `jobs` at once, in the order given (the caller's
/// default order starts the longest guests first); returns each one's report and total time
/// (its preparation's included).
fn boot_all(
    ready: Vec<(Prepared, Duration)>,
    jobs: usize,
    timeout: Duration,
) -> Vec<(Arch, Result<report::Guest>, Duration)> {
    let queue = std::sync::Mutex::new(ready.into_iter());
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue lock").next();
                    let Some((g, prep)) = next else { break };
                    let boot = Instant::now();
                    let outcome = guest::boot(
                        &g.machine,
                        &g.kernel,
                        &g.initrd,
                        &g.log,
                        &format!("[{}]", g.machine.deb_arch),
                        timeout,
                    )
                    .map(|lines| {
                        report::Guest::parse(
                            g.machine.deb_arch,
                            &lines,
                            &g.tests,
                            g.build,
                            boot.elapsed(),
                        )
                    });
                    let total = prep + boot.elapsed();
                    done.lock()
                        .expect("results lock")
                        .push((g.arch, outcome, total));
                }
            });
        }
    });
    done.into_inner().expect("results lock")
}
