//! IPv6 allocation ([`Ipam6`]), in the same directory, under the same lock and in the same
//! file format as the IPv4 one: a dual-stack host-local configuration (IPv4 range set first,
//! IPv6 second) reads and writes exactly these files, `last_reserved_ip.1` included.
//!
//! The range is `subnet`'s `network + 1 ..= last - 1` (host-local's default range: the first
//! and last addresses are never handed out), minus the gateway (`::1`), searched round robin
//! after the last reserved address like the IPv4 one.

use std::net::Ipv6Addr;
use std::path::Path;

use ipnetwork::Ipv6Network;

use super::store::{Locked, Store, encode_record};
use super::{Allocation, IpamError, check_args, check_network_name};
use crate::cni::config::{SUBNET6_MAX_PREFIX, SUBNET6_MIN_PREFIX};

/// The usable range of an IPv6 subnet, minus its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pool6 {
    subnet: Ipv6Network,
    gateway: Ipv6Addr,
}

impl Pool6 {
    fn new(subnet: Ipv6Network, gateway: Ipv6Addr) -> Result<Self, IpamError> {
        if !(SUBNET6_MIN_PREFIX..=SUBNET6_MAX_PREFIX).contains(&subnet.prefix()) {
            return Err(IpamError::SubnetTooSmall {
                subnet: subnet.into(),
            });
        }
        if subnet.ip() != subnet.network() {
            return Err(IpamError::HostBitsSet {
                subnet: subnet.into(),
                network: subnet.network().into(),
            });
        }
        let pool = Self { subnet, gateway };
        if !pool.contains(gateway) {
            return Err(IpamError::InvalidGateway {
                gateway: gateway.into(),
                subnet: subnet.into(),
            });
        }
        Ok(pool)
    }

    fn first(&self) -> u128 {
        u128::from(self.subnet.network()) + 1
    }

    fn last(&self) -> u128 {
        u128::from(self.subnet.broadcast()) - 1
    }

    fn contains(&self, ip: Ipv6Addr) -> bool {
        (self.first()..=self.last()).contains(&u128::from(ip))
    }

    fn check_requested(&self, ip: Ipv6Addr) -> Result<(), IpamError> {
        let reason = if !self.subnet.contains(ip) {
            "outside the subnet"
        } else if ip == self.subnet.network() {
            "it is the subnet's first address"
        } else if ip == self.subnet.broadcast() {
            "it is the subnet's last address"
        } else if ip == self.gateway {
            "it is the gateway"
        } else {
            return Ok(());
        };
        Err(IpamError::RequestedNotUsable {
            ip: ip.into(),
            subnet: self.subnet.into(),
            reason,
        })
    }

    /// Every allocatable address once, round robin after `last_reserved` (see the IPv4
    /// pool). Lazy: a /64 is never walked further than the first free address.
    fn candidates(&self, last_reserved: Option<Ipv6Addr>) -> impl Iterator<Item = Ipv6Addr> {
        let first = self.first();
        let len = self.last() - first + 1;
        let offset = match last_reserved {
            Some(ip) if self.contains(ip) => u128::from(ip) - first + 1,
            _ => 0,
        };
        let gateway = self.gateway;
        (0..len)
            .map(move |k| Ipv6Addr::from(first + (offset + k) % len))
            .filter(move |ip| *ip != gateway)
    }
}

/// The IPv6 IPAM of one network: [`super::Ipam`]'s operations for `subnet6`. Same store
/// directory and lock as the IPv4 one, so the two never race and a DEL finds both.
#[derive(Debug, Clone)]
pub struct Ipam6 {
    store: Store,
    pool: Pool6,
}

impl Ipam6 {
    /// Opens the store of `network` under `data_dir` for `subnet`, whose `gateway` is never
    /// handed out.
    ///
    /// # Errors
    /// As [`super::Ipam::new`] (a subnet outside /64..=/120 is
    /// [`IpamError::SubnetTooSmall`]).
    pub fn new(
        data_dir: &Path,
        network: &str,
        subnet: Ipv6Network,
        gateway: Ipv6Addr,
    ) -> Result<Self, IpamError> {
        check_network_name(network)?;
        let pool = Pool6::new(subnet, gateway)?;
        let store = Store::open(data_dir, network)?;
        Ok(Self { store, pool })
    }

    /// The network's store directory, `<dataDir>/<network>`.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// Allocates an IPv6 address for (container id, ifname): `requested` when given,
    /// otherwise the next free one after `last_reserved_ip.1`.
    ///
    /// # Errors
    /// As [`super::Ipam::allocate`].
    pub fn allocate(
        &self,
        container_id: &str,
        ifname: &str,
        requested: Option<Ipv6Addr>,
    ) -> Result<Ipv6Addr, IpamError> {
        let container_id = check_args(container_id, ifname)?;
        let locked = self.store.lock()?;
        let records = locked.records::<Ipv6Addr>()?;
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
                    let holder = locked
                        .record(ip)?
                        .map_or_else(String::new, |a: Allocation<Ipv6Addr>| a.holder());
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
        if let Err(e) = locked.set_last_reserved(ip) {
            tracing::warn!("allocated {ip} but could not record it as last reserved: {e}");
        }
        tracing::debug!("allocated {ip} to {container_id}/{ifname}");
        Ok(ip)
    }

    fn reserve_next(
        &self,
        locked: &Locked<'_>,
        records: &[Allocation<Ipv6Addr>],
        record: &str,
    ) -> Result<Ipv6Addr, IpamError> {
        for ip in self.pool.candidates(locked.last_reserved()) {
            if records.binary_search_by_key(&ip, |a| a.ip).is_err() && locked.reserve(ip, record)? {
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted {
            subnet: self.pool.subnet.into(),
        })
    }

    /// Releases the IPv6 addresses (container id, ifname) holds; the one of this subnet (or
    /// any), `Ok(None)` when there was none, so a repeated DEL succeeds.
    ///
    /// # Errors
    /// As [`super::Ipam::release`].
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Option<Ipv6Addr>, IpamError> {
        let container_id = check_args(container_id, ifname)?;
        let locked = self.store.lock()?;
        let mut released = Vec::new();
        for a in locked.records::<Ipv6Addr>()? {
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

    /// The IPv6 address (container id, ifname) holds.
    ///
    /// # Errors
    /// As [`super::Ipam::lookup`].
    pub fn lookup(&self, container_id: &str, ifname: &str) -> Result<Option<Ipv6Addr>, IpamError> {
        let container_id = check_args(container_id, ifname)?;
        let held: Vec<_> = self
            .store
            .lock()?
            .records::<Ipv6Addr>()?
            .into_iter()
            .filter(|a| a.is_held_by(container_id, ifname))
            .map(|a| a.ip)
            .collect();
        Ok(self.prefer_in_subnet(&held))
    }

    /// Every IPv6 allocation in the store, sorted by address (GC's census).
    ///
    /// # Errors
    /// [`IpamError::Io`] when the store cannot be read.
    pub fn allocations(&self) -> Result<Vec<Allocation<Ipv6Addr>>, IpamError> {
        self.store.lock()?.records()
    }

    /// Releases one allocation found by [`Ipam6::allocations`] if its file still holds the
    /// same owner (see [`super::Ipam::release_allocation`]).
    ///
    /// # Errors
    /// [`IpamError::Io`] when the file cannot be read or removed.
    pub fn release_allocation(&self, allocation: &Allocation<Ipv6Addr>) -> Result<bool, IpamError> {
        let locked = self.store.lock()?;
        if locked.record(allocation.ip)?.as_ref() != Some(allocation)
            || !locked.remove(allocation.ip)?
        {
            return Ok(false);
        }
        locked.sync_dir()?;
        Ok(true)
    }

    fn prefer_in_subnet(&self, ips: &[Ipv6Addr]) -> Option<Ipv6Addr> {
        ips.iter()
            .copied()
            .find(|ip| self.pool.contains(*ip))
            .or_else(|| ips.first().copied())
    }
}

#[cfg(test)]
#[path = "tests6.rs"]
mod tests;
