//! The node as the verbs reach it: netlink connections (in the node's namespace or a pod's)
//! and the node's sysctls (node-wide, and those of the bridge and each host veth). [`Kernel`]
//! is the real node; the verbs' unit tests use an in-memory one, so ADD, DEL, CHECK and GC run
//! without root.

use crate::cni::{CniError, PortRange};
use crate::netlink::{Links, Netlink, NetlinkError, NetnsFile};

/// How the verbs reach the node ([`Kernel`], or a fake in unit tests).
pub trait Host: Sync {
    /// A netlink connection in the node's namespace (the one the plugin runs in).
    ///
    /// # Errors
    /// The socket cannot be opened.
    fn node(&self) -> Result<Box<dyn Links>, NetlinkError>;

    /// A netlink connection inside the pod namespace `ns`.
    ///
    /// # Errors
    /// The namespace cannot be entered or the socket opened.
    fn pod(&self, ns: &NetnsFile) -> Result<Box<dyn Links>, NetlinkError>;

    /// Node-wide sysctls of the network ([`super::node::prepare`]).
    ///
    /// # Errors
    /// An I/O CNI error naming the sysctl.
    fn prepare(&self, bridge: &str, nat: PortRange) -> Result<(), CniError>;

    /// The sysctls of a new host veth ([`super::node::guard_interface`]).
    ///
    /// # Errors
    /// An I/O CNI error naming the sysctl.
    fn prepare_port(&self, port: &str) -> Result<(), CniError>;

    /// How an interface's sysctls differ from what ADD set ([`super::node::guard_drift`]).
    fn sysctl_drift(&self, ifname: &str) -> Vec<String>;
}

/// The real node: rtnetlink and `/proc/sys`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kernel;

impl Host for Kernel {
    fn node(&self) -> Result<Box<dyn Links>, NetlinkError> {
        Ok(Box::new(Netlink::connect()?))
    }

    fn pod(&self, ns: &NetnsFile) -> Result<Box<dyn Links>, NetlinkError> {
        Ok(Box::new(Netlink::connect_in(ns)?))
    }

    fn prepare(&self, bridge: &str, nat: PortRange) -> Result<(), CniError> {
        super::node::prepare(bridge, nat)
    }

    fn prepare_port(&self, port: &str) -> Result<(), CniError> {
        super::node::guard_interface(port)
    }

    fn sysctl_drift(&self, ifname: &str) -> Vec<String> {
        super::node::guard_drift(ifname)
    }
}
