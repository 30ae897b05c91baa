//! Running commands visibly: every command is printed before it runs, and a failure names it.

use std::{
    ffi::{OsStr, OsString},
    path::Path,
    process::{Command, Stdio},
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

    /// Runs quietly (a probe, not printed) and returns trimmed stdout if it succeeded.
    pub fn probe(mut self) -> Option<String> {
        let out = self.inner.stderr(Stdio::null()).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// `cargo <fixed> <extra>` in the workspace root.
pub fn cargo<const N: usize>(root: &Path, fixed: [&str; N], extra: &[OsString]) -> Cmd {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Cmd::new(cargo).current_dir(root).args(fixed).args(extra)
}
