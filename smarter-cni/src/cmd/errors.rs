//! Mapping module errors to CNI error codes — done only here, at the edge.
//!
//! | source | code |
//! |---|---|
//! | IPAM exhausted | 100 |
//! | IPAM requested IP unusable or held | 101 |
//! | IPAM duplicate allocation | 104 |
//! | IPAM/state I/O | 5 |
//! | netlink | 102 |
//! | eBPF datapath | 103 |
//! | nftables datapath | 107 |
//! | hostPort held by another pod (either datapath) | 108 |

use crate::cni::CniError;
use crate::ipam::IpamError;
use crate::netlink::NetlinkError;
use crate::state::StateError;

/// Converts a module error into the CNI error the runtime sees.
pub trait ToCni {
    /// The CNI error.
    fn to_cni(&self) -> CniError;
}

impl ToCni for IpamError {
    fn to_cni(&self) -> CniError {
        let code = match self {
            IpamError::Exhausted { .. } => CniError::IPAM_EXHAUSTED,
            IpamError::Unavailable { .. } | IpamError::RequestedNotUsable { .. } => {
                CniError::IP_UNAVAILABLE
            }
            IpamError::AlreadyAllocated { .. } => CniError::ATTACHMENT_EXISTS,
            IpamError::Io { .. } => CniError::IO,
            _ => CniError::INVALID_CONFIG,
        };
        CniError::new(code, self.to_string(), "ipam")
    }
}

impl ToCni for StateError {
    fn to_cni(&self) -> CniError {
        CniError::new(CniError::STATE_STORE, self.to_string(), "stateDir")
    }
}

impl ToCni for NetlinkError {
    fn to_cni(&self) -> CniError {
        CniError::new(CniError::NETLINK, self.to_string(), "netlink")
    }
}

/// `Result<T, E>` → `Result<T, CniError>` for module errors.
pub trait IntoCni<T> {
    /// Maps the error with [`ToCni`].
    ///
    /// # Errors
    /// The mapped error.
    fn into_cni(self) -> Result<T, CniError>;
}

impl<T, E: ToCni> IntoCni<T> for Result<T, E> {
    fn into_cni(self) -> Result<T, CniError> {
        self.map_err(|e| e.to_cni())
    }
}
