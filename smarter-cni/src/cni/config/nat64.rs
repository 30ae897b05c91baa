//! `nat64Prefix`: which NAT64 prefix an IPv6-only uplink's CLAT translates pods' IPv4 to
//! ([`Nat64Prefix`]), and its parser.

use std::fmt;
use std::net::Ipv6Addr;

use serde_json::Value;

use super::defaults;
use crate::cni::CniError;
use crate::cni::json::Fields;

/// `nat64Prefix`: absent or `"auto"` ([`Nat64Prefix::Auto`]), a `/96` ([`Nat64Prefix::Fixed`])
/// or `"off"` ([`Nat64Prefix::Off`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Nat64Prefix {
    /// Discovered by the agent (RFC 8781's PREF64 option in router advertisements, else RFC
    /// 7050's `ipv4only.arpa`), else the well-known [`defaults::NAT64_PREFIX`].
    #[default]
    Auto,
    /// This prefix (its first 96 bits), whatever the network announces.
    Fixed(Ipv6Addr),
    /// No CLAT: pods' IPv4 is never translated.
    Off,
}

impl Nat64Prefix {
    /// The prefix the CLAT translates to, `None` when off. `discovered` is asked only for
    /// [`Nat64Prefix::Auto`] (the plugin reads the agent's record there, so `Fixed` and `Off`
    /// cost no file access); without a discovered prefix `Auto` is the well-known one.
    #[must_use]
    pub fn resolve(self, discovered: impl FnOnce() -> Option<Ipv6Addr>) -> Option<Ipv6Addr> {
        match self {
            Self::Auto => Some(discovered().unwrap_or(defaults::NAT64_PREFIX)),
            Self::Fixed(p) => Some(p),
            Self::Off => None,
        }
    }

    /// Parses a `nat64Prefix` value: `"auto"`, `"off"` or an IPv6 `/96` without host bits
    /// (RFC 6052's other lengths put the IPv4 address around a reserved octet, which the
    /// datapath does not translate). The error says why the text is refused.
    ///
    /// # Errors
    /// The reason, to follow the key and the value in a message.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        match text {
            "auto" => return Ok(Self::Auto),
            "off" => return Ok(Self::Off),
            _ => {}
        }
        let net: ipnetwork::Ipv6Network = text
            .parse()
            .map_err(|_| "is not an IPv6 CIDR, \"auto\" or \"off\"")?;
        if net.prefix() != 96 {
            return Err("is not a /96 (the only NAT64 prefix length the CLAT translates)");
        }
        if net.network() != net.ip() {
            return Err("has host bits set");
        }
        Ok(Self::Fixed(net.ip()))
    }
}

impl fmt::Display for Nat64Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Fixed(p) => write!(f, "{p}/96"),
            Self::Off => f.write_str("off"),
        }
    }
}

impl super::NetConf {
    /// The NAT64 prefix the plugin's CLAT decision uses now (`None`: off): `nat64Prefix`, with
    /// `auto` the prefix the agent discovered and recorded in the state directory
    /// ([`crate::state::StateDir::read_pref64`]), else the well-known one. No network I/O.
    #[must_use]
    pub fn pref64(&self) -> Option<Ipv6Addr> {
        self.nat64_prefix.resolve(|| {
            crate::state::StateDir::new(&self.state_dir, &self.name)
                .read_pref64()
                .map(|r| r.prefix)
        })
    }
}

/// `nat64Prefix` of the config; [`Nat64Prefix::Auto`] when absent.
pub(super) fn nat64_prefix(f: &Fields<'_>) -> Result<Nat64Prefix, CniError> {
    let Some(text) = f.string("nat64Prefix")? else {
        return Ok(Nat64Prefix::Auto);
    };
    Nat64Prefix::parse(text)
        .map_err(|why| f.invalid("nat64Prefix", &Value::String(text.to_owned()), why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auto_off_and_a_96() {
        assert_eq!(Nat64Prefix::parse("auto"), Ok(Nat64Prefix::Auto));
        assert_eq!(Nat64Prefix::parse("off"), Ok(Nat64Prefix::Off));
        let p: Ipv6Addr = "2001:db8:64:64::".parse().unwrap();
        assert_eq!(
            Nat64Prefix::parse("2001:db8:64:64::/96"),
            Ok(Nat64Prefix::Fixed(p))
        );
        assert_eq!(Nat64Prefix::Fixed(p).to_string(), "2001:db8:64:64::/96");
        assert!(
            Nat64Prefix::parse("2001:db8::/64")
                .unwrap_err()
                .contains("/96")
        );
        assert!(
            Nat64Prefix::parse("64:ff9b::1/96")
                .unwrap_err()
                .contains("host bits")
        );
        assert!(Nat64Prefix::parse("on").unwrap_err().contains("\"auto\""));
        assert!(Nat64Prefix::parse("10.0.0.0/8").is_err());
    }

    #[test]
    fn resolves_with_the_discovered_prefix_only_when_auto() {
        let found: Ipv6Addr = "2001:db8:1::".parse().unwrap();
        let fixed: Ipv6Addr = "2001:db8:2::".parse().unwrap();
        assert_eq!(Nat64Prefix::Auto.resolve(|| Some(found)), Some(found));
        assert_eq!(
            Nat64Prefix::Auto.resolve(|| None),
            Some(defaults::NAT64_PREFIX)
        );
        let never = || -> Option<Ipv6Addr> { panic!("not asked") };
        assert_eq!(Nat64Prefix::Fixed(fixed).resolve(never), Some(fixed));
        assert_eq!(Nat64Prefix::Off.resolve(never), None);
    }
}
