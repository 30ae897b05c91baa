//! Pure name building: which names a pod answers to and reverse names. The name syntax
//! and the key form every lookup uses (lower case, no trailing dot) are [`crate::naming`]'s.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::naming::MAX_LABEL;
pub use crate::naming::{is_label, is_name, normalize};

/// The host label of a pod: the runtime's hostname if it is a valid label, else the pod
/// name, else the container id (cut to 63 characters); `None` when none of them is usable.
#[must_use]
pub fn host_label(hostname: Option<&str>, pod_name: &str, container_id: &str) -> Option<String> {
    let cut = &container_id[..container_id.len().min(MAX_LABEL)];
    [hostname.unwrap_or_default(), pod_name, cut]
        .into_iter()
        .map(str::to_ascii_lowercase)
        .find(|l| is_label(l))
}

/// The names a pod answers to, most specific first (the first is the PTR target):
/// `<host>.<ns>.svc.<domain>` (when the namespace is known), `<host>.svc.<domain>`,
/// `<host>.<domain>`, `<host>`.
#[must_use]
pub fn pod_names(host: &str, namespace: &str, domain: &str) -> Vec<String> {
    let (host, domain) = (normalize(host), normalize(domain));
    let mut out = Vec::with_capacity(4);
    let ns = namespace.to_ascii_lowercase();
    if is_label(&ns) {
        out.push(format!("{host}.{ns}.svc.{domain}"));
    }
    out.push(format!("{host}.svc.{domain}"));
    out.push(format!("{host}.{domain}"));
    out.push(host);
    out.retain(|n| is_name(n));
    out
}

/// True when `name` (key form) is `domain` or below it.
#[must_use]
pub fn in_domain(name: &str, domain: &str) -> bool {
    name == domain
        || name
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The `in-addr.arpa` name of an address (key form).
#[must_use]
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

/// The address a full four-label `in-addr.arpa` name (key form) stands for.
#[must_use]
pub fn parse_reverse(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut labels = rest.split('.');
    for slot in octets.iter_mut().rev() {
        let label = labels.next()?;
        // Decimal without leading zeros, as PTR names are written.
        if label.len() > 1 && label.starts_with('0') {
            return None;
        }
        *slot = label.parse().ok()?;
    }
    labels.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// The `ip6.arpa` name of an IPv6 address (key form): its 32 nibbles, last first.
#[must_use]
pub fn reverse_name6(ip: Ipv6Addr) -> String {
    let mut out = String::with_capacity(72);
    for byte in ip.octets().iter().rev() {
        let _ = write!(out, "{:x}.{:x}.", byte & 0xf, byte >> 4);
    }
    out.push_str("ip6.arpa");
    out
}

/// The address a full 32-nibble `ip6.arpa` name (key form) stands for.
#[must_use]
pub fn parse_reverse6(name: &str) -> Option<Ipv6Addr> {
    let rest = name.strip_suffix(".ip6.arpa")?;
    let mut value: u128 = 0;
    let mut count = 0;
    for label in rest.split('.').rev() {
        let [c] = label.as_bytes() else { return None };
        let nibble = char::from(*c).to_digit(16)?;
        value = (value << 4) | u128::from(nibble);
        count += 1;
    }
    (count == 32).then(|| Ipv6Addr::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_a_pod() {
        assert_eq!(
            pod_names("Example", "default", "cluster.local."),
            [
                "example.default.svc.cluster.local",
                "example.svc.cluster.local",
                "example.cluster.local",
                "example"
            ]
        );
        assert_eq!(
            pod_names("web", "", "cluster.local"),
            ["web.svc.cluster.local", "web.cluster.local", "web"]
        );
    }

    #[test]
    fn host_label_falls_back_in_order() {
        assert_eq!(host_label(Some("Ex"), "pod", "abc").as_deref(), Some("ex"));
        assert_eq!(host_label(None, "pod-1", "abc").as_deref(), Some("pod-1"));
        assert_eq!(host_label(Some(""), "", "abc").as_deref(), Some("abc"));
        assert_eq!(
            host_label(Some("bad_name"), "also.bad", "abc").as_deref(),
            Some("abc")
        );
        let long = "a".repeat(64);
        assert_eq!(host_label(None, "", &long), Some("a".repeat(63)));
        assert_eq!(host_label(None, "", "-"), None);
    }

    #[test]
    fn labels_and_names() {
        assert!(is_label("a-1"));
        assert!(!is_label("-a") && !is_label("a-") && !is_label("") && !is_label("a.b"));
        assert!(!is_label(&"a".repeat(64)));
        assert!(is_name("a.b_c.d") && !is_name("a..b") && !is_name(""));
        assert!(!is_name(&format!("{}.x", "a".repeat(253))));
    }

    #[test]
    fn domains() {
        assert!(in_domain("a.cluster.local", "cluster.local"));
        assert!(in_domain("cluster.local", "cluster.local"));
        assert!(!in_domain("acluster.local", "cluster.local"));
        assert!(!in_domain("local", "cluster.local"));
        assert_eq!(normalize("A.B."), "a.b");
    }

    #[test]
    fn reverse_names_round_trip() {
        let ip = Ipv4Addr::new(172, 39, 0, 5);
        assert_eq!(reverse_name(ip), "5.0.39.172.in-addr.arpa");
        assert_eq!(parse_reverse(&reverse_name(ip)), Some(ip));
        assert_eq!(parse_reverse("0.39.172.in-addr.arpa"), None);
        assert_eq!(parse_reverse("1.5.0.39.172.in-addr.arpa"), None);
        assert_eq!(parse_reverse("05.0.39.172.in-addr.arpa"), None);
        assert_eq!(parse_reverse("256.0.39.172.in-addr.arpa"), None);
        assert_eq!(parse_reverse("example.com"), None);
    }
}
