//! What a failure tells: where in a stage it happened ([`At`]) and which call failed, with its
//! standard error ([`CallFailed`]). Both ride on an `anyhow::Error` (as context, or as the
//! error itself) and are found again by downcasting when the run records the failure.

use std::fmt;

/// Where in a stage something failed: attach with `anyhow::Context` (found again by
/// downcasting).
#[derive(Debug, Clone)]
pub struct At {
    /// Contender.
    pub contender: String,
    /// Workload or step.
    pub workload: String,
}

impl At {
    /// At `contender`, doing `workload`.
    pub fn new(contender: &str, workload: &str) -> Self {
        Self {
            contender: contender.to_string(),
            workload: workload.to_string(),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.contender, self.workload)
    }
}

/// A call (a plugin invocation or a command) that failed, with its standard error.
#[derive(Debug)]
pub struct CallFailed {
    /// What was called, e.g. `ADD /usr/lib/cni/bridge (c3)`.
    pub call: String,
    /// Why: exit status or the I/O error.
    pub reason: String,
    /// Its standard error.
    pub stderr: String,
}

impl fmt::Display for CallFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.call, self.reason)?;
        let tail = tail_lines(&self.stderr, 20);
        if !tail.is_empty() {
            write!(f, "\n--- stderr (last lines) ---\n{tail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CallFailed {}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
