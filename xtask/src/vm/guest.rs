//! One guest: its `/init`, the QEMU command line, and reading its serial console until the
//! guest powers off (or a deadline passes: QEMU is then killed, also when we fail).

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// The markers `/init` prints (and nothing else starts with `VMTEST`).
pub const MARK: &str = "VMTEST";

/// A QEMU machine for one Debian architecture.
pub struct Machine {
    /// Debian architecture.
    pub deb_arch: &'static str,
    /// Kernel flavour (`linux-image-<flavour>`).
    pub flavour: &'static str,
    /// `qemu-system-*`.
    pub qemu: &'static str,
    /// Machine and CPU flags.
    pub machine: &'static [&'static str],
    /// Serial console device.
    pub console: &'static str,
    /// Whether `/init` turns the JIT on (armhf: off at boot) and repeats the eBPF tests with it off.
    pub jit_passes: &'static [u8],
}

/// One test executable run in the guest: a label, its path, its libtest arguments.
pub struct GuestTest {
    /// Short name (the test file).
    pub name: String,
    /// Absolute path (the same in the guest).
    pub path: String,
    /// Passed to it (filters, `--nocapture`), after `--test-threads=1`.
    pub args: Vec<String>,
    /// The filter in the passes with the JIT off (`None`: not run there).
    pub jit_off: Option<String>,
    /// Environment for it.
    pub env: Vec<(String, String)>,
}

/// The `/init` script: mounts, busybox applets that no real tool shadows, modules,
/// `/dev/net/tun` (devtmpfs makes it once `tun` is loaded; made by hand otherwise), the JIT
/// setting, the BTF stand-in, then every test, each bracketed by markers, then power off.
///
/// `/tmp` is the initramfs's own directory (the root file system is already in memory), not
/// a tmpfs mounted over it: the test executables sit at the absolute paths they were built
/// at, which are under `/tmp` for a checkout (or `CARGO_TARGET_DIR`) there.
pub fn init_script(m: &Machine, modules: &[String], hide_btf: bool, tests: &[GuestTest]) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         B=/bin/busybox\n\
         $B mount -t proc proc /proc\n\
         $B mount -t sysfs sys /sys\n\
         $B mount -t devtmpfs dev /dev\n\
         $B mount -t tmpfs run /run\n\
         $B chmod 1777 /tmp\n\
         $B mount -t bpf bpf /sys/fs/bpf\n\
         for a in $($B --list); do\n\
         \x20 f=; for d in /usr/sbin /usr/bin /sbin /bin; do [ -e $d/$a ] && f=1; done\n\
         \x20 [ -n \"$f\" ] || $B ln -s busybox /bin/$a\n\
         done\n\
         export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root RUST_BACKTRACE=1\n\
         cd /tmp\n",
    );
    for m in modules {
        let _ = writeln!(s, "insmod {m} || echo \"{MARK}-MODULE-FAILED {m}\"");
    }
    // devtmpfs makes the node when tun registers; a kernel without it keeps failing the open.
    s.push_str("[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }\n");
    if hide_btf {
        s.push_str("mount -t tmpfs nobtf /sys/kernel/btf\n");
    }
    let _ = writeln!(
        s,
        "echo \"{MARK}-GUEST kernel=$(uname -r) machine=$(uname -m) \
         btf=$([ -e /sys/kernel/btf/vmlinux ] && echo present || echo absent) \
         jit_at_boot=$(cat /proc/sys/net/core/bpf_jit_enable)\""
    );
    for (i, jit) in m.jit_passes.iter().enumerate() {
        let _ = writeln!(
            s,
            "echo {jit} > /proc/sys/net/core/bpf_jit_enable 2>/dev/null\n\
             echo \"{MARK}-PASS jit=$(cat /proc/sys/net/core/bpf_jit_enable)\""
        );
        for t in tests {
            let filter = match (i, &t.jit_off) {
                (0, _) => "",
                (_, Some(f)) => f.as_str(),
                (_, None) => continue,
            };
            let env: String = t
                .env
                .iter()
                .map(|(k, v)| format!("{k}='{}' ", v.replace('\'', "")))
                .collect();
            let _ = writeln!(
                s,
                "echo \"{MARK}-RUN {} $(cut -d' ' -f1 /proc/uptime)\"\n\
                 {env}{} --test-threads=1 {} {filter}\n\
                 rc=$?\n\
                 echo \"{MARK}-EXIT {} $rc $(cut -d' ' -f1 /proc/uptime)\"",
                t.name,
                t.path,
                t.args.join(" "),
                t.name
            );
        }
    }
    let _ = writeln!(s, "echo {MARK}-DONE\npoweroff -f");
    s
}

/// Kills QEMU when dropped (a failure or a timeout never leaves it running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The guests' memory (MiB). The initramfs unpacks into a tmpfs the kernel sizes at half the
/// memory left beside the loaded initrd (~330 MB of test executables, binaries and packages),
/// and the tests write their worlds' state there: at 1024 MiB the unpacking itself ran out.
const GUEST_MB: &str = "1536";

/// Boots `kernel` + `initrd` on `m` without any network (`-nic none`), echoes the console with
/// `prefix`, saves it to `log`, and returns its lines once the guest powered off.
///
/// # Errors
/// When QEMU cannot start, exits non-zero, or `timeout` passes first.
pub fn boot(
    m: &Machine,
    kernel: &Path,
    initrd: &Path,
    log: &Path,
    prefix: &str,
    timeout: Duration,
) -> Result<Vec<String>> {
    let mut cmd = Command::new(m.qemu);
    cmd.args(m.machine)
        .args(["-m", GUEST_MB, "-smp", "1", "-nographic", "-nic", "none"])
        .args(["-no-reboot", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        // No CPU vulnerability mitigations: the guest runs only our tests, and under TCG they
        // cost emulated time.
        .arg(format!(
            "console={} panic=-1 quiet loglevel=3 mitigations=off",
            m.console
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    println!("$ {cmd:?}");
    let mut child = Running(
        cmd.spawn()
            .with_context(|| format!("cannot run {}", m.qemu))?,
    );
    let out = child.0.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_owned();
                println!("{prefix} {line}");
                let _ = writeln!(file, "{line}");
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!(
                    "{prefix}: no power-off within {timeout:?} (console in {})",
                    log.display()
                )
            }
        }
    }
    let status = child.0.wait()?;
    if !status.success() {
        bail!("{prefix}: {} exited with {status}", m.qemu);
    }
    Ok(lines)
}
