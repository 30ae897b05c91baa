//! The installer's errors: each names the path, ConfigMap key or step involved.

use std::io;
use std::path::{Path, PathBuf};

/// Why an install, uninstall or health check failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The configuration from the ConfigMap is refused by the plugin's own validation; the
    /// conflist on the host is left as it was.
    #[error(
        "invalid smarter-cni configuration{}: {msg}; the installed configuration is unchanged",
        knob.as_ref().map(|k| format!(" (ConfigMap key {k})")).unwrap_or_default()
    )]
    InvalidConfig {
        /// The plugin's message (names the conflist key and value).
        msg: String,
        /// The ConfigMap key that sets it, when known.
        knob: Option<String>,
    },
    /// A binary to install is not in the source directory.
    #[error("binary {path} to install is missing (is --source-dir right?)")]
    MissingBinary {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The step (`write`, `rename`, `remove`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The install manifest cannot be understood.
    #[error("install manifest {path} is unreadable: {why}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The parse error.
        why: String,
    },
    /// The agent's health file says it is not healthy.
    #[error("{0}")]
    Unhealthy(String),
    /// Uninstall finished but some steps failed (each is named).
    #[error("uninstall left things behind: {}", .0.join("; "))]
    Incomplete(Vec<String>),
}

impl InstallError {
    /// An [`InstallError::Io`].
    #[must_use]
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
