//! Running a program of the object on a crafted packet (`BPF_PROG_TEST_RUN`), and the seeded
//! generator the mutation tests draw from. The packets come from the one packet builder of
//! the tests, [`smarter_testbed::packet`].

use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions},
};

/// Runs `prog` on `packet` (BPF_PROG_TEST_RUN): its verdict and the packet it leaves.
///
/// # Panics
/// When the kernel refuses the run (see [`try_run`]) or `prog` is not a classifier the
/// verifier accepts (it is loaded on first use, [`crate::world::classifier`]).
pub fn run(ebpf: &mut Ebpf, prog: &str, packet: &[u8]) -> (u32, Vec<u8>) {
    try_run(ebpf, prog, packet)
        .unwrap_or_else(|| panic!("BPF_PROG_TEST_RUN refused {} bytes", packet.len()))
}

/// `None` when the kernel refuses the input itself (`EINVAL`: an IPv4 EtherType with less than
/// an IPv4 header behind it never reaches the program, `bpf_prog_test_run_skb` checks that).
///
/// # Panics
/// When `prog` is not a classifier of `ebpf`.
pub fn try_run(ebpf: &mut Ebpf, prog: &str, packet: &[u8]) -> Option<(u32, Vec<u8>)> {
    run_with(ebpf, prog, packet, None)
}

/// Runs `prog` on `packet`, with `ctx` as the `__sk_buff` the kernel builds the skb from.
fn run_with(
    ebpf: &mut Ebpf,
    prog: &str,
    packet: &[u8],
    ctx: Option<&[u8]>,
) -> Option<(u32, Vec<u8>)> {
    let prog = crate::world::classifier(ebpf, prog);
    let mut out = vec![0u8; packet.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ctx_in: ctx,
            ..TestRunOptions::default()
        })
        .ok()?;
    out.truncate(r.data_size_out as usize);
    Some((r.return_value, out))
}

/// Offsets of `gso_segs` and `gso_size` in `struct __sk_buff` (uapi), and its size.
const SKB_GSO_SEGS: usize = 164;
const SKB_GSO_SIZE: usize = 176;
const SKB_LEN: usize = 192;

/// As [`run`], for a GSO packet: the context the kernel builds the test skb from says
/// `segs` segments of `size` payload bytes (what a pod's TSO super-packet carries).
///
/// # Panics
/// As [`run`].
pub fn run_gso(ebpf: &mut Ebpf, prog: &str, packet: &[u8], segs: u32, size: u32) -> (u32, Vec<u8>) {
    let mut ctx = [0u8; SKB_LEN];
    ctx[SKB_GSO_SEGS..SKB_GSO_SEGS + 4].copy_from_slice(&segs.to_ne_bytes());
    ctx[SKB_GSO_SIZE..SKB_GSO_SIZE + 4].copy_from_slice(&size.to_ne_bytes());
    run_with(ebpf, prog, packet, Some(&ctx)).unwrap_or_else(|| {
        panic!(
            "BPF_PROG_TEST_RUN refused a GSO packet of {} bytes",
            packet.len()
        )
    })
}

/// A seeded xorshift64 generator: the same packets on every run, so a failing mutation is
/// reproducible from the test's seed.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
