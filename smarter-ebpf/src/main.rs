//! smarter-cni's TC eBPF datapath.
//!
//! Built for `bpfel-unknown-none` by smarter-cni's build script (aya-build) and embedded in the
//! plugin. Layout grows by direction, then concern:
//! - [`maps`]: the map definitions, named and sized by `smarter-common`;
//! - [`pod`]: `smarter_pod`, on the host-side veth's ingress (packets leaving a pod);
//!   [`pod6`]: `smarter_pod6`, its IPv6 half for dual-stack pods, reached by tail call
//!   ([`maps::TAILS`]), with NAT66 in [`nat66`]/[`ct6`] (ICMPv6 errors back in [`icmp6_err`],
//!   fragments in [`frag6`], hostPorts and the way into a pod through a node address in
//!   [`in6`], reached from a pod through `smarter_hp6`, [`hp6`]) and the header view in [`ip6`];
//! - [`uplink`]: `smarter_uplink`/`smarter_l3_in`, on every external interface's ingress
//!   (reverse NAT, hostPorts, node-local-only enforcement); [`uplink6`]: `smarter_uplink6`,
//!   its IPv6 half (reverse NAT66), reached by tail call;
//! - [`local`]: `smarter_local`, on the node's loopback ingress (the node's own hostPort use),
//!   and `smarter_local6`, its IPv6 half, reached by tail call;
//! - [`egress`]: `smarter_egress`/`smarter_l3_out`, on every external interface's egress (the
//!   backstop: no pod address leaves);
//! - [`guard`]: what a pod may say on the link beyond IPv4 and ARP (IPv6 sources, neighbour
//!   discovery claims, the RA guard);
//! - [`nat`], [`ct`], [`icmp_err`], [`hairpin`]: NAT, conntrack, ICMP errors, hostPort hairpin;
//! - [`clat`]: IPv4 ↔ IPv6 on an IPv6-only uplink (464XLAT's CLAT); [`pod_clat`]:
//!   `smarter_podclat`, a pod's IPv4 with no IPv4 route NATed and redirected to it, reached
//!   from `smarter_pod` by tail call;
//! - [`fib`]: the route of a pod's packet off the node (which external interface, which
//!   address) and the redirect out of it;
//! - [`l4`]: the L4 header view; [`rewrite`]: address/port/TTL rewriting with checksums and
//!   delivery into a pod;
//! - [`parse`]: bounds-checked packet access and the IPv4 header view; [`verdict`]: per-verdict
//!   counters; [`stats`]: per-pod and per-pod-per-interface counters.
//!
//! Every program entry is `fn x(ctx) -> i32` calling `try_x(&ctx)`, a policy over these
//! helpers that returns a [`verdict::Decision`] (or `None`: not the datapath's packet); the
//! entry counts it and returns its TC action. Only helpers available in Linux 5.10 are used.
//!
//! On the host (`cargo clippy --workspace`) the same code is compiled as an ordinary binary whose
//! `main` does nothing, so lints cover it; only the BPF build is `no_std`/`no_main`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod clat;
mod ct;
mod ct6;
mod egress;
mod fib;
mod frag;
mod frag6;
mod guard;
mod hairpin;
mod hp6;
mod icmp6_err;
mod icmp6_out;
mod icmp_err;
mod in6;
mod ip6;
mod l4;
mod local;
mod maps;
mod nat;
mod nat66;
mod parse;
mod pod;
mod pod6;
mod pod_clat;
mod rewrite;
mod stats;
mod uplink;
mod uplink6;
mod verdict;

/// The datapath will call GPL-only helpers (e.g. `bpf_fib_lookup`), so the object must declare a
/// license the kernel accepts as GPL-compatible (`license_is_gpl_compatible`: "GPL",
/// "Dual MIT/GPL", "Dual BSD/GPL", ...; "Apache-2.0" is not in that list).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects programs that can reach a panic, so this is never executed.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("smarter-ebpf is built for bpfel-unknown-none by smarter-cni's build script");
}
