//! Running a program of the object on a crafted packet (`BPF_PROG_TEST_RUN`), and the seeded
//! generator the mutation tests draw from. The packets come from the one packet builder of
//! the tests, [`smarter_testbed::packet`].

use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
};

/// Runs `prog` on `packet` (BPF_PROG_TEST_RUN): its verdict and the packet it leaves.
///
/// # Panics
/// When the kernel refuses the run (see [`try_run`]) or `prog` is not a loaded classifier.
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
    let prog: &mut SchedClassifier = ebpf.program_mut(prog).unwrap().try_into().unwrap();
    let mut out = vec![0u8; packet.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .ok()?;
    out.truncate(r.data_size_out as usize);
    Some((r.return_value, out))
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
