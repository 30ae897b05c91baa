//! Running commands visibly: every command is printed before it runs, and a failure names it.

use std::{
    ffi::{OsStr, OsString},
    path::Path,
    process::{Command, Stdio},
    sync::atomic::AtomicI32,
};

use anyhow::{Context as _, Result, bail};

/// A command that prints itself (`$ prog args`) before running.
pub struct Cmd {
    inner: Command,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            inner: Command::new(program),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.inner.arg(arg);
        self
    }

    pub fn args(mut self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        self.inner.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.inner.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.inner.current_dir(dir);
        self
    }

    fn describe(&self) -> String {
        let mut line = self.inner.get_program().to_string_lossy().into_owned();
        for arg in self.inner.get_args() {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    }

    /// Runs a `cargo test` command with its stdout echoed line by line, then prints one
    /// closing line `summary: N passed, N failed, N skipped` summed over every test binary
    /// (the `ignored` tests count as skipped); an error unless it exits successfully.
    /// `skip_log` is the file the tests list their skips in (see `smarter_testbed::skipped`).
    pub fn status_with_test_summary(mut self, skip_log: &Path) -> Result<()> {
        use std::io::{BufRead as _, BufReader};
        let line = self.describe();
        println!("$ {line}");
        let mut child = self
            .inner
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run `{line}`"))?;
        let mut totals = [0u64; 3];
        for l in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let l = l?;
            println!("{l}");
            if let Some(counts) = parse_test_result(&l) {
                for (t, c) in totals.iter_mut().zip(counts) {
                    *t += c;
                }
            }
        }
        let status = child.wait()?;
        let skips = std::fs::read_to_string(skip_log).unwrap_or_default();
        let skipped: Vec<&str> = skips.lines().filter(|l| !l.trim().is_empty()).collect();
        for s in &skipped {
            println!("{s}");
        }
        // A test that skips returns early and libtest counts it as passed.
        let n = skipped.len() as u64;
        println!(
            "summary: {} passed, {} failed, {} skipped",
            totals[0].saturating_sub(n),
            totals[1],
            totals[2] + n
        );
        if !status.success() {
            bail!("`{line}` failed with {status}");
        }
        Ok(())
    }

    /// Runs with inherited stdio; an error unless it exits successfully.
    pub fn status(mut self) -> Result<()> {
        let line = self.describe();
        println!("$ {line}");
        let status = self
            .inner
            .status()
            .with_context(|| format!("cannot run `{line}`"))?;
        if !status.success() {
            bail!("`{line}` failed ({status})");
        }
        Ok(())
    }

    /// Runs with stderr echoed line by line and also returned (stdout inherited); an error
    /// unless it exits successfully.
    pub fn stderr_of(mut self) -> Result<String> {
        use std::io::{BufRead as _, BufReader};
        let line = self.describe();
        println!("$ {line}");
        let mut child = self
            .inner
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run `{line}`"))?;
        let mut text = String::new();
        for l in BufReader::new(child.stderr.take().expect("piped")).lines() {
            let l = l?;
            eprintln!("{l}");
            text.push_str(&l);
            text.push('\n');
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("`{line}` failed ({status})");
        }
        Ok(text)
    }

    /// Runs in the background of other work: in its own process group (the group id, its pid,
    /// goes to `pid` once it runs, so [`kill_group`] stops it and the compilers it started)
    /// and at `SCHED_IDLE` (it gets only the CPU time nothing else wants), with stderr written
    /// to `log` and returned. An error unless it exits successfully, naming the log.
    pub fn stderr_in_background(mut self, log: &Path, pid: &AtomicI32) -> Result<String> {
        use std::os::unix::process::CommandExt as _;
        let line = self.describe();
        println!(
            "$ {line}  (in the background at SCHED_IDLE; stderr: {})",
            log.display()
        );
        let file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        self.inner
            .process_group(0)
            .stderr(file)
            .stdout(Stdio::null());
        // SAFETY: only sched_setscheduler(2), async-signal-safe, between fork and exec.
        unsafe {
            self.inner.pre_exec(|| {
                let param = nix::libc::sched_param { sched_priority: 0 };
                if nix::libc::sched_setscheduler(0, nix::libc::SCHED_IDLE, &raw const param) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = self
            .inner
            .spawn()
            .with_context(|| format!("cannot run `{line}`"))?;
        pid.store(
            i32::try_from(child.id()).unwrap_or(0),
            std::sync::atomic::Ordering::SeqCst,
        );
        let status = child.wait()?;
        pid.store(0, std::sync::atomic::Ordering::SeqCst);
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if !status.success() {
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            bail!("`{line}` failed ({status}); its output: {}", log.display());
        }
        Ok(text)
    }

    /// Runs quietly (a probe, not printed) and returns trimmed stdout if it succeeded.
    pub fn probe(mut self) -> Option<String> {
        let out = self.inner.stderr(Stdio::null()).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// Sends SIGTERM to process group `pid` (from [`Cmd::stderr_in_background`]) if it still
/// runs (`pid` is 0 once it ended).
pub fn kill_group(pid: &AtomicI32) {
    let pid = pid.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// `cargo <fixed> <extra>` in the workspace root.
pub fn cargo<const N: usize>(root: &Path, fixed: [&str; N], extra: &[OsString]) -> Cmd {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Cmd::new(cargo).current_dir(root).args(fixed).args(extra)
}

/// `[passed, failed, ignored]` from a libtest line such as
/// `test result: ok. 8 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.
pub fn parse_test_result(line: &str) -> Option<[u64; 3]> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let mut out = [0u64; 3];
    for part in rest.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(label), Some(n)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match label.trim_end_matches('.') {
            "passed" => out[0] = n,
            "failed" => out[1] = n,
            "ignored" => out[2] = n,
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::parse_test_result;

    #[test]
    fn parses_libtest_summary_lines() {
        let l = "test result: ok. 8 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.71s";
        assert_eq!(parse_test_result(l), Some([8, 2, 1]));
        assert_eq!(parse_test_result("running 8 tests"), None);
    }
}
