//! Typed rtnetlink operations used by the verbs, in two layers as in netavark:
//! [`netns`] enters namespaces and opens sockets inside them, [`Netlink`] is one rtnetlink
//! connection bound to the namespace it was opened in, with idempotent typed operations.
//!
//! A netlink socket stays in the namespace it was created in, so a connection for the pod
//! namespace is opened once (by briefly entering it on the calling thread) and reused; no
//! thread hopping per request.

pub mod netns;

mod addr6;
mod link;
pub use link::format_mac;
mod ops;
pub use ops::Links;
mod route;
pub mod snapshot;

pub use link::LinkInfo;
pub use netns::{NetnsFile, NetnsGuard};
pub use route::DefaultRoute;

use std::io;

use rtnetlink::Handle;

/// An error from a netlink operation, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Opening the netlink socket failed.
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// Entering or opening a network namespace failed.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// The namespace path.
        path: String,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
    /// A request was refused by the kernel.
    #[error("{op}: {source}")]
    Request {
        /// What was being done, e.g. `create veth smv0123 (peer eth0)`.
        op: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// An interface that must exist does not.
    #[error("interface {0} does not exist")]
    NoSuchLink(String),
    /// An interface exists with the name but is of another kind.
    #[error("interface {name} exists but is a {found}, not a {expected}")]
    WrongKind {
        /// Interface name.
        name: String,
        /// Kind wanted.
        expected: &'static str,
        /// Kind found.
        found: String,
    },
}

impl NetlinkError {
    /// The kernel errno behind a refused request, if any.
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request {
                source: rtnetlink::Error::NetlinkError(msg),
                ..
            } => msg.code.map(|c| -c.get()),
            _ => None,
        }
    }
}

/// One rtnetlink connection, bound to the network namespace it was opened in.
///
/// Must be created and used inside a tokio runtime (the connection runs as a task).
pub struct Netlink {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// Opens a connection in the calling thread's current network namespace.
    ///
    /// # Errors
    /// [`NetlinkError::Socket`] when the socket cannot be opened.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        let task = tokio::spawn(conn);
        Ok(Self { handle, task })
    }

    /// Opens a connection inside `ns`: enters it on this thread just long enough to create
    /// the socket, then returns to the original namespace.
    ///
    /// # Errors
    /// [`NetlinkError::Netns`] when the namespace cannot be entered or left,
    /// [`NetlinkError::Socket`] when the socket cannot be opened.
    pub fn connect_in(ns: &NetnsFile) -> Result<Self, NetlinkError> {
        let guard = NetnsGuard::enter(ns)?;
        let conn = Self::connect();
        guard.restore()?;
        conn
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// Wraps a refused request with what was being done.
pub(crate) fn request(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let op = op.into();
    move |source| NetlinkError::Request { op, source }
}

/// True when the error is the kernel's answer `errno`.
pub(crate) fn is_errno(e: &rtnetlink::Error, errno: nix::errno::Errno) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| -c.get()) == Some(errno as i32))
}
