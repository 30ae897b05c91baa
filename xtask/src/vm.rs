//! `cargo xtask vm-test`: the datapath tests inside QEMU guests running the kernels edge
//! gateways run — Debian bookworm's 6.1 for arm64, armhf (armmp-lpae) and amd64 — under TCG.
//!
//! Per architecture:
//! 1. the kernel, busybox-static, iproute2, iputils-ping, nftables, conntrack, bpftool and
//!    tayga (the NAT64 of the CLAT tests) `.deb`s of that architecture with their libraries, downloaded and extracted once into
//!    `target/vm-test/<deb-arch>/` ([`debs`]);
//! 2. the test executables of [`TESTS`] cross-built statically for it by
//!    `cargo test --no-run --target <triple>` (the same sources and the same behaviour table
//!    as on the host; the target and linker choice is `cargo xtask image`'s), with the
//!    plugin, agent, bpfctl and DNS binaries beside them;
//! 3. an initramfs ([`initramfs`]) holding those at the absolute paths they were built at
//!    (`CARGO_BIN_EXE_*` holds in the guest), the tools and the kernel modules;
//! 4. a boot with `-nic none` whose `/init` runs every test executable and powers off; the
//!    console is echoed with an `[arch]` prefix and kept in `target/vm-test/<arch>/console.log`.
//!
//! `--btf off` hides `/sys/kernel/btf/vmlinux` under an empty tmpfs (Raspberry Pi OS ships no
//! BTF); the default (`auto`) does that on arm64 only, keeps it on amd64, and armhf's kernel
//! has none. armhf runs everything with `bpf_jit_enable=1`, then the eBPF tests again with the
//! JIT off. At the end: a table of each program's verifier count, sizes and load time per
//! architecture, and each guest's results and wall time.

mod cpio;
mod debs;
mod guest;
mod initramfs;
mod report;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum;

use crate::{
    image::{self, Arch},
    setup,
};
use guest::{GuestTest, Machine};

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
    /// Guests that also run the conformance suite, comma-separated, or `none` (the default:
    /// arm64 only, to fit CI's budget; see the README).
    #[arg(long, value_delimiter = ',', default_values = ["arm64"])]
    pub conformance: Vec<String>,
    /// Only the conformance cases whose description contains this (`CONFORMANCE_FILTER`;
    /// empty: every topology's whole matrix).
    #[arg(long, default_value = "")]
    pub conformance_filter: String,
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
            conformance: vec!["arm64".into()],
            conformance_filter: String::new(),
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

/// Runs `cargo xtask vm-test`; see the [module docs](self).
///
/// # Errors
/// When a guest cannot be built or booted, or any test in it fails.
pub fn vm_test(root: &Path, args: &VmArgs) -> Result<()> {
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
    setup(root)?;
    // Build every guest first (cargo uses every CPU), then boot them side by side: each
    // guest is one TCG vCPU, so on an N-CPU host N guests run in the time of the longest.
    let mut ready = Vec::new();
    let mut results = Vec::new();
    for arch in arches {
        let t = Instant::now();
        match prepare_guest(root, arch, args) {
            Ok(g) => ready.push((g, t.elapsed())),
            Err(e) => results.push((arch, Err(e), t.elapsed())),
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
    build: Duration,
}

/// Cross-builds one guest's tests and writes its initramfs.
fn prepare_guest(root: &Path, arch: Arch, args: &VmArgs) -> Result<Prepared> {
    let m = machine(arch);
    let p = arch.platform();
    let cache = cache_dir(root).join(m.deb_arch);
    let sys = debs::prepare(&cache, m.deb_arch, m.flavour)?;
    let build = Instant::now();
    let (mut tests, bins) = cross_build(root, arch)?;
    let conformance = args
        .conformance
        .iter()
        .any(|a| a == m.deb_arch || a == p.name || a == "all");
    tests.retain(|t| t.name != "conformance" || conformance);
    for t in &mut tests {
        if t.name == "conformance" {
            t.env
                .push(("CONFORMANCE_FILTER".into(), args.conformance_filter.clone()));
        }
    }
    let build_time = build.elapsed();
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

/// `cargo test --no-run` of [`TESTS`] for `arch`'s static target (`CARGO_TARGET_DIR`, debug
/// profile without debug info); returns the tests to run and the four binaries.
fn cross_build(root: &Path, arch: Arch) -> Result<(Vec<GuestTest>, Vec<PathBuf>)> {
    let p = arch.platform();
    let t = image::rust_target(root, &p)?;
    let mut cmd = crate::run::cargo(root, ["test", "--no-run", "--locked"], &[])
        .args(["--target", &t.triple])
        .env("CARGO_PROFILE_DEV_DEBUG", "0");
    let mut packages: Vec<&str> = TESTS.iter().map(|(pkg, ..)| *pkg).collect();
    packages.dedup();
    for pkg in packages {
        cmd = cmd.args(["-p", pkg]);
    }
    for (_, name, _, _) in TESTS {
        cmd = cmd.args(["--test", name]);
    }
    let stderr = image::cross_env(cmd, &p, &t)?.stderr_of()?;
    let mut tests = Vec::new();
    for (_, name, args, jit_off) in TESTS {
        let path = test_executable(root, &stderr, name)?;
        tests.push(GuestTest {
            name: name.to_owned(),
            path: path.to_string_lossy().into_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            jit_off: jit_off.map(str::to_owned),
            env: Vec::new(),
        });
    }
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out = target_dir.join(&t.triple).join("debug");
    let mut bins = Vec::new();
    for name in image::BINARIES {
        let bin = out.join(name);
        image::check_static_elf(&bin, p.elf_machine)?;
        bins.push(bin);
    }
    for t in &tests {
        image::check_static_elf(Path::new(&t.path), p.elf_machine)?;
    }
    Ok((tests, bins))
}

/// The path of test target `name`'s executable from cargo's `Executable tests/<name>.rs (<path>)`
/// (or `tests/<name>/main.rs`) line, made absolute: cargo prints it relative to the workspace
/// `root` when the target directory is inside it (no `CARGO_TARGET_DIR`, as on a fresh clone),
/// and the guest runs it from `/`. Cargo's line does not name the package, so a test target
/// name two of the built packages share is an error (the guest would run whichever came first).
fn test_executable(root: &Path, cargo_stderr: &str, name: &str) -> Result<PathBuf> {
    let sources = [
        format!("tests/{name}.rs "),
        format!("tests/{name}/main.rs "),
    ];
    let found: Vec<&str> = cargo_stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Executable "))
        .filter(|l| sources.iter().any(|s| l.starts_with(s.as_str())))
        .filter_map(|l| l.rsplit_once('(').map(|(_, p)| p.trim_end_matches(')')))
        .collect();
    match found.as_slice() {
        [path] => Ok(root.join(path)),
        [] => bail!("cargo printed no executable for test target {name}"),
        _ => bail!(
            "test target {name} exists in more than one of the packages built for the guests \
             ({}); rename one",
            found.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDERR: &str = "\
    Finished `test` profile [unoptimized] target(s) in 1m 36s
  Executable tests/conformance.rs (target/x86_64-unknown-linux-musl/debug/deps/conformance-5e6d)
  Executable tests/ebpf_programs.rs (/work/t/aarch64-unknown-linux-musl/debug/deps/ebpf_programs-cf9b)
  Executable tests/datapath/main.rs (/work/t/aarch64-unknown-linux-musl/debug/deps/datapath-1a2b)
";

    #[test]
    fn a_test_name_two_packages_share_is_refused() {
        let two = format!(
            "{STDERR}  Executable tests/conformance.rs (target/x86_64-unknown-linux-musl/debug/deps/conformance-9f9f)\n"
        );
        let err = test_executable(Path::new("/r"), &two, "conformance").unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
    }

    #[test]
    fn relative_executables_are_made_absolute_under_the_workspace() {
        let root = Path::new("/check/work/main");
        assert_eq!(
            test_executable(root, STDERR, "conformance").unwrap(),
            Path::new(
                "/check/work/main/target/x86_64-unknown-linux-musl/debug/deps/conformance-5e6d"
            )
        );
    }

    #[test]
    fn absolute_executables_stay_where_cargo_target_dir_put_them() {
        let root = Path::new("/check/work/main");
        assert_eq!(
            test_executable(root, STDERR, "ebpf_programs").unwrap(),
            Path::new("/work/t/aarch64-unknown-linux-musl/debug/deps/ebpf_programs-cf9b")
        );
    }

    #[test]
    fn a_directory_target_is_found_by_its_main() {
        assert_eq!(
            test_executable(Path::new("/r"), STDERR, "datapath").unwrap(),
            Path::new("/work/t/aarch64-unknown-linux-musl/debug/deps/datapath-1a2b")
        );
    }

    #[test]
    fn a_test_cargo_did_not_build_is_an_error_naming_it() {
        let err = test_executable(Path::new("/r"), STDERR, "ebpf_upgrade").unwrap_err();
        assert!(
            err.to_string().contains("test target ebpf_upgrade"),
            "{err}"
        );
    }
}
