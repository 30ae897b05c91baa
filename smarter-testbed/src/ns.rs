//! Namespace and bpffs guards, and the sweeper for worlds left by killed processes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A name for a namespace or directory of this process that the sweeper recognizes:
/// `smt-<pid>-u<seq>-<label>`.
#[must_use]
pub fn unique_name(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "smt-{}-u{}-{label}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Environment variable naming the file where skipped tests are listed (`cargo xtask test`
/// sets it and counts them in its summary line).
pub const SKIP_LOG_ENV: &str = "SMARTER_SKIP_LOG";

/// Reports a skipped test: `msg` (starting `SKIP <test>: <why>`) on stderr, and one line in
/// the file [`SKIP_LOG_ENV`] names, so a skip is counted as one, not as a pass.
pub fn skipped(msg: &str) {
    use std::io::Write as _;
    eprintln!("{msg}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        let line = msg.replace('\n', " ");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{line}"));
    }
}

/// Skips (returns false and prints why) unless running as root.
#[must_use]
pub fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        true
    } else {
        skipped(&format!(
            "SKIP {test}: needs root (network namespaces, bpffs)"
        ));
        false
    }
}

pub(crate) fn ip(args: &[&str]) -> io::Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

pub(crate) fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// `ip netns add <name>` and bring `lo` up.
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn create(name: &str) -> io::Result<Self> {
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_string(),
            path: PathBuf::from("/run/netns").join(name),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file, e.g. for `CNI_NETNS`.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command that runs `program` inside this namespace with `nsenter --net` (not
    /// `ip netns exec`, which remounts /sys and hides bpffs).
    #[must_use]
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path.display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs a command inside the namespace and returns its output, failing on non-zero exit.
    ///
    /// # Errors
    /// When the command cannot start or exits non-zero.
    pub fn exec(&self, args: &[&str]) -> io::Result<Output> {
        let (prog, rest) = args.split_first().expect("a program");
        run(self.command(prog).args(rest))
    }

    /// True when `args` exits 0 inside the namespace.
    #[must_use]
    pub fn succeeds(&self, args: &[&str]) -> bool {
        self.exec(args).is_ok()
    }

    /// `ip -n <name> <args>` with whitespace-separated `args`, for test set-up.
    ///
    /// # Panics
    /// When `ip` fails (the message names the command and its error).
    pub fn ip(&self, args: &str) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend(args.split_whitespace());
        if let Err(e) = ip(&full) {
            panic!("ip {}: {e}", full.join(" "));
        }
    }

    /// One `ping` of `to` from inside the namespace (2 s timeout).
    #[must_use]
    pub fn ping(&self, to: std::net::Ipv4Addr) -> bool {
        self.succeeds(&["ping", "-c", "1", "-W", "2", &to.to_string()])
    }

    /// Runs `f` on a scoped thread inside this namespace (interface names and sockets resolve
    /// there) and returns its result; a panic in `f` propagates.
    ///
    /// # Panics
    /// When the namespace cannot be entered, or `f` panics.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = fs::File::open(&self.path).expect("open namespace");
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("enter namespace");
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// How many netlink (clsact ingress) filters on `dev` run program `prog`, from `tc`.
    ///
    /// # Panics
    /// When `tc` fails.
    #[must_use]
    pub fn netlink_filters(&self, dev: &str, prog: &str) -> usize {
        let out = self
            .exec(&["tc", "filter", "show", "dev", dev, "ingress"])
            .unwrap_or_else(|e| panic!("tc: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(prog))
            .count()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("testbed: cannot delete namespace {}: {e}", self.name);
        }
    }
}

/// A private bpffs instance mounted on a directory, unmounted on drop.
#[derive(Debug)]
pub struct BpfFs {
    path: PathBuf,
}

impl BpfFs {
    /// Creates `path` and mounts a new bpf file system on it.
    ///
    /// # Errors
    /// When the directory or the mount cannot be made.
    pub fn mount(path: &Path) -> io::Result<Self> {
        fs::create_dir_all(path)?;
        nix::mount::mount(
            Some("bpf"),
            path,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .map_err(io::Error::from)?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Unmounts and mounts a fresh bpffs at the same place: every pin is gone, as after a
    /// boot.
    ///
    /// # Errors
    /// When unmounting or mounting fails.
    pub fn remount(&mut self) -> io::Result<()> {
        nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH)
            .map_err(io::Error::from)?;
        nix::mount::mount(
            Some("bpf"),
            &self.path,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .map_err(io::Error::from)
    }

    /// The mount point.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A [`BpfFs`] on a fresh temporary directory, unmounted then removed on drop.
#[derive(Debug)]
pub struct ScratchBpfFs {
    // Field order is drop order: unmount before the directory goes.
    fs: BpfFs,
    _dir: tempfile::TempDir,
}

impl ScratchBpfFs {
    /// Mounts a private bpffs on a new temporary directory named after `label`.
    ///
    /// # Errors
    /// When the directory or the mount cannot be made.
    pub fn new(label: &str) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", unique_name(label)))
            .tempdir()?;
        let fs = BpfFs::mount(&dir.path().join("bpffs"))?;
        Ok(Self { fs, _dir: dir })
    }

    /// The mount point.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.fs.path()
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("testbed: cannot unmount {}: {e}", self.path.display());
        }
    }
}

/// Runs `f` on a new thread that has entered `ns` (sockets it opens live there), e.g. a
/// TCP server or client inside a pod, without any helper program.
///
/// # Panics
/// The thread panics when the namespace cannot be entered.
pub fn spawn_in<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = ns.path().to_path_buf();
    std::thread::spawn(move || {
        let file = fs::File::open(&path).expect("open namespace");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter namespace");
        f()
    })
}
