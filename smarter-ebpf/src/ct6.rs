//! NAT66 conntrack: the pod-side entry of a flow and its NAT port, allocated as IPv4's
//! ([`crate::ct`]): hash the flow, then probe a bounded number of ports with `BPF_NOEXIST`
//! inserts into the reverse map, the pod's own port first when it is free (as the kernel's
//! masquerade does). Keys and values live in the per-CPU work space
//! ([`smarter_common::v6::Nat66Scratch`]): copies of 40-byte keys do not fit the BPF stack.

use aya_ebpf::bindings::BPF_NOEXIST;
use smarter_common::{
    NetConfig,
    ct::{CT_NEW, next_state},
    nat_port::{NAT_PORT_PROBES, nat_port_candidate},
    v6::{Ct6Key, Ct6Value, Nat66Scratch},
};

use crate::{
    ct::expired,
    guard::word,
    ip6::L4Info6,
    maps::{CT6_IN, CT6_OUT},
};

/// The NAT port (network byte order) of the flow `s.src:l.port → s.dst:l.remote_port` leaving
/// from `s.nat`, creating both conntrack entries for a new flow (also when the existing one
/// expired or left from another address). `None`: every probed port is taken.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys and values are passed by reference into the work space: by value they would \
              be copied to the stack, which cannot hold them"
)]
pub fn nat_port_for6(
    s: &mut Nat66Scratch,
    l: &L4Info6,
    proto: u8,
    cfg: &NetConfig,
    now: u64,
) -> Option<u16> {
    // Built from copies on the stack: a copy between two fields of the work space would be a
    // `memmove` call, which the arm32 JIT cannot take.
    let (pod, remote, nat) = (s.src, s.dst, s.nat);
    s.out_key = Ct6Key::pod_side(pod, l.port, remote, l.remote_port, proto);
    s.in_key = Ct6Key::wire_side(remote, l.remote_port, 0, proto);
    let mut nat_port = 0u16;
    if let Some(v) = CT6_OUT.get_ptr_mut(&s.out_key) {
        // SAFETY: a map value pointer, valid for this program run.
        unsafe {
            s.in_key.b_port = (*v).port;
            if same(&(*v).addr, &nat) {
                nat_port = (*v).port;
                if expired(cfg, proto, (*v).state, (*v).last_seen, now) {
                    let _ = CT6_IN.remove(&s.in_key);
                    nat_port = 0;
                }
                (*v).last_seen = now;
                (*v).state = next_state((*v).state, proto, l.tcp_flags, false);
            } else {
                // The route moved to another interface: a fresh mapping from its address.
                let _ = CT6_IN.remove(&s.in_key);
            }
        }
    }
    let state = next_state(CT_NEW, proto, l.tcp_flags, false);
    s.reply = Ct6Value::new(now, pod, l.port, state);
    if nat_port != 0 {
        // The LRU may have evicted the reverse entry alone: restore it, or pick a new port.
        if CT6_IN.get_ptr_mut(&s.in_key).is_some()
            || CT6_IN
                .insert(&s.in_key, &s.reply, u64::from(BPF_NOEXIST))
                .is_ok()
        {
            return Some(nat_port);
        }
    }
    // The pod's own port first, when it is free and in the range.
    let (first, last) = cfg.nat_ports();
    let own = u16::from_be(l.port);
    s.in_key.b_port = l.port;
    if own >= first
        && own <= last
        && CT6_IN
            .insert(&s.in_key, &s.reply, u64::from(BPF_NOEXIST))
            .is_ok()
    {
        nat_port = l.port;
    } else {
        let hash = (word(&pod, 8) ^ word(&remote, 8).rotate_left(7)) as u32
            ^ (u32::from(l.port) << 16)
            ^ u32::from(l.remote_port)
            ^ u32::from(proto);
        let hash = hash.wrapping_mul(0x9e37_79b1);
        let mut i = 0;
        while i < NAT_PORT_PROBES {
            let port = nat_port_candidate(hash, i, first, last).to_be();
            s.in_key.b_port = port;
            if CT6_IN
                .insert(&s.in_key, &s.reply, u64::from(BPF_NOEXIST))
                .is_ok()
            {
                nat_port = port;
                break;
            }
            i += 1;
        }
        if nat_port == 0 {
            return None;
        }
    }
    s.out = Ct6Value::new(now, nat, nat_port, state);
    // An LRU insert only fails without memory; the reply entry still lets replies in.
    let _ = CT6_OUT.insert(&s.out_key, &s.out, 0);
    Some(nat_port)
}

/// Whether two addresses are equal (compared as words, BPF has no `memcmp`).
#[inline(always)]
pub fn same(a: &[u8; 16], b: &[u8; 16]) -> bool {
    word(a, 0) == word(b, 0) && word(a, 8) == word(b, 8)
}
