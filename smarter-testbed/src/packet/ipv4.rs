//! IPv4 and what rides on it: the header ([`Ipv4`]), UDP, TCP and ICMP messages.

use std::net::Ipv4Addr;

use super::{ETH_P_IP, eth, fill_csum, inet_csum};

/// An IPv4 header to put in front of a payload: the addresses and the protocol, and the fields
/// a test may choose (by default identification 1, no fragment flags or offset, TTL 64, no
/// options). Version, lengths and the header checksum follow from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4 {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    frag: u16,
    ttl: u8,
    options: Vec<u8>,
}

impl Ipv4 {
    /// The "don't fragment" flag of the flags and fragment offset word.
    pub const DF: u16 = 0x4000;
    /// The "more fragments" flag of the flags and fragment offset word.
    pub const MF: u16 = 0x2000;

    /// A header from `src` to `dst` carrying protocol `proto`.
    #[must_use]
    pub fn new(src: impl Into<Ipv4Addr>, dst: impl Into<Ipv4Addr>, proto: u8) -> Self {
        Self {
            src: src.into(),
            dst: dst.into(),
            proto,
            id: 1,
            frag: 0,
            ttl: 64,
            options: Vec::new(),
        }
    }

    /// The identification field (fragments of one datagram share it).
    #[must_use]
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    /// The flags and fragment offset word: [`Ipv4::DF`], [`Ipv4::MF`] and the offset in
    /// 8-byte units in the low 13 bits.
    #[must_use]
    pub fn frag(mut self, word: u16) -> Self {
        self.frag = word;
        self
    }

    /// The time to live.
    #[must_use]
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// IP options after the fixed header.
    ///
    /// # Panics
    /// When they are not a multiple of 4 bytes or longer than 40.
    #[must_use]
    pub fn options(mut self, options: &[u8]) -> Self {
        assert!(
            options.len().is_multiple_of(4) && options.len() <= 40,
            "IPv4 options are whole words, at most 40 bytes: {}",
            options.len()
        );
        self.options = options.to_vec();
        self
    }

    /// The header, its checksum filled in, then `payload`.
    #[must_use]
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let hl = 20 + self.options.len();
        let total = u16::try_from(hl + payload.len()).expect("an IPv4 packet fits 64 KiB");
        let mut ip = vec![0x40 | (hl / 4) as u8, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&self.id.to_be_bytes());
        ip.extend_from_slice(&self.frag.to_be_bytes());
        ip.extend_from_slice(&[self.ttl, self.proto, 0, 0]);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        ip.extend_from_slice(&self.options);
        let c = inet_csum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(payload);
        ip
    }

    /// [`Ipv4::packet`] in an Ethernet frame from `src_mac` to `dst_mac`.
    #[must_use]
    pub fn frame(&self, dst_mac: [u8; 6], src_mac: [u8; 6], payload: &[u8]) -> Vec<u8> {
        eth(dst_mac, src_mac, ETH_P_IP, &self.packet(payload))
    }
}

/// A UDP datagram: the header (length 8 + `data`, checksum 0: none; see [`super::with_l4_csum`]),
/// then `data`.
#[must_use]
pub fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + data.len()).expect("a UDP datagram fits 64 KiB");
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

/// A TCP segment: a 20-byte header with `flags` (sequence number 0x12345678, no ACK number,
/// window 64240, checksum 0; see [`super::with_l4_csum`]), then `data`.
#[must_use]
pub fn tcp(sport: u16, dport: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(data);
    t
}

/// An ICMP message of `kind` and `code` whose second word is `rest` (an identifier and
/// sequence number, [`id_seq`]; a gateway; an MTU), then `data`, with its checksum.
#[must_use]
pub fn icmp4(kind: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(data);
    fill_csum(Vec::new(), m, 2)
}

/// The second word of an ICMP query: identifier `id`, sequence number `seq`.
#[must_use]
pub fn id_seq(id: u16, seq: u16) -> [u8; 4] {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    [a, b, c, d]
}
