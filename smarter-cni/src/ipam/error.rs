//! The IPAM error type.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

/// A failure of the built-in IPAM, with the addresses and paths involved.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The network name cannot be used as a directory name.
    #[error("invalid network name {name:?}: {reason}")]
    InvalidNetworkName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The subnet has fewer than two usable addresses (an IPv4 /31 or /32), or is outside
    /// the IPv6 prefixes accepted (/64 to /120).
    #[error("subnet {subnet} cannot be allocated from (IPv4: at most /30; IPv6: /64 to /120)")]
    SubnetTooSmall {
        /// The subnet as configured.
        subnet: IpNetwork,
    },
    /// The subnet address has host bits set (e.g. `10.0.0.1/24`).
    #[error("subnet {subnet} has host bits set; its network address is {network}")]
    HostBitsSet {
        /// The subnet as configured.
        subnet: IpNetwork,
        /// The network address it should have been written with.
        network: IpAddr,
    },
    /// The gateway is not a usable address of the subnet.
    #[error("gateway {gateway} is not a usable address of subnet {subnet}")]
    InvalidGateway {
        /// The gateway as configured.
        gateway: IpAddr,
        /// The subnet.
        subnet: IpNetwork,
    },
    /// A container id or interface name that cannot be stored.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        /// `"container id"` or `"interface name"`.
        what: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A requested address that may never be handed out in this subnet.
    #[error("requested IP {ip} cannot be allocated in subnet {subnet}: {reason}")]
    RequestedNotUsable {
        /// The requested address.
        ip: IpAddr,
        /// The subnet.
        subnet: IpNetwork,
        /// Why (outside the subnet, network address, broadcast, gateway).
        reason: &'static str,
    },
    /// A requested address that is held by someone else.
    #[error("requested IP {ip} is already allocated to {holder}")]
    Unavailable {
        /// The requested address.
        ip: IpAddr,
        /// Who holds it, as `<container id>/<ifname>` (or the bare id of legacy files).
        holder: String,
    },
    /// The (container id, ifname) pair already holds an address of this subnet; a second
    /// ADD for the same attachment is an error (CNI spec: no duplicate allocation).
    #[error("{container_id}/{ifname} already holds {ip}; duplicate allocation is not allowed")]
    AlreadyAllocated {
        /// The address it holds.
        ip: IpAddr,
        /// The container id.
        container_id: String,
        /// The interface name.
        ifname: String,
    },
    /// Every usable address of the subnet is allocated.
    #[error("no IP addresses available in subnet {subnet}")]
    Exhausted {
        /// The subnet.
        subnet: IpNetwork,
    },
    /// An I/O failure on the store.
    #[error("IPAM store: {op} {path}: {source}")]
    Io {
        /// What was being done (`"create"`, `"read"`, `"lock"`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl IpamError {
    /// Whether retrying the same request later may succeed without operator action: the
    /// subnet is full or the requested address is held (other attachments come and go), or
    /// the I/O error is of a passing kind (interrupted, would block, timed out, busy).
    /// The CNI edge maps these to error code 11 ("try again later").
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Exhausted { .. } | Self::Unavailable { .. } => true,
            Self::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::ResourceBusy
            ),
            _ => false,
        }
    }
}

/// Builds the `map_err` closure for an I/O failure of `op` on `path`.
pub(super) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> IpamError {
    let path = path.into();
    move |source| IpamError::Io { op, path, source }
}
