//! The guests' test executables and binaries: one `cargo test --no-run` for every guest
//! architecture at once (cargo shares the host-side build scripts and proc macros and keeps
//! both CPUs busy across the three targets), statically linked, checked to be static ELF
//! files of the right machine.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicI32},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{TESTS, guest::GuestTest};
use crate::{
    image::{self, Arch, Platform, Target},
    run::Cmd,
};

/// What one architecture's guest runs: its tests and the plugin, agent, bpfctl and DNS
/// binaries.
pub struct Built {
    /// [`TESTS`], with their executables' paths.
    pub tests: Vec<GuestTest>,
    /// The four binaries.
    pub bins: Vec<PathBuf>,
}

/// The directory the guests' builds use (`CARGO_TARGET_DIR` honoured): a target directory of
/// their own, so that a cross build running beside `cargo test --workspace` never waits for
/// its lock (nor makes it wait).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("vm-test")
        .join("build")
}

/// `cargo test --no-run` of [`TESTS`] for every one of `arches`' static targets in one
/// invocation (debug profile without debug info, in [`target_dir`]).
///
/// # Errors
/// When the build fails, or an executable is missing, ambiguous or not static.
pub fn cross_build(root: &Path, arches: &[Arch]) -> Result<Vec<Built>> {
    let (cmd, targets) = command(root, arches)?;
    executables(root, &cmd.stderr_of()?, targets)
}

/// A [`cross_build`] running in the background, at `SCHED_IDLE`, while the workspace tests
/// run: they leave the CPUs idle much of the time (namespaces, timeouts), which the build
/// fills. Dropping it stops the build.
pub struct Pending {
    pid: Arc<AtomicI32>,
    started: Instant,
    thread: Option<JoinHandle<Result<Vec<Built>>>>,
}

impl Pending {
    /// Starts the cross build for `arches`; its stderr goes to `log`.
    ///
    /// # Errors
    /// When a target's toolchain cannot be found.
    pub fn start(root: &Path, arches: &[Arch], log: PathBuf) -> Result<Self> {
        let (cmd, targets) = command(root, arches)?;
        let pid = Arc::new(AtomicI32::new(0));
        let (root, group) = (root.to_owned(), pid.clone());
        let thread = std::thread::spawn(move || {
            let stderr = cmd.stderr_in_background(&log, &group)?;
            executables(&root, &stderr, targets)
        });
        Ok(Self {
            pid,
            started: Instant::now(),
            thread: Some(thread),
        })
    }

    /// Waits for the build: what it built, and its wall time since [`Pending::start`].
    ///
    /// # Errors
    /// As [`cross_build`].
    pub fn wait(mut self) -> Result<(Vec<Built>, Duration)> {
        let thread = self.thread.take().expect("waited once");
        let built = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the cross build's thread panicked"))??;
        Ok((built, self.started.elapsed()))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.thread.is_some() {
            crate::run::kill_group(&self.pid);
        }
    }
}

/// The cargo command of a cross build and the targets it builds.
fn command(root: &Path, arches: &[Arch]) -> Result<(Cmd, Vec<(Platform, Target)>)> {
    let mut cmd = crate::run::cargo(root, ["test", "--no-run", "--locked"], &[])
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_TARGET_DIR", target_dir(root));
    let mut targets = Vec::new();
    for &arch in arches {
        let p = arch.platform();
        let t = image::rust_target(root, &p)?;
        cmd = image::cross_env(cmd.args(["--target", &t.triple]), &p, &t)?;
        targets.push((p, t));
    }
    let mut packages: Vec<&str> = TESTS.iter().map(|(pkg, ..)| *pkg).collect();
    packages.dedup();
    for pkg in packages {
        cmd = cmd.args(["-p", pkg]);
    }
    for (_, name, _, _) in TESTS {
        cmd = cmd.args(["--test", name]);
    }
    Ok((cmd, targets))
}

/// Every target's test executables (from cargo's `stderr`) and binaries, checked to be static
/// ELF files of its machine.
fn executables(root: &Path, stderr: &str, targets: Vec<(Platform, Target)>) -> Result<Vec<Built>> {
    let mut built = Vec::new();
    for (p, t) in targets {
        let mut tests = Vec::new();
        for (_, name, args, jit_off) in TESTS {
            let path = test_executable(root, stderr, &t.triple, name)?;
            image::check_static_elf(&path, p.elf_machine)?;
            tests.push(GuestTest {
                name: name.to_owned(),
                path: path.to_string_lossy().into_owned(),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                jit_off: jit_off.map(str::to_owned),
                env: Vec::new(),
            });
        }
        let out = target_dir(root).join(&t.triple).join("debug");
        let mut bins = Vec::new();
        for name in image::BINARIES {
            let bin = out.join(name);
            image::check_static_elf(&bin, p.elf_machine)?;
            bins.push(bin);
        }
        built.push(Built { tests, bins });
    }
    Ok(built)
}

/// The path of test target `name`'s executable for target `triple` from cargo's
/// `Executable tests/<name>.rs (<path>)` line (or `tests/<name>/main.rs`; the path holds the
/// triple), made absolute: cargo prints it relative to the workspace `root` when the target
/// directory is inside it (no `CARGO_TARGET_DIR`, as on a fresh clone), and the guest runs it
/// from `/`. Cargo's line does not name the package, so a test target name two of the built
/// packages share is an error (the guest would run whichever came first).
fn test_executable(root: &Path, cargo_stderr: &str, triple: &str, name: &str) -> Result<PathBuf> {
    let sources = [
        format!("tests/{name}.rs "),
        format!("tests/{name}/main.rs "),
    ];
    let dir = format!("{triple}/debug/deps/");
    let found: Vec<&str> = cargo_stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Executable "))
        .filter(|l| sources.iter().any(|s| l.starts_with(s.as_str())))
        .filter_map(|l| l.rsplit_once('(').map(|(_, p)| p.trim_end_matches(')')))
        .filter(|p| p.contains(&dir))
        .collect();
    match found.as_slice() {
        [path] => Ok(root.join(path)),
        [] => bail!("cargo printed no executable for test target {name} ({triple})"),
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
        let err = test_executable(
            Path::new("/r"),
            &two,
            "x86_64-unknown-linux-musl",
            "conformance",
        )
        .unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
    }

    #[test]
    fn relative_executables_are_made_absolute_under_the_workspace() {
        let root = Path::new("/check/work/main");
        assert_eq!(
            test_executable(root, STDERR, "x86_64-unknown-linux-musl", "conformance").unwrap(),
            Path::new(
                "/check/work/main/target/x86_64-unknown-linux-musl/debug/deps/conformance-5e6d"
            )
        );
    }

    #[test]
    fn absolute_executables_stay_where_cargo_target_dir_put_them() {
        let root = Path::new("/check/work/main");
        assert_eq!(
            test_executable(root, STDERR, "aarch64-unknown-linux-musl", "ebpf_programs").unwrap(),
            Path::new("/work/t/aarch64-unknown-linux-musl/debug/deps/ebpf_programs-cf9b")
        );
    }

    #[test]
    fn a_directory_target_is_found_by_its_main() {
        assert_eq!(
            test_executable(
                Path::new("/r"),
                STDERR,
                "aarch64-unknown-linux-musl",
                "datapath"
            )
            .unwrap(),
            Path::new("/work/t/aarch64-unknown-linux-musl/debug/deps/datapath-1a2b")
        );
    }

    #[test]
    fn each_target_gets_its_own_executable() {
        let both = format!(
            "{STDERR}  Executable tests/conformance.rs (/work/t/aarch64-unknown-linux-musl/debug/deps/conformance-77aa)\n"
        );
        assert_eq!(
            test_executable(
                Path::new("/r"),
                &both,
                "aarch64-unknown-linux-musl",
                "conformance"
            )
            .unwrap(),
            Path::new("/work/t/aarch64-unknown-linux-musl/debug/deps/conformance-77aa")
        );
    }

    #[test]
    fn a_test_cargo_did_not_build_is_an_error_naming_it() {
        let err = test_executable(
            Path::new("/r"),
            STDERR,
            "aarch64-unknown-linux-musl",
            "ebpf_upgrade",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("test target ebpf_upgrade"),
            "{err}"
        );
    }
}
