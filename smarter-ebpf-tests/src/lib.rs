//! `BPF_PROG_TEST_RUN` tests of the `smarter-ebpf` programs, kept beside them and out of the
//! plugin's sources (as Cilium's `bpf/tests/`): the tests in `tests/` feed packets built by the
//! one packet builder of the tests ([`smarter_testbed::packet`]) to the programs of the real
//! object — the one the plugin embeds, [`smarter_cni::datapath::ebpf::EBPF_OBJECT`], not a
//! second build — and check verdicts, output bytes and map contents.
//!
//! - [`run`]: running a program on a packet, the mutation tests' seeded generator;
//! - [`world`]: the object loaded with a small network (two endpoints, a deny range, an optional
//!   uplink), verdict counters, the node namespace of a `smarter_testbed` world for the tests
//!   that need a FIB.
//!
//! Everything needs root (loading programs, namespaces); without it every test skips with a
//! message through [`smarter_testbed::skipped`] ([`root_or_skip`]). Nothing is pinned or attached
//! and no interface outside a test's own namespaces is touched.

pub mod run;
pub mod world;
pub mod world6;

/// `TC_ACT_OK`: the packet continues (to the host stack).
pub const OK: u32 = 0;
/// `TC_ACT_SHOT`: the packet is dropped.
pub const SHOT: u32 = 2;
/// `TC_ACT_REDIRECT`: the packet goes to the interface a `bpf_redirect*` helper named.
pub const REDIRECT: u32 = 7;

/// The sending pod, registered on the test run's device (the loopback, ifindex 1).
pub const POD: [u8; 4] = [172, 39, 0, 3];
/// [`POD`]'s MAC address.
pub const POD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
/// A second pod of the network, behind ifindex 4242.
pub const PEER: [u8; 4] = [172, 39, 0, 4];
/// [`PEER`]'s MAC address.
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x04];
/// The uplink address, also the SNAT address (the world's, on [`UPLINK_IF`] in
/// [`world::in_private_netns`]).
pub const UPLINK: [u8; 4] = smarter_testbed::NODE_UPLINK_IP.octets();
/// The uplink interface in [`world::in_private_netns`].
pub const UPLINK_IF: &str = smarter_testbed::UPLINK;
/// A remote host beyond the uplink (a static neighbour of [`UPLINK_IF`]).
pub const REMOTE: [u8; 4] = [198, 51, 100, 7];
/// [`REMOTE`]'s MAC address.
pub const REMOTE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x77];
/// Where the pods' frames go: the gateway's MAC (the programs do not check it).
pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Where the tests' IPv6 frames go: the all-nodes group's MAC, `33:33:00:00:00:01`.
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 0x01];
/// The payload of the UDP datagrams the NAT tests send.
pub const HELLO: &[u8] = b"hello through the NAT";

/// Whether the test may run: `true` as root; otherwise reports `SKIP <test>: …` through
/// [`smarter_testbed::skipped`] (so `cargo xtask test` counts a skip, not a pass) and returns
/// `false`.
#[must_use]
pub fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        smarter_testbed::skipped(&format!(
            "SKIP {test}: BPF_PROG_TEST_RUN needs root (loading eBPF programs)"
        ));
    }
    root
}
