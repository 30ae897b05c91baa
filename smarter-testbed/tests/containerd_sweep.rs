//! [`smarter_testbed::sweep_own`], a signal handler's last act (destructors do not run when a
//! process is terminated), also undoes what its [`Containerd`]s made: containerd, its shim and
//! the sandbox process killed, the sandbox's namespace unmounted, the shim's socket, its
//! cgroup and directories removed, besides the worlds' namespaces and bpffs mounts.
//!
//! A test binary of its own: `sweep_own` removes everything of this process, which would pull
//! the worlds from under any test running beside it.

use std::path::Path;

use serde_json::json;
use smarter_testbed::World;
use smarter_testbed::containerd::{Cni, Containerd, missing_tools};

#[test]
fn sweep_own_removes_containerd_and_its_sandboxes() {
    const TEST: &str = "containerd_sweep_own";
    if !smarter_testbed::require_root(TEST) {
        return;
    }
    let reference = Path::new("/usr/lib/cni");
    if let Some(missing) = missing_tools().or_else(|| {
        (!reference.join("bridge").exists() || !reference.join("host-local").exists())
            .then(|| "the reference bridge and host-local plugins".to_owned())
    }) {
        smarter_testbed::skipped(&format!(
            "SKIP {TEST}: not installed: {missing} (cargo xtask setup installs them)"
        ));
        return;
    }
    let w = World::new(TEST).expect("world");
    let cni = Cni::Own {
        conflist: json!({"cniVersion": "1.0.0", "name": "testnet", "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true,
             "ipam": {"type": "host-local", "dataDir": w.data_dir(),
                      "ranges": [[{"subnet": "10.88.0.0/16"}]]}}
        ]}),
        plugins: ["bridge", "host-local"]
            .map(|p| (p.to_owned(), reference.join(p)))
            .to_vec(),
        log_calls: false,
    };
    let c = Containerd::start(w.node().path(), &cni, None).expect("start containerd");
    let sb = c.run(c.config("p", "p", &[]));
    let dir = c.socket().parent().unwrap().to_path_buf();
    let cgroup = c.config("x", "x", &[]).linux.unwrap().cgroup_parent;
    let pause = sb.info["pid"].as_i64().unwrap();
    let containerd = c.pid().unwrap();
    let node = w.node().path().to_path_buf();
    assert!(sb.netns.starts_with(&dir), "{}", sb.netns.display());
    // containerd 1.6 puts the shim's socket outside our directory.
    let shim_socket = {
        use sha2::Digest as _;
        let key = c.socket().join("k8s.io").join(&sb.id);
        let digest = sha2::Sha256::digest(key.as_os_str().as_encoded_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Path::new("/run/containerd/s").join(hex)
    };
    assert!(shim_socket.exists(), "{}", shim_socket.display());

    smarter_testbed::sweep_own();
    // As after a signal: the guards never run.
    std::mem::forget(c);
    std::mem::forget(w);

    let running = |pid: i64| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        !matches!(state, None | Some('Z' | 'X'))
    };
    assert!(
        !running(i64::from(containerd)),
        "containerd {containerd} runs"
    );
    assert!(!running(pause), "sandbox process {pause} runs");
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&*dir.to_string_lossy()))
        .collect();
    assert_eq!(procs, Vec::<String>::new(), "processes left (the shim?)");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*dir.to_string_lossy()),
        "mounts left:\n{mounts}"
    );
    assert!(!sb.netns.exists(), "{} left", sb.netns.display());
    assert!(!shim_socket.exists(), "{} left", shim_socket.display());
    assert!(!dir.exists(), "{} left", dir.display());
    assert!(!node.exists(), "{} left", node.display());
    for root in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cg = root.path().join(cgroup.trim_start_matches('/'));
        assert!(!cg.exists(), "{} left", cg.display());
    }
}
