//! Debian's containerd (1.6, its CRI plugin, runc) started inside a world's `node` namespace
//! with its own root, state, socket and CNI directories, driven over gRPC with the project's
//! CRI client as a kubelet drives it. Used by the `containerd_e2e` tests and `cargo xtask
//! bench`.
//!
//! containerd never touches the machine's own network: it runs in the node namespace, its
//! sandboxes' namespaces are its own and mounted inside its own directory
//! ([`Containerd::netns_dir`], never `/var/run/netns`), and everything it made is undone on
//! drop (also on panic, and when containerd failed or died): sandboxes stopped and removed,
//! containerd and its shims killed, every process left in its cgroup killed, their mounts
//! (the sandboxes' namespaces included) removed, the cgroups removed. What the instances of a
//! killed process left is swept by [`crate::sweep_stale`] (and [`crate::sweep_own`]).

mod cleanup;
pub mod image;
mod pods;

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use smarter_cni::dns::cri::CriClient;

pub(crate) use cleanup::sweep;
use cleanup::{kill_process, mount_points, processes, remove_cgroups, unmount_below};

/// Debian's containerd.
pub const CONTAINERD: &str = "/usr/bin/containerd";
/// Its client, for importing images.
pub const CTR: &str = "/usr/bin/ctr";
/// The reference `loopback` plugin (containerd's CRI sets up `lo` with it).
pub const LOOPBACK: &str = "/usr/lib/cni/loopback";
/// Limit on one CRI call (RunPodSandbox runs the plugin and runc): a guard against a hung
/// runtime, not a measurement.
pub const CRI_CALL_LIMIT: Duration = Duration::from_secs(120);

static SEQ: AtomicU32 = AtomicU32::new(0);

fn runc() -> Option<&'static str> {
    ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// What this machine lacks to run containerd here (`None`: nothing).
#[must_use]
pub fn missing_tools() -> Option<String> {
    let gcc = Command::new("gcc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing: Vec<&str> = [
        ("containerd", Path::new(CONTAINERD).exists()),
        ("ctr", Path::new(CTR).exists()),
        ("runc", runc().is_some()),
        ("the loopback CNI plugin", Path::new(LOOPBACK).exists()),
        ("gcc", gcc),
        ("busybox-static", Path::new(image::BUSYBOX).exists()),
    ]
    .into_iter()
    .filter_map(|(what, ok)| (!ok).then_some(what))
    .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Where containerd finds its CNI plugins and network configuration.
#[derive(Debug, Clone)]
pub enum Cni {
    /// Fresh directories holding `conflist` and `plugins` (name → binary), plus `loopback`.
    /// With `log_calls`, each plugin sits behind a wrapper that logs every call
    /// ([`Containerd::calls`]).
    Own {
        /// Written to `conf_dir/10-<name>.conflist`.
        conflist: Value,
        /// Binaries linked (or wrapped) into `bin_dir` under these names.
        plugins: Vec<(String, PathBuf)>,
        /// Wrap the plugins to log their calls.
        log_calls: bool,
    },
    /// Directories someone else fills (an installer), as on a node.
    Dirs {
        /// CNI `bin_dir`.
        bin_dir: PathBuf,
        /// CNI `conf_dir`.
        conf_dir: PathBuf,
    },
}

/// A sandbox as PodSandboxStatus reports it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Sandbox id.
    pub id: String,
    /// Its address.
    pub ip: std::net::Ipv4Addr,
    /// Its network namespace.
    pub netns: PathBuf,
    /// The verbose `info` document.
    pub info: Value,
}

/// containerd in a node namespace; see the module docs.
pub struct Containerd {
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
    /// The runtime the CRI client runs on.
    pub rt: tokio::runtime::Runtime,
    /// The CRI client.
    pub cri: CriClient,
    cgroup_parent: String,
    netns_seen: Mutex<Vec<PathBuf>>,
    node: PathBuf,
}

fn wrapper(log: &Path, real: &Path) -> String {
    format!(
        "#!/bin/sh\ninput=$(cat)\nprintf '%s|%s|%s|%s\\n' \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \
         \"$CNI_NETNS\" \"$input\" >> {log}\nprintf '%s' \"$input\" | exec {real}\n",
        log = log.display(),
        real = real.display(),
    )
}

fn config_toml(d: &Path, socket: &Path, bin_dir: &Path, conf_dir: &Path, runc: &str) -> String {
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{d}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
    max_conf_num = 1
"#,
        d = d.display(),
        sock = socket.display(),
        bin = bin_dir.display(),
        conf = conf_dir.display(),
        pause = image::PAUSE_IMAGE,
    )
}

impl Containerd {
    /// Starts containerd in the namespace at `node` with `cni`; its socket is `socket`, or
    /// one in its scratch directory. Imports the pause and busybox images. With
    /// [`Cni::Own`] it waits until the CRI reports the network ready; with [`Cni::Dirs`] only
    /// until the CRI answers ([`Containerd::wait_network_ready`] waits for a conflist).
    ///
    /// # Errors
    /// Files, images or containerd failing; a CRI that never answers.
    pub fn start(node: &Path, cni: &Cni, socket: Option<&Path>) -> io::Result<Self> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!("smt-{}-ctrd{seq}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{tag}-"))
            .tempdir()?;
        let d = dir.path();
        for sub in ["root", "state", "opt", "logs", "images"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let (bin_dir, conf_dir) = match cni {
            Cni::Own {
                conflist,
                plugins,
                log_calls,
            } => {
                let (bin, conf) = (d.join("cni/bin"), d.join("cni/net.d"));
                std::fs::create_dir_all(&bin)?;
                std::fs::create_dir_all(&conf)?;
                for (name, real) in plugins {
                    let at = bin.join(name);
                    if *log_calls {
                        std::fs::write(&at, wrapper(&d.join("calls.log"), real))?;
                        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))?;
                    } else {
                        std::os::unix::fs::symlink(real, &at)?;
                    }
                }
                std::os::unix::fs::symlink(LOOPBACK, bin.join("loopback"))?;
                let name = conflist["name"].as_str().unwrap_or("net");
                std::fs::write(
                    conf.join(format!("10-{name}.conflist")),
                    serde_json::to_vec_pretty(conflist)?,
                )?;
                (bin, conf)
            }
            Cni::Dirs { bin_dir, conf_dir } => (bin_dir.clone(), conf_dir.clone()),
        };
        let socket = socket.map_or_else(|| d.join("containerd.sock"), Path::to_path_buf);
        let runc = runc().ok_or_else(|| io::Error::other("runc not installed"))?;
        std::fs::write(
            d.join("config.toml"),
            config_toml(d, &socket, &bin_dir, &conf_dir, runc),
        )?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let cri = {
            let _enter = rt.enter();
            // Connects lazily, at the first call.
            CriClient::with_timeout(&socket, CRI_CALL_LIMIT).map_err(io::Error::other)?
        };
        // The guard exists before containerd does: from here on, any failure drops it.
        let mut me = Self {
            dir,
            socket,
            child: None,
            rt,
            cri,
            cgroup_parent: format!("/{tag}"),
            netns_seen: Mutex::new(Vec::new()),
            node: node.to_path_buf(),
        };
        me.child = Some(spawn(node, me.dir.path())?);
        me.wait(false)?;
        let images = me.dir.path().join("images");
        for archive in [image::pause_image(&images)?, image::busybox_image(&images)?] {
            me.import(&archive)?;
        }
        if matches!(cni, Cni::Own { .. }) {
            me.wait_network_ready()?;
        }
        Ok(me)
    }

    /// containerd's CRI socket.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Where containerd mounts its sandboxes' network namespaces (`cni-…`): a directory of its
    /// own (containerd's `netns_mounts_under_state_dir`), so that a sandbox containerd could
    /// not clean up (a failed RunPodSandbox whose CNI DEL failed too keeps its namespace for a
    /// later StopPodSandbox) never leaves a namespace in the machine's `/var/run/netns`. The
    /// drop unmounts and removes whatever is still there.
    #[must_use]
    pub fn netns_dir(&self) -> PathBuf {
        self.dir
            .path()
            .join("state/io.containerd.grpc.v1.cri/netns")
    }

    /// The network namespaces containerd has mounted in [`Self::netns_dir`] and not yet
    /// removed.
    #[must_use]
    pub fn netns_mounted(&self) -> Vec<PathBuf> {
        let dir = self.netns_dir();
        mount_points()
            .into_iter()
            .filter(|m| m.parent() == Some(dir.as_path()))
            .collect()
    }

    /// The containerd process's id while it runs (for tests that kill it, as a crash would).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The tails of containerd's log and of the plugin's log (`SMARTER_CNI_LOG_FILE`).
    #[must_use]
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- containerd log (tail) ---\n{}\n--- plugin log (tail) ---\n{}",
            tail(read("containerd.log")),
            tail(read("cni.log"))
        )
    }

    /// The plugin calls logged so far ([`Cni::Own`] with `log_calls`): (verb, container id,
    /// `CNI_NETNS`, stdin).
    #[must_use]
    pub fn calls(&self) -> Vec<(String, String, String, Value)> {
        std::fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut parts = l.splitn(4, '|');
                let mut next = || parts.next().unwrap_or_default().to_owned();
                let (verb, id, netns, stdin) = (next(), next(), next(), next());
                let stdin = serde_json::from_str(&stdin).unwrap_or(Value::Null);
                (verb, id, netns, stdin)
            })
            .collect()
    }

    /// Polls (a readiness wait, at most 60 s) until the CRI answers and, with `network`,
    /// reports `NetworkReady`.
    fn wait(&self, network: bool) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.rt.block_on(async {
                match self.cri.conditions().await {
                    Ok(_) if !network => Ok(()),
                    Ok(c) => match c.iter().find(|c| c.r#type == "NetworkReady") {
                        Some(c) if c.status => Ok(()),
                        other => Err(format!("{other:?}")),
                    },
                    Err(e) => Err(e.to_string()),
                }
            });
            match state {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(io::Error::other(format!(
                        "containerd not ready: {e}\n{}",
                        self.log()
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Waits until the CRI reports `NetworkReady` (a conflist loaded).
    ///
    /// # Errors
    /// Not ready within 60 s.
    pub fn wait_network_ready(&self) -> io::Result<()> {
        self.wait(true)
    }

    /// Stops containerd (SIGTERM) and starts it again on the same directories; the shims
    /// and the pods keep running meanwhile, as on a node whose containerd restarts.
    ///
    /// # Errors
    /// containerd not starting or not ready again.
    pub fn restart(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        self.child = Some(spawn(&self.node, self.dir.path())?);
        self.wait(true)
    }

    fn import(&self, archive: &Path) -> io::Result<()> {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.node.display()))
            .arg("--")
            .arg(CTR)
            .arg("-a")
            .arg(&self.socket)
            .args([
                "-n",
                "k8s.io",
                "images",
                "import",
                "--snapshotter",
                "native",
            ])
            .arg(archive)
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "ctr images import: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// The shims serving this containerd (their command line names our socket): pid and
    /// arguments.
    fn shims(&self) -> Vec<(i32, Vec<String>)> {
        let needle = self.socket.display().to_string();
        processes()
            .into_iter()
            .filter(|(_, args)| {
                args.first().is_some_and(|a| a.contains("containerd-shim"))
                    && args.iter().any(|a| a.contains(&needle))
            })
            .collect()
    }
}

/// Starts containerd inside the namespace `node` with the config in `dir`, appending its
/// output to `dir/containerd.log`; the plugin logs at debug level to `dir/cni.log`.
fn spawn(node: &Path, dir: &Path) -> io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))?;
    Command::new("nsenter")
        .arg(format!("--net={}", node.display()))
        .arg("--")
        .arg(CONTAINERD)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("SMARTER_CNI_LOG", "debug")
        .env("SMARTER_CNI_LOG_FILE", dir.join("cni.log"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// SIGTERM, then SIGKILL if it has not exited within 10 s.
pub fn stop_child(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
        // Let containerd undo what it made while it still runs (this fails when it does not:
        // what follows does not depend on it).
        if self.child.is_some()
            && let Ok(ids) = self.rt.block_on(self.cri.all_sandboxes())
        {
            for id in ids {
                let _ = self.rt.block_on(self.cri.stop_pod_sandbox(&id));
                let _ = self.rt.block_on(self.cri.remove_pod_sandbox(&id));
            }
        }
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        for (pid, args) in self.shims() {
            kill_process(pid, &args);
        }
        // Sandboxes and containers whose shim is gone (or could not stop them) are orphans
        // still in our cgroup: killed there, then the cgroups removed.
        remove_cgroups(self.cgroup_parent.trim_start_matches('/'));
        // Mounts left below our directory (rootfs binds, shm, the sandboxes' namespaces).
        unmount_below(self.dir.path());
        if let Ok(seen) = self.netns_seen.lock() {
            for ns in seen.iter().filter(|ns| ns.exists()) {
                let _ = nix::mount::umount2(ns, nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_file(ns);
            }
        }
    }
}
