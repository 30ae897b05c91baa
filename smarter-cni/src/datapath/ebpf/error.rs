//! [`EbpfError`]: everything the eBPF datapath can fail with, each variant carrying what was
//! being done and on which object.

use std::{io, path::PathBuf};

/// An error of the eBPF datapath.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The pin root is not on a bpf filesystem.
    #[error(
        "{} is not on a bpf filesystem (mount one with `mount -t bpf bpf {}`)",
        path.display(),
        path.display()
    )]
    NotBpffs {
        /// The directory that was checked.
        path: PathBuf,
    },
    /// The pin root does not exist and its nearest existing ancestor is not on a bpf
    /// filesystem, so it is not created (nothing is ever created on another file system).
    #[error(
        "{} does not exist and {} (its nearest existing directory) is not on a bpf filesystem \
         (mount one with `mount -t bpf bpf {}`)",
        path.display(),
        ancestor.display(),
        ancestor.display()
    )]
    NoBpffsAncestor {
        /// The pin root (`bpffsDir`).
        path: PathBuf,
        /// Its nearest existing ancestor, which was checked.
        ancestor: PathBuf,
    },
    /// The pin root exists but cannot be trusted: not a directory, reached through an unsafe
    /// symlink, not owned by root, or writable by others than root.
    #[error("pin root {}: {reason}", path.display())]
    UnsafePinRoot {
        /// The pin root (`bpffsDir`).
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A network or interface name cannot be used as a pin file name.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// What the name names: `network` or `interface`.
        what: &'static str,
        /// The offending name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The CLAT's address could not be added to or removed from its uplink.
    #[error("{op} the CLAT address {addr} on interface {ifindex}: {source}")]
    ClatAddress {
        /// `add` or `remove`.
        op: &'static str,
        /// The address.
        addr: std::net::Ipv6Addr,
        /// The uplink's ifindex.
        ifindex: u32,
        /// The netlink error.
        #[source]
        source: io::Error,
    },
    /// A file system operation failed (pin directories, lock file, statfs).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `create pin directory`.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The embedded eBPF object is empty (smarter-cni was built with `AYA_BUILD_SKIP`).
    #[error("this smarter-cni was built without eBPF programs (AYA_BUILD_SKIP); rebuild it")]
    NoObject,
    /// Parsing, relocating or loading the eBPF object failed.
    #[error("loading the eBPF object for {}: {source}", dir.display())]
    Load {
        /// The pin directory being populated.
        dir: PathBuf,
        /// The loader's error.
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// The embedded object lacks a map or program this build expects.
    #[error("the embedded eBPF object has no {kind} named {name}")]
    MissingInObject {
        /// `map` or `program`.
        kind: &'static str,
        /// The missing name.
        name: &'static str,
    },
    /// A pinned map does not have the layout this build expects: refuse to reuse it.
    #[error(
        "pinned map {} has {field} {found}, this build expects {expected}; \
         remove the network's pins (or bump LAYOUT_VERSION) instead of reusing a changed layout",
        path.display()
    )]
    LayoutMismatch {
        /// The pinned map.
        path: PathBuf,
        /// Which property differs: `type`, `key size`, `value size` or `max entries`.
        field: &'static str,
        /// What this build expects.
        expected: u32,
        /// What the pinned map has.
        found: u32,
    },
    /// The pin directory holds some pins but not all: a previous loader was interrupted in a way
    /// that cannot be completed safely, or pins were removed by hand.
    #[error("incomplete pins in {}: {missing} is missing; remove the network's pins and retry", dir.display())]
    IncompletePins {
        /// The network's versioned pin directory.
        dir: PathBuf,
        /// The first missing pin.
        missing: String,
    },
    /// A pinned program is not the program this build expects.
    #[error("pinned program {} is {found:?}, expected {expected}", path.display())]
    WrongProgram {
        /// The pinned program.
        path: PathBuf,
        /// The expected program name.
        expected: &'static str,
        /// The name the kernel reports.
        found: String,
    },
    /// A map is at capacity (`E2BIG` on insert): the node has as many endpoints, hostPorts
    /// or deny ranges as the datapath can hold.
    #[error(
        "map {map} is full ({op}): the datapath's capacity of {capacity} entries is reached; \
         remove unused pods or entries (CNI GC, smarter-bpfctl) first"
    )]
    MapFull {
        /// The map name.
        map: &'static str,
        /// What was being done.
        op: String,
        /// The map's capacity.
        capacity: u32,
    },
    /// A map operation failed.
    #[error("map {map}: {op}: {source}")]
    Map {
        /// The map name.
        map: &'static str,
        /// What was being done, e.g. `insert 172.39.0.3`.
        op: String,
        /// aya's error.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A program operation (load, attach, query, pin) failed.
    #[error("program {program}: {op}: {source}")]
    Program {
        /// The program name.
        program: &'static str,
        /// What was being done, e.g. `attach to veth1 ingress (tcx)`.
        op: String,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A link (attachment) could not be converted or inspected.
    #[error("link of {ifname}: {op}: {source}")]
    Link {
        /// The interface the link attaches to.
        ifname: String,
        /// What was being done.
        op: &'static str,
        /// aya's error.
        #[source]
        source: Box<aya::programs::links::LinkError>,
    },
    /// Pinning or opening a pinned object failed.
    #[error("pin {}: {source}", path.display())]
    Pin {
        /// The pin path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An interface could not be found in the calling thread's network namespace.
    #[error("interface {name}: {source}")]
    Interface {
        /// The interface name.
        name: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The interface name resolves to another ifindex than the caller said.
    #[error("interface {name} has ifindex {found}, expected {expected}")]
    IfindexMismatch {
        /// The interface name.
        name: String,
        /// The ifindex the caller gave.
        expected: u32,
        /// The ifindex the name resolves to.
        found: u32,
    },
    /// A hostPort is already mapped to another pod.
    #[error("hostPort {port}/{protocol} is already mapped to pod {holder}")]
    HostPortTaken {
        /// The host port.
        port: u16,
        /// `tcp` or `udp`.
        protocol: &'static str,
        /// The pod holding it.
        holder: std::net::Ipv4Addr,
    },
    /// A hostPort specification cannot be used (protocol other than TCP/UDP, port 0).
    #[error("invalid hostPort {port}/{protocol}: {reason}")]
    InvalidHostPort {
        /// The host port.
        port: u16,
        /// The IP protocol number given.
        protocol: u8,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A traffic-control netlink operation failed.
    #[error("tc on {ifname}: {op}: {source}")]
    Tc {
        /// The interface.
        ifname: String,
        /// What was being done, e.g. `add clsact qdisc`.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl EbpfError {
    pub(super) fn map(
        map: &'static str,
        op: impl Into<String>,
        source: aya::maps::MapError,
    ) -> Self {
        if let aya::maps::MapError::SyscallError(e) = &source
            && e.io_error.raw_os_error() == Some(nix::libc::E2BIG)
        {
            return Self::MapFull {
                map,
                op: op.into(),
                capacity: smarter_common::maps::ALL
                    .iter()
                    .find(|s| s.name == map)
                    .map_or(0, |s| s.max_entries),
            };
        }
        Self::Map {
            map,
            op: op.into(),
            source: Box::new(source),
        }
    }

    pub(super) fn program(
        program: &'static str,
        op: impl Into<String>,
        source: impl Into<aya::programs::ProgramError>,
    ) -> Self {
        Self::Program {
            program,
            op: op.into(),
            source: Box::new(source.into()),
        }
    }

    pub(super) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<EbpfError> for crate::datapath::seam::DatapathError {
    fn from(e: EbpfError) -> Self {
        match e {
            EbpfError::HostPortTaken {
                port,
                protocol,
                holder,
            } => Self::HostPortTaken {
                protocol,
                port,
                holder: holder.to_string(),
            },
            other => Self::Driver {
                kind: crate::datapath::types::DatapathKind::Ebpf,
                error: Box::new(other),
            },
        }
    }
}

/// Whether a map error only says the key is absent (also when a concurrent writer removed it
/// between an iteration and the removal: iterating a hash map that changes may repeat keys).
pub(super) fn is_absent(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound | aya::maps::MapError::ElementNotFound => true,
        aya::maps::MapError::SyscallError(e) => {
            e.io_error.raw_os_error() == Some(nix::libc::ENOENT)
        }
        _ => false,
    }
}
