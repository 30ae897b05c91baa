//! `smarter-bench`: the harness behind `cargo xtask bench`. Builds one namespace world per
//! contender (the upstream reference chain, smarter-cni with the iptables and with the eBPF
//! datapath, and the physical limit: a bare veth), runs the workloads interleaved, and writes
//! JSON, a markdown table and an SVG chart under `bench/results/`. Needs root.

mod cli;
mod contender;
mod control;
mod cri;
mod error;
mod load;
mod memory;
mod plugin;
mod profile;
mod report;
mod results;
mod run;
mod scaling;
mod stage;
mod stats;
mod targets;
mod workloads;

use std::path::{Path, PathBuf};

use clap::Parser as _;

use crate::cli::Cli;

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if let Some(json) = &cli.report {
        let results = results::Results::load(json)?;
        return report::render(&cli.out, &results, &run::stages());
    }
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("smarter-bench builds network namespaces and needs root");
    }
    // Absolute paths: the plugins run through nsenter, which looks bare names up in PATH.
    cli.plugin = std::fs::canonicalize(&cli.plugin)
        .map_err(|e| anyhow::anyhow!("plugin {}: {e}", cli.plugin.display()))?;
    if let Some(agent) = &cli.agent {
        cli.agent = Some(
            std::fs::canonicalize(agent)
                .map_err(|e| anyhow::anyhow!("agent {}: {e}", agent.display()))?,
        );
    }
    let tmp = PrivateTmp::enter()?;
    cleanup_on_signal(tmp.path().to_path_buf())?;
    run::run(&cli)
}

/// The run's private tmpfs: the whole run moves into a private mount namespace, before any
/// thread starts, and a fresh tmpfs is mounted there on a new directory made for this run
/// (`smarter-bench-<pid>-…` in the temporary directory), which becomes the run's `TMPDIR`. The
/// worlds' IPAM data and state directories live there, on tmpfs, as they do on a node
/// (`/var/run/cni`, `/run/smarter-cni`), not on this machine's disk (whose fsyncs would
/// dominate every CNI call); the bpffs mounts, the nsfs mounts of containerd's sandboxes and
/// the scratch files of this run are invisible to the rest of the machine and go with the
/// process.
///
/// The tmpfs is not mounted over `/tmp` itself: that would hide whatever the run needs from
/// there, such as the plugin and agent binaries of a checkout under `/tmp`.
///
/// On drop the tmpfs is detached and its (then empty) directory removed; the signal handler
/// does the same ([`cleanup_on_signal`]), and a run killed outright leaves only the empty
/// directory, which the next run removes.
struct PrivateTmp {
    dir: tempfile::TempDir,
}

/// The prefix of [`PrivateTmp`]'s directories: `smarter-bench-<pid>-`.
const TMP_PREFIX: &str = "smarter-bench-";

impl PrivateTmp {
    fn enter() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use nix::mount::{MsFlags, mount};
        let base = std::env::temp_dir();
        remove_stale_dirs(&base);
        // Fails (EINVAL) in a process with more than one thread: none has started yet, which
        // is also what makes setting TMPDIR below sound.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .context("unshare a mount namespace")?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .context("make the mounts private")?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{TMP_PREFIX}{}-", std::process::id()))
            .tempdir_in(&base)
            .with_context(|| format!("a directory in {}", base.display()))?;
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755,size=1g"),
        )
        .with_context(|| format!("mount a tmpfs on {}", dir.path().display()))?;
        // SAFETY: the process has one thread (`unshare(CLONE_NEWNS)` above succeeded, which
        // the kernel refuses to a multi-threaded process), so nothing reads the environment
        // concurrently.
        unsafe { std::env::set_var("TMPDIR", dir.path()) };
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateTmp {
    fn drop(&mut self) {
        // Detached, the directory is empty again: TempDir then removes it.
        unmount(self.dir.path());
    }
}

fn unmount(dir: &Path) {
    if let Err(e) = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH) {
        eprintln!("bench: cannot unmount {}: {e}", dir.display());
    }
}

/// Removes the empty directories of runs that were killed outright (`remove_dir` never
/// removes anything else).
fn remove_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(TMP_PREFIX))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// Ctrl-C or SIGTERM: remove every namespace and bpffs mount of this run and its private
/// tmpfs `tmp`, then exit (the worlds' destructors would not run). Signals are blocked in
/// every thread and taken by one.
fn cleanup_on_signal(tmp: PathBuf) -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            eprintln!("bench: {sig}: removing this run's namespaces");
            smarter_testbed::sweep_own();
            unmount(&tmp);
            let _ = std::fs::remove_dir(&tmp);
            std::process::exit(130);
        }
    });
    Ok(())
}
