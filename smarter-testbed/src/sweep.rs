//! Sweeping what killed processes left: the namespaces and bpffs mounts of their worlds, their
//! containerd instances ([`crate::containerd`]) and tayga NAT64s ([`crate::nat64`]), found by
//! the creating pid in their names (`smt-<pid>-...`).

use std::fs;
use std::path::Path;

/// Removes namespaces and bpffs mounts of worlds, and what the [`crate::containerd`]
/// instances left, whose process no longer exists (names and mount points carry the creating
/// pid: `smt-<pid>-...`).
pub fn sweep_stale() {
    sweep(|pid| !Path::new(&format!("/proc/{pid}")).exists());
}

/// Removes every namespace and bpffs mount this process made, and kills its containerd
/// instances and their sandboxes (for a signal handler's last act: destructors do not run
/// when a process is terminated).
pub fn sweep_own() {
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    sweep(|pid| pid == me);
}

fn sweep(doomed: impl Fn(i32) -> bool) {
    // containerd first: its sandboxes live in the worlds' node namespaces.
    crate::containerd::sweep(&doomed);
    // A world's tayga keeps the wan namespace alive after `ip netns del`.
    crate::nat64::sweep(&doomed);
    let dead = |name: &str| -> bool {
        name.strip_prefix("smt-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(&doomed)
    };
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                let _ = crate::ns::ip(&["netns", "del", &name]);
            }
        }
    }
    if let Ok(mounts) = fs::read_to_string("/proc/self/mounts") {
        for line in mounts.lines() {
            let mut f = line.split_whitespace();
            let (Some(_), Some(point), Some("bpf")) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let stale = Path::new(point)
                .components()
                .any(|c| dead(&c.as_os_str().to_string_lossy()));
            if stale {
                let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
                let _ = fs::remove_dir_all(Path::new(point).parent().unwrap_or(Path::new(point)));
            }
        }
    }
}
