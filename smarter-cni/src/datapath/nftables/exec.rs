//! The only place that runs commands: `nft` (scripts on stdin, JSON listings) and the optional
//! `conntrack` tool. Children inherit the calling thread's network namespace.

use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::error::NftablesError;

/// Runs `nft` with `args`, feeding `stdin` when given, and returns its standard output.
///
/// # Errors
///
/// [`NftablesError::Spawn`] when `nft` cannot be started, [`NftablesError::Command`] when it fails.
pub(super) fn nft(
    args: &[&str],
    stdin: Option<&str>,
    context: &str,
) -> Result<String, NftablesError> {
    let joined = args.join(" ");
    let spawn = |source| NftablesError::Spawn {
        args: joined.clone(),
        source,
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error (nft exited early) shows up as nft's own failure below.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(NftablesError::Command {
        args: joined,
        context: context.to_owned(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Applies `script` as one atomic transaction (`nft -f -`).
///
/// # Errors
///
/// As [`nft`].
pub(super) fn apply(script: &str, context: &str) -> Result<(), NftablesError> {
    tracing::debug!(context, script, "nft batch");
    nft(&["-f", "-"], Some(script), context).map(drop)
}

/// Whether a failed command said the object does not exist.
pub(super) fn is_enoent(err: &NftablesError) -> bool {
    matches!(err, NftablesError::Command { stderr, .. } if stderr.contains("No such file or directory"))
}

/// `nft -j list table <family> <table>`, or `None` when the table does not exist.
///
/// # Errors
///
/// As [`nft`] (other than "no such table"), [`NftablesError::Parse`] for output that is not JSON.
pub(super) fn list_table(family: &str, table: &str) -> Result<Option<Value>, NftablesError> {
    let context = format!("listing table {family} {table}");
    match nft(&["-j", "list", "table", family, table], None, &context) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| NftablesError::Parse {
                what: context,
                reason: e.to_string(),
            }),
        Err(e) if is_enoent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `nft -j list tables`.
///
/// # Errors
///
/// As [`list_table`].
pub(super) fn list_tables() -> Result<Value, NftablesError> {
    let context = "listing tables";
    let text = nft(&["-j", "list", "tables"], None, context)?;
    serde_json::from_str(&text).map_err(|e| NftablesError::Parse {
        what: context.to_owned(),
        reason: e.to_string(),
    })
}

/// Deletes the conntrack entries of `ip` (originated by it, or answered by it after DNAT) with
/// the `conntrack` tool; silently does nothing when the tool is not installed.
pub(super) fn flush_conntrack(ip: IpAddr) {
    let family = if ip.is_ipv6() { "ipv6" } else { "ipv4" };
    let ip = ip.to_string();
    for flag in ["--orig-src", "--reply-src"] {
        let result = Command::new("conntrack")
            .args(["-D", "-f", family, flag, &ip])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(e) = result {
            // Not installed: entries of the old pod then expire on their own.
            tracing::debug!(error = %e, "conntrack tool unavailable, not flushing {ip}");
            return;
        }
    }
}
