//! `CNI_ARGS`: `K=V;K2=V2` pairs passed by the runtime.
//!
//! Known keys are the Kubernetes ones, `IP` and `IgnoreUnknown`. Unknown keys are an error
//! (code 2) unless `IgnoreUnknown` is `1`/`true`, as in the reference plugins.

use std::net::Ipv4Addr;

use super::CniError;

/// The understood contents of `CNI_ARGS`. Empty values count as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub infra_container_id: Option<String>,
    /// `K8S_POD_UID`.
    pub pod_uid: Option<String>,
    /// `IP`: a requested IPv4 address (a `/prefix`, if given, is accepted and dropped).
    pub ip: Option<Ipv4Addr>,
    /// `IP`: a requested IPv6 address, the second entry of a comma-separated `IP` (host-local's
    /// `IP=10.1.2.3,fd00::5`; one address of each family at most).
    pub ip6: Option<std::net::Ipv6Addr>,
}

/// Parses a boolean the way the reference `UnmarshallableBool` does: `1`/`true` and
/// `0`/`false`, case-insensitively.
fn parse_bool(value: &str) -> Option<bool> {
    if value == "1" || value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value == "0" || value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parses the `IP` argument: comma-separated addresses, each with an optional `/prefix`, at
/// most one IPv4 and one IPv6; `None` when anything else is there.
fn parse_ip(value: &str) -> Option<(Option<Ipv4Addr>, Option<std::net::Ipv6Addr>)> {
    let (mut v4, mut v6) = (None, None);
    for item in value.split(',') {
        let addr = match item.split_once('/') {
            Some(_) => item.parse::<ipnetwork::IpNetwork>().ok()?.ip(),
            None => item.parse().ok()?,
        };
        match addr {
            std::net::IpAddr::V4(a) if v4.is_none() => v4 = Some(a),
            std::net::IpAddr::V6(a) if v6.is_none() => v6 = Some(a),
            _ => return None,
        }
    }
    Some((v4, v6))
}

impl CniArgs {
    /// Parses `CNI_ARGS`. Empty segments (e.g. a trailing `;`) are skipped; later duplicates win.
    ///
    /// # Errors
    ///
    /// - code 2 for a pair without `=` or with an empty key, for an `IgnoreUnknown` that is not
    ///   a boolean, and for unknown keys (all named, with their values) unless `IgnoreUnknown`
    ///   is true;
    /// - code 4 for an `IP` that is not one IPv4 and/or one IPv6 address.
    pub fn parse(raw: &str) -> Result<Self, CniError> {
        let mut pairs = Vec::new();
        for segment in raw.split(';').filter(|s| !s.is_empty()) {
            match segment.split_once('=') {
                Some((key, value)) if !key.is_empty() => pairs.push((key, value)),
                _ => {
                    return Err(CniError::unsupported_field(format!(
                        "CNI_ARGS has malformed pair {segment:?} (expected KEY=VALUE)"
                    )));
                }
            }
        }

        let mut ignore_unknown = false;
        for &(_, value) in pairs.iter().filter(|(key, _)| *key == "IgnoreUnknown") {
            ignore_unknown = parse_bool(value).ok_or_else(|| {
                CniError::unsupported_field(format!(
                    "CNI_ARGS IgnoreUnknown={value:?} is not a boolean (1, 0, true or false)"
                ))
            })?;
        }

        let mut args = Self::default();
        let mut unknown = Vec::new();
        for (key, value) in pairs {
            let text = (!value.is_empty()).then(|| value.to_owned());
            match key {
                "IgnoreUnknown" => {}
                "K8S_POD_NAME" => args.pod_name = text,
                "K8S_POD_NAMESPACE" => args.pod_namespace = text,
                "K8S_POD_INFRA_CONTAINER_ID" => args.infra_container_id = text,
                "K8S_POD_UID" => args.pod_uid = text,
                "IP" if value.is_empty() => (args.ip, args.ip6) = (None, None),
                "IP" => {
                    (args.ip, args.ip6) = parse_ip(value).ok_or_else(|| {
                        CniError::invalid_env(format!(
                            "CNI_ARGS IP={value:?} is not an IPv4 and/or an IPv6 address \
                             (comma-separated, optionally with /prefix)"
                        ))
                    })?;
                }
                _ => unknown.push(format!("{key}={value:?}")),
            }
        }
        if !unknown.is_empty() && !ignore_unknown {
            return Err(CniError::unsupported_field(format!(
                "CNI_ARGS has unknown {} {} (set IgnoreUnknown=1 to ignore)",
                if unknown.len() == 1 { "key" } else { "keys" },
                unknown.join(", ")
            )));
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_args() {
        let args = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=1f2e",
        )
        .unwrap();
        assert_eq!(
            args,
            CniArgs {
                pod_name: Some("web-0".into()),
                pod_namespace: Some("default".into()),
                infra_container_id: Some("abc123".into()),
                pod_uid: Some("1f2e".into()),
                ip: None,
                ip6: None,
            }
        );
    }

    #[test]
    fn empty_and_trailing_separators() {
        assert_eq!(CniArgs::parse(""), Ok(CniArgs::default()));
        assert_eq!(
            CniArgs::parse(";;K8S_POD_NAME=;").unwrap(),
            CniArgs::default()
        );
    }

    #[test]
    fn ip_with_and_without_prefix() {
        assert_eq!(
            CniArgs::parse("IP=10.1.2.3").unwrap().ip,
            Some(Ipv4Addr::new(10, 1, 2, 3))
        );
        assert_eq!(
            CniArgs::parse("IP=10.1.2.3/24").unwrap().ip,
            Some(Ipv4Addr::new(10, 1, 2, 3))
        );
        let both = CniArgs::parse("IP=10.1.2.3,fd00:ac27::9/64").unwrap();
        assert_eq!(both.ip, Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(both.ip6, Some("fd00:ac27::9".parse().unwrap()));
        let v6 = CniArgs::parse("IP=fd00::1").unwrap();
        assert_eq!((v6.ip, v6.ip6), (None, Some("fd00::1".parse().unwrap())));
        for bad in [
            "IP=10.1.2",
            "IP=10.1.2.3/40",
            "IP=10.1.2.3,10.1.2.4",
            "IP=fd00::1,fd00::2",
            "IP=10.1.2.3,",
        ] {
            let err = CniArgs::parse(bad).unwrap_err();
            assert_eq!(err.code, CniError::INVALID_ENV, "{bad}");
            assert!(err.msg.contains(&bad[3..]), "{}", err.msg);
        }
    }

    #[test]
    fn unknown_keys_rejected_and_named() {
        let err = CniArgs::parse("FOO=bar;K8S_POD_NAME=x;BAZ=1").unwrap_err();
        assert_eq!(err.code, CniError::UNSUPPORTED_FIELD);
        assert!(
            err.msg.contains("FOO=\"bar\"") && err.msg.contains("BAZ=\"1\""),
            "{}",
            err.msg
        );
        assert!(CniArgs::parse("FOO=bar;IgnoreUnknown=0").is_err());
    }

    #[test]
    fn ignore_unknown_any_position_and_case() {
        for raw in [
            "FOO=bar;IgnoreUnknown=1",
            "IgnoreUnknown=TRUE;FOO=bar",
            "IgnoreUnknown=true;X=y",
        ] {
            assert_eq!(CniArgs::parse(raw), Ok(CniArgs::default()), "{raw}");
        }
        let err = CniArgs::parse("IgnoreUnknown=yes").unwrap_err();
        assert_eq!(err.code, CniError::UNSUPPORTED_FIELD);
        assert!(err.msg.contains("\"yes\""), "{}", err.msg);
    }

    #[test]
    fn malformed_pairs() {
        for bad in ["FOO", "K8S_POD_NAME=a;novalue", "=x"] {
            let err = CniArgs::parse(bad).unwrap_err();
            assert_eq!(err.code, CniError::UNSUPPORTED_FIELD, "{bad}");
            assert!(err.msg.contains("malformed pair"), "{}", err.msg);
        }
    }
}
