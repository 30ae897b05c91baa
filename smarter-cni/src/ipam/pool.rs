//! The address pool of one subnet: which addresses may be handed out, and in what order.
//!
//! Pure logic, no I/O. The order is host-local's round robin: start right after the last
//! reserved address, wrap from the end of the range to its start, skip the gateway, and
//! try every usable address exactly once.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::IpamError;

/// The usable range `network + 1 ..= broadcast - 1` of a subnet, minus its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pool {
    subnet: Ipv4Network,
    gateway: Ipv4Addr,
}

impl Pool {
    /// Validates the subnet (a /30 or larger, no host bits) and the gateway (inside the
    /// usable range).
    pub(super) fn new(subnet: Ipv4Network, gateway: Ipv4Addr) -> Result<Self, IpamError> {
        if subnet.prefix() > 30 {
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

    /// The subnet.
    pub(super) fn subnet(&self) -> Ipv4Network {
        self.subnet
    }

    /// The gateway.
    pub(super) fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    fn first(&self) -> u32 {
        u32::from(self.subnet.network()) + 1
    }

    fn last(&self) -> u32 {
        u32::from(self.subnet.broadcast()) - 1
    }

    /// Whether `ip` lies in the usable range (the gateway included).
    pub(super) fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first()..=self.last()).contains(&u32::from(ip))
    }

    /// Checks that a requested address may be handed out at all.
    pub(super) fn check_requested(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let reason = if !self.subnet.contains(ip) {
            "outside the subnet"
        } else if ip == self.subnet.network() {
            "it is the network address"
        } else if ip == self.subnet.broadcast() {
            "it is the broadcast address"
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

    /// Every allocatable address once, in round-robin order: starting after
    /// `last_reserved` when that lies in the range (ending with it), otherwise from the
    /// start of the range. Like host-local, a stale `last_reserved` only costs the
    /// round robin one turn.
    pub(super) fn candidates(
        &self,
        last_reserved: Option<Ipv4Addr>,
    ) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let first = u64::from(self.first());
        let len = u64::from(self.last()) - first + 1;
        let offset = match last_reserved {
            Some(ip) if self.contains(ip) => u64::from(u32::from(ip)) - first + 1,
            _ => 0,
        };
        let gateway = self.gateway;
        (0..len)
            .map(move |k| {
                let addr = first + (offset + k) % len;
                Ipv4Addr::from(u32::try_from(addr).expect("inside the subnet, so below 2^32"))
            })
            .filter(move |ip| *ip != gateway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str, gw: &str) -> Pool {
        Pool::new(cidr.parse().unwrap(), gw.parse().unwrap()).unwrap()
    }

    fn ips(list: &[&str]) -> Vec<Ipv4Addr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn starts_at_range_start_and_skips_gateway() {
        let p = pool("10.0.0.0/29", "10.0.0.1");
        let got: Vec<_> = p.candidates(None).collect();
        assert_eq!(
            got,
            ips(&["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"])
        );
    }

    #[test]
    fn continues_after_last_reserved_and_wraps() {
        let p = pool("10.0.0.0/29", "10.0.0.1");
        let got: Vec<_> = p.candidates(Some("10.0.0.4".parse().unwrap())).collect();
        assert_eq!(
            got,
            ips(&["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"])
        );
        let got: Vec<_> = p.candidates(Some("10.0.0.6".parse().unwrap())).collect();
        assert_eq!(got[0], "10.0.0.2".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn gateway_in_the_middle_is_skipped() {
        let p = pool("10.0.0.0/29", "10.0.0.4");
        let got: Vec<_> = p.candidates(Some("10.0.0.3".parse().unwrap())).collect();
        assert_eq!(
            got,
            ips(&["10.0.0.5", "10.0.0.6", "10.0.0.1", "10.0.0.2", "10.0.0.3"])
        );
    }

    #[test]
    fn last_reserved_outside_range_restarts() {
        let p = pool("10.0.0.0/29", "10.0.0.1");
        for stale in ["10.0.0.7", "10.0.0.0", "192.168.1.1"] {
            let first = p.candidates(Some(stale.parse().unwrap())).next();
            assert_eq!(first, Some("10.0.0.2".parse().unwrap()), "{stale}");
        }
    }

    #[test]
    fn smallest_and_largest_subnets() {
        let p = pool("10.0.0.0/30", "10.0.0.1");
        assert_eq!(p.candidates(None).collect::<Vec<_>>(), ips(&["10.0.0.2"]));
        let p = pool("0.0.0.0/0", "0.0.0.1");
        let mut it = p.candidates(Some("255.255.255.254".parse().unwrap()));
        assert_eq!(it.next(), Some("0.0.0.2".parse().unwrap()));
    }

    #[test]
    fn refuses_bad_configuration() {
        let new = |cidr: &str, gw: &str| Pool::new(cidr.parse().unwrap(), gw.parse().unwrap());
        assert!(matches!(
            new("10.0.0.0/31", "10.0.0.1"),
            Err(IpamError::SubnetTooSmall { .. })
        ));
        let err = new("10.0.0.1/24", "10.0.0.1").unwrap_err();
        assert!(err.to_string().contains("10.0.0.0"), "{err}");
        for gw in ["10.0.0.0", "10.0.0.255", "10.0.1.1"] {
            assert!(
                matches!(
                    new("10.0.0.0/24", gw),
                    Err(IpamError::InvalidGateway { .. })
                ),
                "{gw}"
            );
        }
    }

    #[test]
    fn requested_checks() {
        let p = pool("10.0.0.0/24", "10.0.0.1");
        assert!(p.check_requested("10.0.0.9".parse().unwrap()).is_ok());
        for (ip, why) in [
            ("10.0.1.9", "outside"),
            ("10.0.0.0", "network"),
            ("10.0.0.255", "broadcast"),
            ("10.0.0.1", "gateway"),
        ] {
            let err = p.check_requested(ip.parse().unwrap()).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
    }
}
