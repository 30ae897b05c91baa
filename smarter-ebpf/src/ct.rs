//! Conntrack of the SNAT: the pod-side entry of a flow and its NAT port, allocated by hashing
//! the flow then probing a bounded number of ports with `BPF_NOEXIST` inserts into the reverse
//! map (so two CPUs can never hand out the same port for the same remote).

use aya_ebpf::bindings::BPF_NOEXIST;
use smarter_common::{
    CtKey, CtValue, NetConfig,
    ct::{CT_CLOSING, CT_NEW, CT_RESET, next_state},
    nat_port::{NAT_PORT_PROBES, nat_port_candidate},
};

use crate::{
    l4::L4Info,
    maps::{CT_IN, CT_OUT},
    parse::PROTO_TCP,
};

/// A TCP flow that is closing (FIN or RST seen) gives its NAT port up to a new flow once it
/// has been idle this long: connection churn to one server must not exhaust the range while
/// dead flows wait for their timeout.
const CLOSING_REUSE_NS: u64 = 250_000_000;
/// Whether an entry last seen at `last_seen` has been idle longer than `cfg` allows (the
/// shared rule, [`smarter_common::ct::expired`], over the configured timeouts).
#[inline(always)]
pub fn expired(cfg: &NetConfig, proto: u8, state: u8, last_seen: u64, now: u64) -> bool {
    smarter_common::ct::expired(&cfg.ct_timeout_s, proto, state, last_seen, now)
}

/// The NAT port (network byte order) of the flow `saddr:l.port → daddr:l.remote_port` leaving
/// from `uplink_addr`, creating both conntrack entries for a new flow (also when the existing
/// one has expired or left from another address: it is replaced). `None`: every probed port
/// is taken.
#[inline(always)]
pub fn nat_port_for(
    saddr: u32,
    daddr: u32,
    l: &L4Info,
    proto: u8,
    uplink_addr: u32,
    cfg: &NetConfig,
    now: u64,
) -> Option<u16> {
    let out_key = CtKey::pod_side(saddr, l.port, daddr, l.remote_port, proto);
    let mut nat_port = 0u16;
    if let Some(v) = CT_OUT.get_ptr_mut(out_key) {
        // SAFETY: a map value pointer, valid for this program run.
        unsafe {
            if (*v).addr == uplink_addr {
                nat_port = (*v).port;
                if expired(cfg, proto, (*v).state, (*v).last_seen, now) {
                    // Treated as new: the old reverse entry goes, a fresh port is chosen.
                    let _ = CT_IN.remove(out_key.to_wire_side(nat_port));
                    nat_port = 0;
                }
                (*v).last_seen = now;
                (*v).state = next_state((*v).state, proto, l.tcp_flags, false);
            } else {
                // The route moved to another interface (failover): the flow continues from
                // that interface's address with a fresh port; the old mapping goes.
                let _ = CT_IN.remove(out_key.to_wire_side((*v).port));
            }
        }
    }
    let state = next_state(CT_NEW, proto, l.tcp_flags, false);
    if nat_port != 0 {
        // The LRU may have evicted the reverse entry alone: restore it, or pick a new port
        // when another flow took this one meanwhile.
        let in_key = out_key.to_wire_side(nat_port);
        if CT_IN.get_ptr_mut(in_key).is_none() {
            let reply = CtValue::new(now, saddr, l.port, state);
            if CT_IN.insert(in_key, reply, u64::from(BPF_NOEXIST)).is_err() {
                nat_port = 0;
            }
        }
    }
    if nat_port == 0 {
        let (first, last) = cfg.nat_ports();
        let hash = saddr
            ^ daddr.rotate_left(7)
            ^ (u32::from(l.port) << 16)
            ^ u32::from(l.remote_port)
            ^ u32::from(proto);
        let hash = hash.wrapping_mul(0x9e37_79b1);
        let reply = CtValue::new(now, saddr, l.port, state);
        for i in 0..NAT_PORT_PROBES {
            let port = nat_port_candidate(hash, i, first, last).to_be();
            let in_key = out_key.to_wire_side(port);
            if CT_IN.insert(in_key, reply, u64::from(BPF_NOEXIST)).is_ok()
                || (proto == PROTO_TCP && take_over_closing(in_key, reply, now))
            {
                nat_port = port;
                break;
            }
        }
        if nat_port == 0 {
            return None;
        }
        let out = CtValue::new(now, uplink_addr, nat_port, state);
        // An LRU insert only fails without memory; the reply entry still lets replies in.
        let _ = CT_OUT.insert(out_key, out, 0);
    }
    Some(nat_port)
}

/// When the flow holding `in_key`'s NAT port is a TCP flow that closed and went quiet, hands the
/// port to the new flow (`reply`): the old pod-side entry goes, the reverse entry is rewritten.
#[inline(always)]
fn take_over_closing(in_key: CtKey, reply: CtValue, now: u64) -> bool {
    let Some(held) = CT_IN.get_ptr_mut(in_key) else {
        return false;
    };
    // SAFETY: a map value pointer, valid for this program run; copied at once.
    let (pod, pod_port) = unsafe { ((*held).addr, (*held).port) };
    let old_out = in_key.to_pod_side(pod, pod_port);
    // SAFETY: read-only lookup, copied at once.
    let reusable = match unsafe { CT_OUT.get(old_out) } {
        Some(o) => {
            o.state == CT_RESET
                || (o.state == CT_CLOSING && now.saturating_sub(o.last_seen) > CLOSING_REUSE_NS)
        }
        // The pod side is gone already (LRU or GC): the reverse entry is an orphan.
        None => true,
    };
    if !reusable {
        return false;
    }
    let _ = CT_OUT.remove(old_out);
    // SAFETY: as above; the entry is overwritten in place.
    unsafe { *held = reply };
    true
}
