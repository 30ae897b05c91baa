//! Running a plugin the way a runtime does: inside a pod's network namespace, with the CNI
//! environment and the network configuration on its stdin, measuring its peak RSS (GNU time).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use smarter_testbed::{CniCall, CniOutput, Netns};

use crate::error::CallFailed;

/// GNU time (Debian's `time`), which forks the measured plugin from its own small process.
const GNU_TIME: &str = "/usr/bin/time";

/// Runs `bin` with `call` inside `ns`; returns its answer and its peak RSS in KiB.
///
/// The peak comes from GNU time, which runs `nsenter`, which `exec`s the plugin: a process
/// forked from this (large, multi-threaded) harness would start with the harness's resident
/// pages counted, and Linux keeps that high-water mark across `execve`. GNU time and nsenter
/// are about 1 MiB.
///
/// Nothing is written to a file that is then executed (a script written by one thread can be
/// held open for writing by a sibling's fork, and its `exec` then fails with `ETXTBSY`); stdin
/// is written tolerating a plugin that exits without reading it; stdout and stderr are drained
/// together (the plugin's debug logs can fill a pipe).
///
/// # Errors
///
/// [`CallFailed`] (with the call's stderr) when it cannot run or GNU time reports no figure.
pub fn run_measured(ns: &Netns, bin: &Path, call: &CniCall) -> anyhow::Result<(CniOutput, u64)> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let describe = || {
        format!(
            "{} {} ({})",
            call.verb,
            bin.display(),
            call.container_id.as_deref().unwrap_or("-")
        )
    };
    let fail = |reason: String, stderr: String| CallFailed {
        call: describe(),
        reason,
        stderr,
    };
    anyhow::ensure!(
        Path::new(GNU_TIME).exists(),
        "{GNU_TIME} is missing (Debian's `time`): run `cargo xtask setup`"
    );
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let out = std::env::temp_dir().join(format!("smarter-bench-rss-{}-{n}", std::process::id()));
    let mut cmd = Command::new(GNU_TIME);
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&out)
        .arg("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .arg("--");
    // Diagnostics: `SMARTER_BENCH_STRACE=DIR` traces every plugin call into DIR (the peak RSS
    // is then strace's, and the latency meaningless).
    if let Some(dir) = std::env::var_os("SMARTER_BENCH_STRACE") {
        let trace = Path::new(&dir).join(format!("{}-{n}.strace", call.verb));
        cmd.args(["strace", "-f", "-tt", "-T", "-o"]).arg(trace);
    }
    cmd.arg(bin)
        .env_clear()
        .envs(cni_env(call))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("spawn: {e}"), String::new()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let written = stdin.write_all(&call.stdin);
    drop(stdin);
    let output = child.wait_with_output();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let output = output.map_err(|e| fail(format!("wait: {e}"), String::new()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let status = output.status.code().unwrap_or(-1);
    // A plugin may exit (e.g. on a bad environment) before reading stdin: then its status
    // and stderr tell why, not the broken pipe.
    if let Err(e) = written
        && (e.kind() != std::io::ErrorKind::BrokenPipe || status == 0)
    {
        return Err(fail(format!("write stdin: {e} (exit status {status})"), stderr).into());
    }
    // GNU time prints "Command exited with non-zero status N" before the figure on failures.
    let kib = text
        .lines()
        .rev()
        .find_map(|l| l.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            fail(
                format!("no peak RSS from {GNU_TIME}: {text:?}"),
                stderr.clone(),
            )
        })?;
    let json = if stdout.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null)
    };
    Ok((
        CniOutput {
            status,
            json,
            stdout,
            stderr,
        },
        kib,
    ))
}

/// The environment a runtime gives a plugin for `call`.
fn cni_env(call: &CniCall) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("CNI_COMMAND".into(), call.verb.clone()),
        ("CNI_PATH".into(), "/opt/cni/bin:/usr/lib/cni".into()),
        ("SMARTER_CNI_LOG".into(), "debug".into()),
    ];
    let opt = [
        ("CNI_CONTAINERID", call.container_id.clone()),
        (
            "CNI_NETNS",
            call.netns.as_ref().map(|p| p.display().to_string()),
        ),
        ("CNI_IFNAME", call.ifname.clone()),
        ("CNI_ARGS", call.args.clone()),
    ];
    env.extend(
        opt.into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?))),
    );
    env.extend(call.env.iter().cloned());
    env
}
