//! A pod's own ICMPv6 errors (destination unreachable, packet too big, time exceeded,
//! parameter problem) about a packet of one of its NATed flows, as the kernel's masquerade
//! translates them (the counterpart of [`crate::icmp6_err`] for the other direction): the
//! quoted packet reached the pod as `remote → pod`, so its flow is the `CT6_OUT` entry
//! `pod:port → remote:port`; the outer source and the quoted destination become the flow's
//! NAT66 address, the quoted destination port its NAT port, and the ICMPv6 checksum follows.
//! [`crate::nat66::snat`] then routes it like any NATed packet.

use aya_ebpf::programs::TcContext;
use smarter_common::{ct::proto, v6::Ct6Key};

use crate::{
    ip6::{IP6_LEN, L4_OFF, PSEUDO, SRC_OFF, csum_diff16, is_error},
    maps::CT6_OUT,
    parse::read,
};

/// Where the quoted IPv6 header starts.
const IN_IP: usize = L4_OFF + 8;
/// Where the quoted packet's L4 header starts.
const IN_L4: usize = IN_IP + IP6_LEN;
/// The ICMPv6 checksum.
const CSUM: usize = L4_OFF + 2;

/// The flow a pod's ICMPv6 error is about.
pub struct ErrorFlow {
    /// The flow's NAT66 address.
    pub nat: [u8; 16],
    /// Its NAT port (network byte order).
    pub nat_port: u16,
    /// The pod's port the quoted packet was sent to (network byte order).
    pub pod_port: u16,
}

/// The NATed flow the ICMPv6 error from `pod` (right after the IPv6 header) quotes. `None`:
/// not an error, or it quotes no TCP/UDP packet of a flow of `pod`.
#[inline(always)]
pub fn flow_of(ctx: &TcContext, pod: &[u8; 16]) -> Option<ErrorFlow> {
    let m = read::<[u8; 8]>(ctx, L4_OFF)?;
    if !is_error(m[0]) {
        return None;
    }
    let inner = read::<[u8; IP6_LEN]>(ctx, IN_IP)?;
    let next = inner[6];
    if next != proto::TCP && next != proto::UDP {
        return None;
    }
    let mut remote = [0u8; 16];
    let mut quoted_dst = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        remote[i] = inner[8 + i];
        quoted_dst[i] = inner[24 + i];
        i += 1;
    }
    if !crate::ct6::same(&quoted_dst, pod) {
        return None;
    }
    let q = read::<[u8; 4]>(ctx, IN_L4)?;
    let remote_port = u16::from_ne_bytes([q[0], q[1]]);
    let pod_port = u16::from_ne_bytes([q[2], q[3]]);
    let key = Ct6Key::pod_side(*pod, pod_port, remote, remote_port, next);
    // SAFETY: read-only lookup, copied at once.
    let v = unsafe { CT6_OUT.get(key) }?;
    Some(ErrorFlow {
        nat: v.addr,
        nat_port: v.port,
        pod_port,
    })
}

/// Rewrites the error from `pod` for `flow`: the outer source (pseudo header) and the quoted
/// destination (message data) to the NAT66 address, the quoted destination port to the NAT
/// port, fixing the ICMPv6 checksum. The quoted packet's own L4 checksum is left as is, as
/// the kernel does. `false`: a helper failed.
#[inline(always)]
pub fn rewrite(ctx: &TcContext, flow: &mut ErrorFlow, pod: &mut [u8; 16]) -> bool {
    let Some(diff) = csum_diff16(pod, &mut flow.nat) else {
        return false;
    };
    ctx.l4_csum_replace(CSUM, 0, diff, 0).is_ok()
        && ctx.store(IN_IP + 24, &flow.nat, 0).is_ok()
        && ctx.l4_csum_replace(CSUM, 0, diff, PSEUDO).is_ok()
        && ctx.store(SRC_OFF, &flow.nat, 0).is_ok()
        && ctx
            .l4_csum_replace(CSUM, u64::from(flow.pod_port), u64::from(flow.nat_port), 2)
            .is_ok()
        && ctx.store(IN_L4 + 2, &flow.nat_port, 0).is_ok()
}
