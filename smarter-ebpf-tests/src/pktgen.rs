//! A packet builder for the `BPF_PROG_TEST_RUN` tests (as Cilium's `pktgen.h`): Ethernet and
//! IPv4 headers with options and fragment fields, UDP/TCP/ICMP headers, L4 checksums over the
//! pseudo header, the checks the tests make on what the programs return, and running a program
//! on a packet.

use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
};

/// The Internet checksum of `bytes` (0 when they include a valid checksum).
pub fn csum(bytes: &[u8]) -> u16 {
    let mut sum = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum::<u32>();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet (to 02:00:00:00:00:01 from `smac`) + IPv4 (TTL 64) with `opts` (a multiple of 4
/// bytes), the flags/offset word `frag` and `id`, then `payload`.
#[expect(
    clippy::too_many_arguments,
    reason = "a packet builder: every header field named"
)]
pub fn ip4(
    smac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    opts: &[u8],
    frag: u16,
    id: u16,
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(opts.len() % 4, 0);
    let mut p = vec![0x02, 0, 0, 0, 0, 0x01];
    p.extend_from_slice(&smac);
    p.extend_from_slice(&[0x08, 0x00]);
    let hl = 20 + opts.len();
    let mut ip = vec![0x40 | (hl / 4) as u8, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
    ip[2..4].copy_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[6..8].copy_from_slice(&frag.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(opts);
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&ip);
    p.extend_from_slice(payload);
    p
}

/// `l4` with its checksum at `at` computed over the pseudo header (`proto` != 1) and itself.
pub fn with_csum(src: [u8; 4], dst: [u8; 4], proto: u8, mut l4: Vec<u8>, at: usize) -> Vec<u8> {
    let mut over = Vec::new();
    if proto != 1 {
        over.extend_from_slice(&src);
        over.extend_from_slice(&dst);
        over.extend_from_slice(&[0, proto]);
        over.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    }
    l4[at..at + 2].copy_from_slice(&[0, 0]);
    over.extend_from_slice(&l4);
    let c = csum(&over);
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    l4
}

/// A UDP header (length field 27, checksum 0: none) and the 21-byte payload
/// `hello through the NAT`.
#[must_use]
pub fn udp_l4(sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&27u16.to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(b"hello through the NAT");
    l4
}

/// A 20-byte TCP header with `flags` (checksum 0) and a 5-byte payload.
#[must_use]
pub fn tcp_l4(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut l4 = vec![0u8; 20];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    l4[12] = 5 << 4;
    l4[13] = flags;
    l4[14..16].copy_from_slice(&64240u16.to_be_bytes());
    l4.extend_from_slice(b"data!");
    l4
}

/// An ICMP query of type `kind` (code 0, checksum 0) with identifier `id`, sequence 1.
#[must_use]
pub fn icmp_l4(kind: u8, id: u16) -> Vec<u8> {
    let mut l4 = vec![kind, 0, 0, 0];
    l4.extend_from_slice(&id.to_be_bytes());
    l4.extend_from_slice(&1u16.to_be_bytes());
    l4.extend_from_slice(b"ping payload");
    l4
}

/// The big-endian 16-bit field of `p` at `at` (a port, an ICMP identifier).
#[must_use]
pub fn port(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

/// The IPv4 header length of `p` and whether its header checksum holds.
pub fn ip_ok(p: &[u8]) -> (usize, bool) {
    let hl = usize::from(p[14] & 0x0f) * 4;
    (hl, csum(&p[14..14 + hl]) == 0)
}

/// Whether the L4 checksum (at `at` inside the L4 header) of the whole, unfragmented `p` holds.
pub fn l4_ok(p: &[u8], at: usize) -> bool {
    let (hl, _) = ip_ok(p);
    let (ip, l4) = (&p[14..14 + hl], &p[14 + hl..]);
    let proto = ip[9];
    if proto == 17 && l4[at..at + 2] == [0, 0] {
        return true;
    }
    let mut over = Vec::new();
    if proto != 1 {
        over.extend_from_slice(&ip[12..20]);
        over.extend_from_slice(&[0, proto]);
        over.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    }
    over.extend_from_slice(l4);
    csum(&over) == 0
}

/// The IPv4 source address of the Ethernet frame `p`.
#[must_use]
pub fn src(p: &[u8]) -> [u8; 4] {
    p[26..30].try_into().unwrap()
}

/// The IPv4 destination address of the Ethernet frame `p`.
#[must_use]
pub fn dst(p: &[u8]) -> [u8; 4] {
    p[30..34].try_into().unwrap()
}

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

/// The link-local address of `mac` (fe80::/64 with its modified EUI-64).
#[must_use]
pub fn ll(mac: [u8; 6]) -> [u8; 16] {
    smarter_common::link::link_local_of(mac)
}

/// `ff02::1`, all nodes.
pub const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Ethernet (to 33:33:00:00:00:01 from `smac`) + IPv6 (hop limit 255) from `src` to `dst` with
/// next header `next`, then `payload` (extension headers and the upper-layer message). The
/// payload length is the payload's.
#[must_use]
pub fn ip6(smac: [u8; 6], src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x33, 0x33, 0, 0, 0, 0x01];
    p.extend_from_slice(&smac);
    p.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 255]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// An ICMPv6 message from `src` to `dst` with its checksum over the pseudo header.
#[must_use]
pub fn icmp6(src: [u8; 16], dst: [u8; 16], kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(body);
    let mut over = Vec::new();
    over.extend_from_slice(&src);
    over.extend_from_slice(&dst);
    over.extend_from_slice(&(m.len() as u32).to_be_bytes());
    over.extend_from_slice(&[0, 0, 0, 58]);
    over.extend_from_slice(&m);
    let c = csum(&over);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A neighbour discovery option of `kind` carrying `mac` (8 bytes: a link-layer address).
#[must_use]
pub fn nd_opt(kind: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut o = vec![kind, 1];
    o.extend_from_slice(&mac);
    o
}

/// The body (after type, code, checksum) of a neighbour solicitation or advertisement
/// (`flags` in the first byte: 0x60 is solicited + override) for `target`, then `opts`.
#[must_use]
pub fn nd_body(flags: u8, target: [u8; 16], opts: &[u8]) -> Vec<u8> {
    let mut b = vec![flags, 0, 0, 0];
    b.extend_from_slice(&target);
    b.extend_from_slice(opts);
    b
}

/// A router advertisement body (hop limit 64, router lifetime 1800 s) with a prefix
/// information option for `prefix`/64 (autonomous, on-link).
#[must_use]
pub fn ra_body(prefix: [u8; 16]) -> Vec<u8> {
    let mut b = vec![64, 0];
    b.extend_from_slice(&1800u16.to_be_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&[3, 4, 64, 0xc0]);
    b.extend_from_slice(&86400u32.to_be_bytes());
    b.extend_from_slice(&14400u32.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&prefix);
    b
}

/// An extension header (hop-by-hop, routing or destination options) of 8 bytes whose next
/// header is `next`, padded with PadN.
#[must_use]
pub fn ext8(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}
