//! Built-in IPv4 IPAM, on-disk compatible with the reference CNI `host-local` plugin, so a
//! gateway upgraded from a host-local setup keeps its allocations (and could go back).
//!
//! State lives in `<dataDir>/<network>/` (format and crash safety: `ipam/store.rs`): one
//! file per allocated address holding `<containerID>\r\n<ifname>`, the round-robin cursors
//! `last_reserved_ip.0` (IPv4) and `last_reserved_ip.1` (IPv6, [`Ipam6`]), and a `lock` file that every operation holds exclusively with
//! flock(2), so concurrent ADD/DEL from many plugin processes are serialized.
//!
//! Allocation follows host-local: the range is `network + 1 ..= broadcast - 1` minus the
//! gateway, searched round robin starting after the last reserved address, so a
//! crash-looping pod does not get the same address back until the range has been used.

mod error;
mod pool;
mod store;
#[cfg(test)]
mod tests;
mod v6;

use std::net::Ipv4Addr;
use std::path::Path;

use ipnetwork::Ipv4Network;

pub use self::error::IpamError;
use self::pool::Pool;
use self::store::{Locked, Store, encode_record};
pub use self::v6::Ipam6;

/// One allocated address, as found on disk (IPv4 by default; [`Ipam6`] reads IPv6 ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation<A = Ipv4Addr> {
    /// The address (the file name).
    pub ip: A,
    /// The container id it was allocated to. Empty for a file left empty by a host-local
    /// process that crashed between creating and writing it (it matches nobody).
    pub container_id: String,
    /// The interface name; `None` for legacy host-local files holding only the container
    /// id, which match every interface of that container.
    pub ifname: Option<String>,
}

impl<A> Allocation<A> {
    /// Whether this allocation belongs to (container id, ifname), with host-local's
    /// matching: the container id is compared trimmed, and a legacy file (no ifname)
    /// matches any interface.
    #[must_use]
    pub fn is_held_by(&self, container_id: &str, ifname: &str) -> bool {
        !self.container_id.is_empty()
            && self.container_id == container_id.trim()
            && self.ifname.as_deref().is_none_or(|own| own == ifname)
    }

    fn holder(&self) -> String {
        if self.container_id.is_empty() {
            return "an unknown owner (empty file)".to_owned();
        }
        match &self.ifname {
            Some(ifname) => format!("{}/{ifname}", self.container_id),
            None => self.container_id.clone(),
        }
    }
}

/// The IPAM of one network: its store directory, subnet and gateway.
///
/// Cheap to create and holds no open file: every operation opens and flocks the lock
/// file for its own duration, so one `Ipam` may be shared between threads, and separate
/// instances (or processes) are serialized against each other.
#[derive(Debug, Clone)]
pub struct Ipam {
    store: Store,
    pool: Pool,
}

impl Ipam {
    /// Opens the store of `network` under `data_dir` (creating both directories with mode
    /// 0755 and the lock file when missing) for `subnet`, whose `gateway` is never handed
    /// out.
    ///
    /// # Errors
    /// [`IpamError::InvalidNetworkName`] when `network` is not a plain file name;
    /// [`IpamError::SubnetTooSmall`], [`IpamError::HostBitsSet`] or
    /// [`IpamError::InvalidGateway`] for a bad range; [`IpamError::Io`] when the directory
    /// or lock file cannot be created.
    pub fn new(
        data_dir: &Path,
        network: &str,
        subnet: Ipv4Network,
        gateway: Ipv4Addr,
    ) -> Result<Self, IpamError> {
        check_network_name(network)?;
        let pool = Pool::new(subnet, gateway)?;
        let store = Store::open(data_dir, network)?;
        Ok(Self { store, pool })
    }

    /// The subnet addresses are allocated from.
    #[must_use]
    pub fn subnet(&self) -> Ipv4Network {
        self.pool.subnet()
    }

    /// The gateway, which is never allocated.
    #[must_use]
    pub fn gateway(&self) -> Ipv4Addr {
        self.pool.gateway()
    }

    /// The network's store directory, `<dataDir>/<network>`.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// Allocates an address for (container id, ifname): `requested` when given (it is
    /// honoured or refused, never substituted), otherwise the next free address after the
    /// last reserved one. Records it as the new round-robin cursor, like host-local.
    ///
    /// A pair that already holds an address of this subnet gets
    /// [`IpamError::AlreadyAllocated`], not its address back: ADD for an existing
    /// attachment is an error. (Files of the pair outside the subnet, left by an earlier
    /// configuration, do not count, as in host-local.)
    ///
    /// # Errors
    /// [`IpamError::InvalidArgument`] for an empty container id or a bad ifname;
    /// [`IpamError::AlreadyAllocated`]; [`IpamError::RequestedNotUsable`] when `requested`
    /// is outside the subnet or its network, broadcast or gateway address;
    /// [`IpamError::Unavailable`] when it is held by someone else;
    /// [`IpamError::Exhausted`] when no address is free; [`IpamError::Io`] on store
    /// failures (nothing stays allocated then).
    pub fn allocate(
        &self,
        container_id: &str,
        ifname: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        let container_id = check_args(container_id, ifname)?;
        let locked = self.store.lock()?;
        let records = locked.records::<Ipv4Addr>()?;
        if let Some(held) = records
            .iter()
            .find(|a| a.is_held_by(container_id, ifname) && self.pool.contains(a.ip))
        {
            return Err(IpamError::AlreadyAllocated {
                ip: held.ip.into(),
                container_id: container_id.to_owned(),
                ifname: ifname.to_owned(),
            });
        }
        let record = encode_record(container_id, ifname);
        let ip = match requested {
            Some(ip) => {
                self.pool.check_requested(ip)?;
                if !locked.reserve(ip, &record)? {
                    let holder = locked.record(ip)?.map_or_else(String::new, |a| a.holder());
                    return Err(IpamError::Unavailable {
                        ip: ip.into(),
                        holder,
                    });
                }
                ip
            }
            None => self.reserve_next(&locked, &records, &record)?,
        };
        if let Err(e) = locked.sync_dir() {
            let _ = locked.remove(ip);
            return Err(e);
        }
        // Only a round-robin hint: losing it must not fail the allocation.
        if let Err(e) = locked.set_last_reserved(ip) {
            tracing::warn!("allocated {ip} but could not record it as last reserved: {e}");
        }
        tracing::debug!("allocated {ip} to {container_id}/{ifname}");
        Ok(ip)
    }

    fn reserve_next(
        &self,
        locked: &Locked<'_>,
        records: &[Allocation],
        record: &str,
    ) -> Result<Ipv4Addr, IpamError> {
        for ip in self.pool.candidates(locked.last_reserved()) {
            // `records` is a snapshot under the lock; reserve() stays the authority.
            if records.binary_search_by_key(&ip, |a| a.ip).is_err() && locked.reserve(ip, record)? {
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted {
            subnet: self.pool.subnet().into(),
        })
    }

    /// Releases what (container id, ifname) holds, legacy id-only files included; returns
    /// the released address of this subnet (or any released address), `Ok(None)` when
    /// there was nothing, so a repeated DEL succeeds.
    ///
    /// # Errors
    /// [`IpamError::InvalidArgument`] for an empty container id or a bad ifname;
    /// [`IpamError::Io`] when the store cannot be read or a file cannot be removed.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let container_id = check_args(container_id, ifname)?;
        let locked = self.store.lock()?;
        let mut released = Vec::new();
        for a in locked.records::<Ipv4Addr>()? {
            if a.is_held_by(container_id, ifname) && locked.remove(a.ip)? {
                released.push(a.ip);
            }
        }
        if released.is_empty() {
            return Ok(None);
        }
        locked.sync_dir()?;
        tracing::debug!("released {released:?} of {container_id}/{ifname}");
        Ok(self.prefer_in_subnet(&released))
    }

    /// Releases one allocation found by [`Ipam::allocations`] (for GC), but only if its
    /// file still holds the same owner: an address released and reallocated in between is
    /// left alone. Unlike [`Ipam::release`], this also clears files with an empty owner.
    ///
    /// # Errors
    /// [`IpamError::Io`] when the file cannot be read or removed.
    pub fn release_allocation(&self, allocation: &Allocation) -> Result<bool, IpamError> {
        let locked = self.store.lock()?;
        if locked.record(allocation.ip)?.as_ref() != Some(allocation)
            || !locked.remove(allocation.ip)?
        {
            return Ok(false);
        }
        locked.sync_dir()?;
        Ok(true)
    }

    /// The address (container id, ifname) holds — of this subnet if it holds several.
    ///
    /// # Errors
    /// [`IpamError::InvalidArgument`] for an empty container id or a bad ifname;
    /// [`IpamError::Io`] when the store cannot be read.
    pub fn lookup(&self, container_id: &str, ifname: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let container_id = check_args(container_id, ifname)?;
        let locked = self.store.lock()?;
        let held: Vec<_> = locked
            .records::<Ipv4Addr>()?
            .into_iter()
            .filter(|a| a.is_held_by(container_id, ifname))
            .map(|a| a.ip)
            .collect();
        Ok(self.prefer_in_subnet(&held))
    }

    /// Every allocation in the store, sorted by address, including files outside the
    /// current subnet: the census that GC and leak checks work from.
    ///
    /// # Errors
    /// [`IpamError::Io`] when the store cannot be read.
    pub fn allocations(&self) -> Result<Vec<Allocation>, IpamError> {
        self.store.lock()?.records()
    }

    fn prefer_in_subnet(&self, ips: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        ips.iter()
            .copied()
            .find(|ip| self.pool.contains(*ip))
            .or_else(|| ips.first().copied())
    }
}

/// Refuses a network name that cannot be a directory name.
fn check_network_name(network: &str) -> Result<(), IpamError> {
    let reason = if network.is_empty() {
        "empty"
    } else if network == "." || network == ".." || network.contains(['/', '\0']) {
        "not a plain file name"
    } else {
        return Ok(());
    };
    let name = network.to_owned();
    Err(IpamError::InvalidNetworkName { name, reason })
}

/// Validates the pair and returns the container id trimmed, as host-local stores it.
fn check_args<'a>(container_id: &'a str, ifname: &str) -> Result<&'a str, IpamError> {
    let invalid = |what, value: &str, reason| IpamError::InvalidArgument {
        what,
        value: value.to_owned(),
        reason,
    };
    let trimmed = container_id.trim();
    if trimmed.is_empty() {
        return Err(invalid("container id", container_id, "empty"));
    }
    if trimmed.contains(['\r', '\n']) {
        return Err(invalid(
            "container id",
            container_id,
            "contains a line break",
        ));
    }
    if ifname.is_empty() {
        return Err(invalid("interface name", ifname, "empty"));
    }
    if ifname.contains(|c: char| c.is_whitespace() || c == '/' || c == '\0') {
        return Err(invalid(
            "interface name",
            ifname,
            "contains whitespace or '/'",
        ));
    }
    Ok(trimmed)
}
