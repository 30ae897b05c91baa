//! Executing the plugin exactly as a runtime does: environment plus stdin, inside the
//! world's `node` namespace, stdout parsed as the CNI result or error.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{Netns, World};

/// One plugin invocation; build with [`CniCall::new`] and the setters, run with
/// [`World::cni`].
#[derive(Debug, Clone)]
pub struct CniCall {
    /// `CNI_COMMAND`.
    pub verb: String,
    /// `CNI_CONTAINERID` (omitted when `None`).
    pub container_id: Option<String>,
    /// `CNI_NETNS` (omitted when `None`).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (omitted when `None`).
    pub ifname: Option<String>,
    /// `CNI_ARGS` (omitted when `None`).
    pub args: Option<String>,
    /// Standard input.
    pub stdin: Vec<u8>,
    /// Extra or overriding environment.
    pub env: Vec<(String, String)>,
}

impl CniCall {
    /// A call of `verb` with `config` on stdin and the usual `CNI_PATH`.
    #[must_use]
    pub fn new(verb: &str, config: &serde_json::Value) -> Self {
        Self {
            verb: verb.to_string(),
            container_id: None,
            netns: None,
            ifname: None,
            args: None,
            stdin: serde_json::to_vec(config).expect("serializable config"),
            env: Vec::new(),
        }
    }

    /// Sets container id, namespace and interface name (`eth0`).
    #[must_use]
    pub fn pod(mut self, container_id: &str, netns: &Path) -> Self {
        self.container_id = Some(container_id.to_string());
        self.netns = Some(netns.to_path_buf());
        self.ifname = Some("eth0".to_string());
        self
    }

    /// Sets `CNI_ARGS`.
    #[must_use]
    pub fn args(mut self, args: &str) -> Self {
        self.args = Some(args.to_string());
        self
    }

    /// Adds an environment variable (e.g. a fault injection switch).
    #[must_use]
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
}

/// What the plugin answered.
#[derive(Debug, Clone)]
pub struct CniOutput {
    /// Exit status code (0 = success).
    pub status: i32,
    /// Standard output parsed as JSON (`Null` when empty).
    pub json: serde_json::Value,
    /// Raw standard output.
    pub stdout: String,
    /// Standard error (logs).
    pub stderr: String,
}

impl CniOutput {
    /// The CNI error code when the call failed.
    #[must_use]
    pub fn code(&self) -> Option<u64> {
        self.json.get("code").and_then(serde_json::Value::as_u64)
    }

    /// The error message (`msg`) when the call failed.
    #[must_use]
    pub fn msg(&self) -> String {
        self.json
            .get("msg")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

impl World {
    /// Runs the plugin binary `bin` inside the node namespace with a clean environment.
    ///
    /// # Errors
    /// When the process cannot be started or its stdout is not JSON.
    pub fn cni(&self, bin: &Path, call: &CniCall) -> io::Result<CniOutput> {
        run_plugin(self.node(), bin, call)
    }
}

/// Runs the plugin inside `ns` (see [`World::cni`]).
///
/// # Errors
/// When the process cannot be started or its stdout is not JSON.
pub fn run_plugin(ns: &Netns, bin: &Path, call: &CniCall) -> io::Result<CniOutput> {
    let child = spawn_plugin(ns, bin, call)?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = if stdout.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&stdout)
            .map_err(|e| io::Error::other(format!("plugin stdout is not JSON ({e}): {stdout:?}")))?
    };
    Ok(CniOutput {
        status: out.status.code().unwrap_or(-1),
        json,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Starts the plugin inside `ns` with its stdin written and closed, without waiting (for tests
/// that kill it midway). Stdout and stderr are piped.
///
/// # Errors
/// When the process cannot be started or stdin cannot be written.
pub fn spawn_plugin(ns: &Netns, bin: &Path, call: &CniCall) -> io::Result<std::process::Child> {
    let mut cmd = ns.command(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", &call.verb)
        .env("CNI_PATH", "/opt/cni/bin:/usr/lib/cni")
        .env("SMARTER_CNI_LOG", "debug");
    if let Some(v) = &call.container_id {
        cmd.env("CNI_CONTAINERID", v);
    }
    if let Some(v) = &call.netns {
        cmd.env("CNI_NETNS", v);
    }
    if let Some(v) = &call.ifname {
        cmd.env("CNI_IFNAME", v);
    }
    if let Some(v) = &call.args {
        cmd.env("CNI_ARGS", v);
    }
    for (k, v) in &call.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&call.stdin)?;
    Ok(child)
}
