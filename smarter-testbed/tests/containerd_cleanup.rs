//! The [`Containerd`] guard leaves nothing behind on any path: a RunPodSandbox that failed
//! and could not be cleaned up by containerd (its namespace kept for a later
//! StopPodSandbox), a panic while a sandbox that cannot be stopped runs, containerd killed
//! under a running sandbox. Each time, after the drop: no namespace containerd made is
//! mounted or present (and none was ever made in `/var/run/netns`), no containerd, shim or
//! sandbox process is left, no mount below its directory, no cgroup, no directory.
//!
//! The CNI plugins are the reference `bridge` and `host-local` (Debian's
//! containernetworking-plugins), some behind a shell wrapper that makes a verb fail. Skips
//! with a message when not root or when a tool is missing (`cargo xtask setup`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use smarter_testbed::World;
use smarter_testbed::containerd::{Cni, Containerd, Sandbox, missing_tools};

const REFERENCE: &str = "/usr/lib/cni";

/// A world, or `None` with a SKIP line.
fn setup(test: &str) -> Option<World> {
    if !smarter_testbed::require_root(test) {
        return None;
    }
    let missing = missing_tools().or_else(|| {
        ["bridge", "host-local"]
            .iter()
            .any(|p| !Path::new(REFERENCE).join(p).exists())
            .then(|| "the reference bridge and host-local plugins".to_owned())
    });
    if let Some(missing) = missing {
        smarter_testbed::skipped(&format!(
            "SKIP {test}: not installed: {missing} (cargo xtask setup installs them)"
        ));
        return None;
    }
    Some(World::new(test).expect("world"))
}

/// An executable shell script `name` in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

const REFUSE: &str =
    r#"echo '{"cniVersion":"1.0.0","code":999,"msg":"refused by the test"}'; exit 1"#;

/// How the CNI plugin behaves.
#[derive(Clone, Copy)]
enum Plugin {
    /// The reference bridge.
    Works,
    /// The reference bridge, but DEL fails.
    DelFails,
    /// Every call fails.
    Fails,
}

/// containerd in `w`'s node namespace with a bridge network (see [`Plugin`]).
fn containerd(w: &World, scripts: &Path, plugin: Plugin) -> Containerd {
    let bridge = match plugin {
        Plugin::Works => Path::new(REFERENCE).join("bridge"),
        Plugin::DelFails => script(
            scripts,
            "bridge",
            &format!("[ \"$CNI_COMMAND\" = DEL ] && {{ {REFUSE}; }}\nexec {REFERENCE}/bridge"),
        ),
        Plugin::Fails => script(scripts, "bridge", REFUSE),
    };
    let conflist: Value = json!({"cniVersion": "1.0.0", "name": "testnet", "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": true,
         "ipam": {"type": "host-local", "dataDir": w.data_dir(),
                  "ranges": [[{"subnet": "10.88.0.0/16"}]]}}
    ]});
    let cni = Cni::Own {
        conflist,
        plugins: vec![
            ("bridge".into(), bridge),
            ("host-local".into(), Path::new(REFERENCE).join("host-local")),
        ],
        log_calls: false,
    };
    Containerd::start(w.node().path(), &cni, None).expect("start containerd")
}

/// What a guard made, to look for after its drop.
#[derive(Debug, Default)]
struct Made {
    /// Its scratch directory (the default socket lives there).
    dir: PathBuf,
    /// Its sandboxes' cgroup parent.
    cgroup: String,
    /// The network namespaces its sandboxes had.
    netns: Vec<PathBuf>,
    /// Sandbox (pause) processes.
    pids: Vec<i32>,
    /// The sockets of their shims.
    shim_sockets: Vec<PathBuf>,
}

impl Made {
    fn of(c: &Containerd) -> Self {
        let cgroup = c
            .config("x", "x", &[])
            .linux
            .expect("linux config")
            .cgroup_parent;
        let made = Self {
            dir: c.socket().parent().expect("socket dir").to_path_buf(),
            cgroup: cgroup.trim_start_matches('/').to_owned(),
            netns: c.netns_mounted(),
            pids: Vec::new(),
            shim_sockets: Vec::new(),
        };
        assert!(made.cgroup.starts_with("smt-"), "{made:?}");
        made
    }

    /// Records a running sandbox: its process and its shim's socket, which containerd 1.6
    /// puts at `/run/containerd/s/<sha256 of socket/namespace/id>` (and runc's state, which
    /// the guard moves into its directory).
    fn add_sandbox(&mut self, c: &Containerd, sb: &Sandbox) {
        use sha2::Digest as _;
        let pid = sb.info["pid"].as_i64().expect("sandbox pid");
        self.pids.push(i32::try_from(pid).unwrap());
        let key = c.socket().join("k8s.io").join(&sb.id);
        let digest = sha2::Sha256::digest(key.as_os_str().as_encoded_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let socket = Path::new("/run/containerd/s").join(hex);
        assert!(socket.exists(), "{}: the shim's socket", socket.display());
        self.shim_sockets.push(socket);
        assert!(
            !Path::new("/run/containerd/runc/k8s.io")
                .join(&sb.id)
                .exists(),
            "runc's state is in the guard's directory"
        );
    }

    /// Nothing of it is left.
    fn assert_gone(&self) {
        assert!(!self.netns.is_empty(), "the scenario made a namespace");
        for ns in &self.netns {
            assert!(
                ns.starts_with(&self.dir),
                "{}: containerd mounts namespaces in its own directory, not /var/run/netns",
                ns.display()
            );
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.display().to_string();
        assert!(
            !mounts.lines().any(|l| l.contains(&dir)),
            "mounts left below {dir}:\n{mounts}"
        );
        assert!(!self.dir.exists(), "{dir} left");
        for ns in &self.netns {
            assert!(!ns.exists(), "{} left", ns.display());
        }
        for pid in &self.pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
            assert!(
                matches!(state, None | Some('Z' | 'X')),
                "sandbox process {pid} still runs: {stat}"
            );
        }
        for socket in &self.shim_sockets {
            assert!(!socket.exists(), "shim socket {} left", socket.display());
        }
        let procs: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&dir))
            .collect();
        assert_eq!(procs, Vec::<String>::new(), "processes left");
        for root in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            for cg in [
                root.path().join(&self.cgroup),
                Path::new("/sys/fs/cgroup").join(&self.cgroup),
            ] {
                assert!(!cg.exists(), "cgroup {} left", cg.display());
            }
        }
    }
}

/// RunPodSandbox fails (ADD fails) and containerd cannot clean up (DEL fails too): containerd
/// keeps the sandbox and its namespace for a later StopPodSandbox, which fails again at the
/// drop. The drop still removes the namespace and everything else.
#[test]
fn failed_sandbox_whose_teardown_fails_leaves_nothing() {
    let Some(w) = setup("containerd_cleanup_failed") else {
        return;
    };
    let scripts = tempfile::tempdir().unwrap();
    let c = containerd(&w, scripts.path(), Plugin::Fails);
    let err = c.try_run(c.config("p", "p", &[])).expect_err("ADD fails");
    assert!(err.contains("refused by the test"), "{err}");
    let made = Made::of(&c);
    drop(c);
    made.assert_gone();
}

/// A panic while a sandbox runs whose network cannot be torn down (DEL fails, so
/// StopPodSandbox fails and the sandbox cannot be removed): the drop during the unwinding
/// leaves nothing.
#[test]
fn panic_with_a_sandbox_that_cannot_stop_leaves_nothing() {
    let Some(w) = setup("containerd_cleanup_panic") else {
        return;
    };
    let scripts = tempfile::tempdir().unwrap();
    let mut made = Made::default();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let c = containerd(&w, scripts.path(), Plugin::DelFails);
        let sb = c.run(c.config("p", "p", &[]));
        made = Made::of(&c);
        made.add_sandbox(&c, &sb);
        assert_eq!(made.netns, std::slice::from_ref(&sb.netns));
        panic!("a test failing with a sandbox running");
    }));
    assert!(panicked.is_err());
    made.assert_gone();
}

/// containerd killed (as a crash would) under a running sandbox: the CRI no longer answers,
/// so the drop cannot ask it to stop anything; the sandbox process (orphaned once its shim is
/// killed), its namespace and the rest still go.
#[test]
fn containerd_killed_under_a_running_sandbox_leaves_nothing() {
    let Some(w) = setup("containerd_cleanup_killed") else {
        return;
    };
    let scripts = tempfile::tempdir().unwrap();
    let c = containerd(&w, scripts.path(), Plugin::Works);
    let sb = c.run(c.config("p", "p", &[]));
    let mut made = Made::of(&c);
    made.add_sandbox(&c, &sb);
    let pid = c.pid().expect("containerd runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    drop(c);
    made.assert_gone();
}
