//! Ethernet MAC addresses as they appear in CNI JSON (`"aa:bb:cc:dd:ee:ff"`).

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet hardware address.
///
/// Parses from and prints as six colon-separated two-digit hex octets; printing is lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a MAC address of the form aa:bb:cc:dd:ee:ff")]
pub struct MacParseError;

impl MacAddr {
    /// The octets.
    #[must_use]
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// True when the group bit (least significant bit of the first octet) is clear.
    #[must_use]
    pub const fn is_unicast(self) -> bool {
        self.0[0] & 0x01 == 0
    }

    /// True for `00:00:00:00:00:00`.
    #[must_use]
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or(MacParseError)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(MacParseError);
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
        }
        if parts.next().is_some() {
            return Err(MacParseError);
        }
        Ok(Self(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, octet) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{octet:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let mac: MacAddr = "C2:11:22:33:44:5f".parse().unwrap();
        assert_eq!(mac.octets(), [0xc2, 0x11, 0x22, 0x33, 0x44, 0x5f]);
        assert_eq!(mac.to_string(), "c2:11:22:33:44:5f");
        assert!(mac.is_unicast());
        assert!(!mac.is_zero());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "c2:11:22:33:44",
            "c2:11:22:33:44:55:66",
            "c2-11-22-33-44-55",
            "c2:1:22:33:44:55",
            "zz:11:22:33:44:55",
            "+1:11:22:33:44:55",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(MacParseError), "{bad}");
        }
    }

    #[test]
    fn multicast_and_zero() {
        assert!(!"01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_unicast());
        assert!(MacAddr([0; 6]).is_zero());
    }
}
