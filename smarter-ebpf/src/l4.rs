//! The L4 header of an IPv4 packet as NAT sees it: which kind ([`L4`]) and, for protocols
//! with ports or identifiers, where the port and checksum sit ([`L4Info`]).

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};

use smarter_common::icmp;

use crate::parse::{Ipv4, PROTO_ICMP, PROTO_TCP, PROTO_UDP, read};

/// The L4 facts NAT needs: ports (network byte order) and where the checksum and the port sit.
pub struct L4Info {
    /// Pod-side port (TCP/UDP source or destination) or ICMP identifier; 0 without ports.
    pub port: u16,
    /// Remote port (0 for ICMP and protocols without ports).
    pub remote_port: u16,
    /// Offset of the port to rewrite.
    pub port_off: usize,
    /// Offset of the L4 checksum.
    pub csum_off: usize,
    /// `bpf_l4_csum_replace` flags for the address change (0: no pseudo header).
    pub addr_flags: u64,
    /// `bpf_l4_csum_replace` flags for the port change.
    pub port_flags: u64,
    /// TCP flags (0 otherwise).
    pub tcp_flags: u8,
    /// Whether there is a port (or identifier) to translate; `false`: by address alone.
    pub ports: bool,
}

impl L4Info {
    /// Translation by address alone (protocols without ports, later fragments).
    #[inline(always)]
    pub const fn addr_only() -> Self {
        Self {
            port: 0,
            remote_port: 0,
            port_off: 0,
            csum_off: 0,
            addr_flags: 0,
            port_flags: 0,
            tcp_flags: 0,
            ports: false,
        }
    }
}

/// What the L4 header of a packet allows.
pub enum L4 {
    /// Translatable, by port or by address.
    Nat(L4Info),
    /// Shorter than its protocol's header.
    Short,
    /// ICMP that is not a query of this direction (errors, unsolicited replies, other types).
    OtherIcmp(u8),
}

/// Parses the L4 header of a first fragment or unfragmented packet; `outbound` selects the
/// direction (source port is the pod's).
#[inline(always)]
pub fn l4(ctx: &TcContext, ip: &Ipv4, outbound: bool) -> L4 {
    let off = ip.l4_off();
    match ip.proto() {
        PROTO_TCP => {
            let Some(h) = read::<[u8; 20]>(ctx, off) else {
                return L4::Short;
            };
            L4::Nat(ports(
                off,
                h[0..4].try_into().unwrap_or([0; 4]),
                outbound,
                true,
                h[13],
            ))
        }
        PROTO_UDP => {
            let Some(h) = read::<[u8; 8]>(ctx, off) else {
                return L4::Short;
            };
            L4::Nat(ports(off, [h[0], h[1], h[2], h[3]], outbound, false, 0))
        }
        PROTO_ICMP => {
            let Some(h) = read::<[u8; 8]>(ctx, off) else {
                return L4::Short;
            };
            if !icmp::is_query(h[0], outbound) {
                return L4::OtherIcmp(h[0]);
            }
            L4::Nat(L4Info {
                port: u16::from_ne_bytes([h[4], h[5]]),
                remote_port: 0,
                port_off: off + 4,
                csum_off: off + 2,
                addr_flags: 0,
                port_flags: 2,
                tcp_flags: 0,
                ports: true,
            })
        }
        _ => L4::Nat(L4Info::addr_only()),
    }
}

#[inline(always)]
fn ports(off: usize, h: [u8; 4], outbound: bool, tcp: bool, tcp_flags: u8) -> L4Info {
    let sport = u16::from_ne_bytes([h[0], h[1]]);
    let dport = u16::from_ne_bytes([h[2], h[3]]);
    let (port, remote_port, port_off) = if outbound {
        (sport, dport, off)
    } else {
        (dport, sport, off + 2)
    };
    let (csum_off, mangled) = if tcp {
        (off + 16, 0)
    } else {
        (off + 6, u64::from(BPF_F_MARK_MANGLED_0))
    };
    L4Info {
        port,
        remote_port,
        port_off,
        csum_off,
        addr_flags: u64::from(BPF_F_PSEUDO_HDR) | mangled | 4,
        port_flags: mangled | 2,
        tcp_flags,
        ports: true,
    }
}
