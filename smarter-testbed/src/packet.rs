//! What the tests that craft packets by hand share.

/// The Internet checksum (RFC 1071) of `bytes`: the ones' complement of the ones'-complement
/// sum of its 16-bit words, an odd last byte padded with zero.
#[must_use]
pub fn inet_csum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::inet_csum;

    #[test]
    fn rfc1071_example_and_odd_length() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2.
        assert_eq!(
            inet_csum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        assert_eq!(inet_csum(&[0xff]), !0xff00);
        // A buffer carrying its own checksum sums to zero.
        let mut b = vec![
            0x45, 0x00, 0x00, 0x1c, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = inet_csum(&b);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(inet_csum(&b), 0);
    }
}
