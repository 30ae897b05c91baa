//! [`NftablesError`]: everything the nftables datapath can fail with, each variant carrying the
//! command, the object and the kernel's or nft's own words.

use std::io;

/// An error of the nftables datapath.
#[derive(Debug, thiserror::Error)]
pub enum NftablesError {
    /// The `nft` binary could not be started (not installed, not executable).
    #[error("cannot run `nft {args}`: {source}")]
    Spawn {
        /// The arguments passed to `nft`.
        args: String,
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// `nft` ran and failed; `stderr` is its message (which names the offending line).
    #[error("`nft {args}` failed while {context} ({status}): {stderr}")]
    Command {
        /// The arguments passed to `nft`.
        args: String,
        /// What was being done, e.g. `attaching 172.39.0.2 (smv0123456789ab)`.
        context: String,
        /// The exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A name or value cannot be written into an nft script safely.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// What the value is: `interface name`, `protocol`, `NAT port range`...
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A hostPort is already mapped to another pod.
    #[error("hostPort {protocol}/{port} is already mapped to {owner}")]
    HostPortTaken {
        /// `tcp` or `udp`.
        protocol: &'static str,
        /// The host port.
        port: u16,
        /// The pod address and port it maps to, e.g. `172.39.0.3:80`.
        owner: String,
    },
    /// The network's tables do not exist: [`super::NftablesDatapath::ensure`] was not run (or the
    /// tables were removed meanwhile).
    #[error("nftables table {table} does not exist (datapath not set up)")]
    NotEnsured {
        /// `family name` of the missing table.
        table: String,
    },
    /// A sysctl of the node namespace could not be read or written.
    #[error("cannot set {path} to {value}: {source}")]
    Sysctl {
        /// The `/proc/sys` path.
        path: String,
        /// The value being written.
        value: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// `nft -j` printed something this module does not understand.
    #[error("unexpected `nft -j` output for {what}: {reason}")]
    Parse {
        /// What was being read, e.g. `set endpoints`.
        what: String,
        /// What was wrong.
        reason: String,
    },
}

impl From<NftablesError> for crate::datapath::seam::DatapathError {
    fn from(e: NftablesError) -> Self {
        match e {
            NftablesError::HostPortTaken {
                protocol,
                port,
                owner,
            } => Self::HostPortTaken {
                protocol,
                port,
                holder: owner,
            },
            other => Self::Driver {
                kind: crate::datapath::types::DatapathKind::Nftables,
                error: Box::new(other),
            },
        }
    }
}
