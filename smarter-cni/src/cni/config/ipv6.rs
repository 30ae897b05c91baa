//! `ipv6` and `subnet6`: whether pods get an IPv6 address ([`Ipv6Mode`]) and from which
//! subnet, and their parsers.

use std::net::Ipv6Addr;

use ipnetwork::Ipv6Network;
use serde_json::Value;

use super::fields::choice;
use crate::cni::CniError;
use crate::cni::json::Fields;

/// Default `subnet6` ([`super::defaults::SUBNET6`]).
pub const DEFAULT_SUBNET6: Ipv6Network =
    match Ipv6Network::new_checked(Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 0), 64) {
        Some(net) => net,
        None => panic!("fd00:ac27::/64 is a valid network"),
    };

/// The shortest `subnet6` prefix accepted: a /64, what SLAAC and every on-link IPv6 network
/// use; a shorter one would only waste address space nobody can route to a node.
pub const SUBNET6_MIN_PREFIX: u8 = 64;
/// The longest `subnet6` prefix accepted: a /120 still holds 254 pods.
pub const SUBNET6_MAX_PREFIX: u8 = 120;

/// `ipv6`: whether a pod gets an IPv6 address (from `subnet6`) besides its IPv4 one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Ipv6Mode {
    /// When, at the pod's ADD, a selected external interface has a global IPv6 address
    /// (there is somewhere to masquerade pods' IPv6 to).
    #[default]
    Auto,
    /// Always.
    On,
    /// Never: IPv4-only pods, no IPv6 on the bridge.
    Off,
}

impl Ipv6Mode {
    /// The key's spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

/// `ipv6` of the config; [`Ipv6Mode::Auto`] when absent.
pub(super) fn ipv6_mode(f: &Fields<'_>) -> Result<Ipv6Mode, CniError> {
    Ok(choice(
        f,
        "ipv6",
        &[
            ("auto", Ipv6Mode::Auto),
            ("on", Ipv6Mode::On),
            ("off", Ipv6Mode::Off),
        ],
    )?
    .unwrap_or_default())
}

/// Checks a `subnet6` value: an IPv6 CIDR without host bits, prefix
/// [`SUBNET6_MIN_PREFIX`]..=[`SUBNET6_MAX_PREFIX`]. The error says why the text is refused.
///
/// # Errors
/// The reason, to follow the key and the value in a message.
pub fn parse_subnet6(text: &str) -> Result<Ipv6Network, String> {
    let net: Ipv6Network = text.parse().map_err(|_| "is not an IPv6 CIDR".to_owned())?;
    if net.prefix() < SUBNET6_MIN_PREFIX {
        return Err(format!(
            "is too large (the prefix must be /{SUBNET6_MIN_PREFIX} or longer)"
        ));
    }
    if net.prefix() > SUBNET6_MAX_PREFIX {
        return Err(format!(
            "is too small (the prefix must be /{SUBNET6_MAX_PREFIX} or shorter)"
        ));
    }
    if net.network() != net.ip() {
        return Err(format!(
            "has host bits set (the network is {}/{})",
            net.network(),
            net.prefix()
        ));
    }
    if net.ip().is_multicast() || net.ip().is_loopback() || net.ip().is_unspecified() {
        return Err("is not a unicast network".to_owned());
    }
    Ok(net)
}

/// `subnet6` of the config; [`DEFAULT_SUBNET6`] when absent.
pub(super) fn subnet6(f: &Fields<'_>) -> Result<Ipv6Network, CniError> {
    let Some(text) = f.string("subnet6")? else {
        return Ok(DEFAULT_SUBNET6);
    };
    parse_subnet6(text).map_err(|why| f.invalid("subnet6", &Value::String(text.to_owned()), why))
}

/// The IPv6 gateway of `subnet6`, the bridge's address: the subnet's `::1`.
#[must_use]
pub fn gateway6(subnet6: Ipv6Network) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(subnet6.network()) + 1)
}

/// The first IPv6 address of `args.cni.ips` (CONVENTIONS.md), if any.
pub(super) fn args_ip6(args: &Value) -> Result<Option<Ipv6Addr>, CniError> {
    let Some(cni) = args.get("cni").and_then(Value::as_object) else {
        return Ok(None);
    };
    let cni = Fields::new(cni, "args.cni.", CniError::INVALID_CONFIG);
    let ips: Vec<ipnetwork::IpNetwork> = cni.parsed_list("ips", "an IP address or CIDR")?;
    Ok(ips.into_iter().find_map(|net| match net.ip() {
        std::net::IpAddr::V6(ip) => Some(ip),
        std::net::IpAddr::V4(_) => None,
    }))
}

impl super::NetConf {
    /// The pods' IPv6 gateway, the bridge's IPv6 address: `subnet6`'s `::1`.
    #[must_use]
    pub fn gateway6(&self) -> Ipv6Addr {
        gateway6(self.subnet6)
    }

    /// The IPv6 address the runtime asked for, by the precedence of
    /// [`NetConf::requested_ip`](super::NetConf::requested_ip): `runtimeConfig.ips`, then
    /// `args.cni.ips`, then `CNI_ARGS` `IP`.
    #[must_use]
    pub fn requested_ip6(&self, cni_args: &crate::cni::CniArgs) -> Option<Ipv6Addr> {
        self.runtime_config
            .ips6
            .first()
            .copied()
            .or(self.args_ip6)
            .or(cni_args.ip6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::NetConf;

    fn conf(extra: &str) -> Result<NetConf, CniError> {
        NetConf::parse(
            format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"smarter-cni"{extra}}}"#)
                .as_bytes(),
        )
    }

    #[test]
    fn defaults_are_auto_and_the_ula() {
        let c = conf("").unwrap();
        assert_eq!(c.ipv6, Ipv6Mode::Auto);
        assert_eq!(c.subnet6.to_string(), super::super::defaults::SUBNET6);
        assert_eq!(c.gateway6(), super::super::defaults::GATEWAY6);
        assert_eq!(gateway6(DEFAULT_SUBNET6).to_string(), "fd00:ac27::1");
    }

    #[test]
    fn parses_each_mode() {
        for (text, mode) in [
            ("auto", Ipv6Mode::Auto),
            ("on", Ipv6Mode::On),
            ("off", Ipv6Mode::Off),
        ] {
            let c = conf(&format!(r#","ipv6":"{text}""#)).unwrap();
            assert_eq!(c.ipv6, mode);
            assert_eq!(mode.as_str(), text);
        }
    }

    #[test]
    fn refuses_an_unknown_mode_naming_key_and_value() {
        let e = conf(r#","ipv6":"yes""#).unwrap_err();
        assert_eq!(e.code, CniError::INVALID_CONFIG);
        assert!(
            e.msg.contains("ipv6") && e.msg.contains("\"yes\""),
            "{}",
            e.msg
        );
        assert!(e.msg.contains("\"auto\""), "{}", e.msg);
        let e = conf(r#","ipv6":true"#).unwrap_err();
        assert_eq!(e.code, CniError::INVALID_CONFIG);
        assert!(e.msg.contains("ipv6"), "{}", e.msg);
    }

    #[test]
    fn accepts_a_custom_subnet6_with_its_gateway() {
        let c = conf(r#","subnet6":"fd12:3456:789a:1::/112""#).unwrap();
        assert_eq!(c.subnet6.to_string(), "fd12:3456:789a:1::/112");
        assert_eq!(c.gateway6().to_string(), "fd12:3456:789a:1::1");
    }

    #[test]
    fn refuses_bad_subnet6_naming_key_value_and_reason() {
        for (text, why) in [
            ("172.39.0.0/16", "not an IPv6 CIDR"),
            ("fd00::/48", "too large"),
            ("fd00::/124", "too small"),
            ("fd00::1/64", "host bits"),
            ("ff02::/64", "unicast"),
            ("nonsense", "not an IPv6 CIDR"),
        ] {
            let e = conf(&format!(r#","subnet6":"{text}""#)).unwrap_err();
            assert_eq!(e.code, CniError::INVALID_CONFIG, "{text}");
            assert!(
                e.msg.contains("subnet6") && e.msg.contains(text) && e.msg.contains(why),
                "{text}: {}",
                e.msg
            );
        }
    }

    #[test]
    fn requested_ip6_precedence() {
        let args = crate::cni::CniArgs {
            ip6: Some("fd00:ac27::30".parse().unwrap()),
            ..crate::cni::CniArgs::default()
        };
        let c = conf("").unwrap();
        assert_eq!(c.requested_ip6(&args), args.ip6);
        let c = conf(r#","args":{"cni":{"ips":["172.39.0.20","fd00:ac27::20/64"]}}"#).unwrap();
        assert_eq!(
            c.requested_ip6(&args),
            Some("fd00:ac27::20".parse().unwrap())
        );
        assert_eq!(c.requested_ip(&args), Some("172.39.0.20".parse().unwrap()));
        let c = conf(
            r#","args":{"cni":{"ips":["fd00:ac27::20"]}},"runtimeConfig":{"ips":["fd00:ac27::10/64"]}"#,
        )
        .unwrap();
        assert_eq!(
            c.requested_ip6(&args),
            Some("fd00:ac27::10".parse().unwrap())
        );
        assert_eq!(c.requested_ip(&args), None);
        assert_eq!(
            conf("")
                .unwrap()
                .requested_ip6(&crate::cni::CniArgs::default()),
            None
        );
    }
}
