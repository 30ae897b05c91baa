//! The choice of a flow's NAT source port, shared by the programs and their tests: which
//! ports a new flow tries, in which order, within the configured range
//! ([`crate::NetConfig::nat_ports`], by default [`crate::ct::NAT_PORT_MIN`]`..=`
//! [`crate::ct::NAT_PORT_MAX`]).

/// NAT port candidates tried for one new flow before it is refused (a bounded loop in the
/// programs).
pub const NAT_PORT_PROBES: u32 = 32;

/// The `probe`-th candidate NAT port (host byte order, in `first..=last`; `first <= last`) of a
/// flow whose hash is `hash`. The probes follow a Weyl sequence over the golden ratio, which
/// spreads them over the whole range, and the range reduction is a multiply-high (the upper
/// half of `x * range`) rather than a modulo: the arm32 JIT of Linux 6.1 has no 64-bit division
/// or modulo, and with one such instruction the whole program fails to load there when the JIT
/// is on (-524, measured in `cargo xtask vm-test --arch armhf`).
#[must_use]
pub const fn nat_port_candidate(hash: u32, probe: u32, first: u16, last: u16) -> u16 {
    let range = (last - first) as u64 + 1;
    let x = hash.wrapping_add(probe.wrapping_mul(0x9e37_79b9)) as u64;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "(x * range) >> 32 < range <= 65536, and first + it <= last"
    )]
    let offset = ((x * range) >> 32) as u16;
    first + offset
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ct::{NAT_PORT_MAX, NAT_PORT_MIN};

    #[test]
    fn candidates_stay_in_the_range() {
        for (first, last) in [
            (NAT_PORT_MIN, NAT_PORT_MAX),
            (1, 65535),
            (0, 65535),
            (80, 80),
        ] {
            for hash in [0, 1, 0x8000_0000, u32::MAX, 0x1234_5678] {
                for probe in 0..NAT_PORT_PROBES {
                    let p = nat_port_candidate(hash, probe, first, last);
                    assert!((first..=last).contains(&p), "{p} outside {first}..={last}");
                }
            }
        }
        // The ends of the range are reachable.
        assert_eq!(
            nat_port_candidate(0, 0, NAT_PORT_MIN, NAT_PORT_MAX),
            NAT_PORT_MIN
        );
        assert_eq!(nat_port_candidate(u32::MAX, 0, 0, 65535), 65535);
    }

    #[test]
    fn the_probes_of_one_flow_are_distinct_ports() {
        for hash in [0, 42, 0xdead_beef, u32::MAX] {
            let mut ports = [0u16; NAT_PORT_PROBES as usize];
            for (i, p) in (0..).zip(ports.iter_mut()) {
                *p = nat_port_candidate(hash, i, NAT_PORT_MIN, NAT_PORT_MAX);
            }
            ports.sort_unstable();
            assert!(
                ports.windows(2).all(|w| w[0] != w[1]),
                "hash {hash:#x}: a port repeats in {ports:?}"
            );
        }
    }

    #[test]
    fn hashes_spread_evenly_over_a_small_range() {
        let mut hits = [0u32; 10];
        let mut h = 0x9e37_79b1u32;
        for _ in 0..100_000 {
            h ^= h << 13;
            h ^= h >> 17;
            h ^= h << 5;
            hits[usize::from(nat_port_candidate(h, 0, 100, 109) - 100)] += 1;
        }
        for (port, n) in hits.iter().enumerate() {
            assert!(
                (9_000..11_000).contains(n),
                "port {}: {n} of 100000",
                100 + port
            );
        }
    }
}
