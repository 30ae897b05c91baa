//! What a containerd instance can leave behind, found and removed: its shims and sandboxes
//! (processes), the mounts below its directory, its cgroups; and the sweep of instances
//! whose test process died.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every process: pid and command line arguments.
pub(super) fn processes() -> Vec<(i32, Vec<String>)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
        .collect()
}

/// Where containerd 1.6 puts the socket of the shim started with `args` (`-namespace NS -id
/// ID -address ADDRESS`): `/run/containerd/s/<sha256 of ADDRESS/NS/ID>`, outside any directory
/// of ours and not configurable; a shim that is killed leaves it.
fn shim_socket(args: &[String]) -> Option<PathBuf> {
    use sha2::Digest as _;
    let flag = |f: &str| {
        let i = args.iter().position(|a| a == f)?;
        args.get(i + 1).map(String::as_str)
    };
    let key = Path::new(flag("-address")?)
        .join(flag("-namespace")?)
        .join(flag("-id")?);
    let digest = sha2::Sha256::digest(key.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(Path::new("/run/containerd/s").join(hex))
}

/// SIGKILL to process `pid` (started with `args`); when it is a shim, its socket removed.
pub(super) fn kill_process(pid: i32, args: &[String]) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    if let Some(socket) = shim_socket(args) {
        let _ = std::fs::remove_file(socket);
    }
}

/// Every mount point in this process's mount namespace.
pub(super) fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

/// Lazily unmounts every mount at or below `root`, deepest first.
pub(super) fn unmount_below(root: &Path) {
    let mut mounts: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(root))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for m in mounts {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The mount points of the cgroup hierarchies (one per controller with cgroup v1, the
/// unified one with v2).
fn cgroup_roots() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (mount, fs) = l.split_once(" - ")?;
            let fstype = fs.split(' ').next()?;
            let point = mount.split(' ').nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

/// `dir` and the cgroups below it, children before parents.
fn cgroup_tree(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                cgroup_tree(&e.path(), out);
            }
        }
    }
    if dir.is_dir() {
        out.push(dir.to_path_buf());
    }
}

/// Kills every process in the cgroup `name` (relative to each hierarchy's root) and below,
/// waits (at most 10 s) until they are gone, and removes the cgroups.
pub(super) fn remove_cgroups(name: &str) {
    let mut tree = Vec::new();
    for root in cgroup_roots() {
        cgroup_tree(&root.join(name), &mut tree);
    }
    if tree.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = tree
            .iter()
            .flat_map(|cg| {
                std::fs::read_to_string(cg.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        if pids.is_empty() || Instant::now() >= deadline {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for cg in tree {
        let _ = std::fs::remove_dir(&cg);
    }
}

/// The pid in a name `smt-<pid>-ctrd<seq>…` (the directory and cgroup of a [`Containerd`]).
fn owner_of(name: &str) -> Option<i32> {
    let (pid, rest) = name.strip_prefix("smt-")?.split_once('-')?;
    rest.starts_with("ctrd").then(|| pid.parse().ok()).flatten()
}

/// The names `smt-<pid>-ctrd<seq>` (up to the next `-` or `/`) in `text`.
fn tags_in(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("smt-").filter_map(|(i, _)| {
        let rest = &text[i..];
        let end = rest
            .char_indices()
            .filter(|&(_, c)| c == '-' || c == '/')
            .nth(2)
            .map_or(rest.len(), |(j, _)| j);
        let tag = &rest[..end];
        owner_of(tag).is_some().then_some(tag)
    })
}

/// Undoes what the [`Containerd`]s of the processes `doomed` accepts left (they were killed,
/// so their drops never ran): their containerd and shims killed, every process in their
/// cgroups killed and the cgroups removed, their mounts (the sandboxes' namespaces included)
/// unmounted and their directories removed.
pub(crate) fn sweep(doomed: &dyn Fn(i32) -> bool) {
    let doomed_tag = |tag: &str| owner_of(tag).is_some_and(doomed);
    // containerd names its directory in its command line, a shim its socket there or its
    // bundle (its working directory).
    for (pid, args) in processes() {
        if !args.first().is_some_and(|a| a.contains("containerd")) {
            continue;
        }
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        let cwd = cwd.to_string_lossy();
        if args
            .iter()
            .flat_map(|a| tags_in(a))
            .chain(tags_in(&cwd))
            .any(doomed_tag)
        {
            kill_process(pid, &args);
        }
    }
    for root in cgroup_roots() {
        let Ok(rd) = std::fs::read_dir(&root) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if doomed_tag(&name) {
                remove_cgroups(&name);
            }
        }
    }
    let mut dirs: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter_map(|m| {
            let mut top = PathBuf::new();
            for c in m.components() {
                top.push(c);
                if doomed_tag(&c.as_os_str().to_string_lossy()) {
                    return Some(top);
                }
            }
            None
        })
        .collect();
    // Its directory, also when nothing is mounted there any more.
    if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
        dirs.extend(
            rd.flatten()
                .filter(|e| doomed_tag(&e.file_name().to_string_lossy()))
                .map(|e| e.path()),
        );
    }
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        unmount_below(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
