//! The node's upstream resolvers, from its resolv.conf.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

/// Where systemd-resolved keeps the real upstream servers when resolv.conf names its
/// loopback stub (the same file kubelet's `--resolv-conf` is pointed at on such systems).
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// systemd-resolved's stub listener.
const RESOLVED_STUB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));

/// The `nameserver` addresses of a resolv.conf, in order (comments, other keywords,
/// IPv6 zone suffixes and unparsable lines are skipped).
#[must_use]
pub fn parse(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            addr.split('%').next()?.parse().ok()
        })
        .collect()
}

/// The servers to forward to: the parsed ones minus this server's own address and
/// unspecified addresses, port 53.
#[must_use]
pub fn upstreams(servers: &[IpAddr], own: IpAddr) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for ip in servers {
        if *ip == own || ip.is_unspecified() {
            continue;
        }
        let sa = SocketAddr::new(*ip, 53);
        if !out.contains(&sa) {
            out.push(sa);
        }
    }
    out
}

/// Loads the upstream servers from `path`. When the file only names systemd-resolved's
/// loopback stub and `systemd_file` exists, the servers behind the stub are used instead (no
/// double caching, and the answer does not depend on the stub's own forwarding).
/// A missing or unreadable file gives no upstream (everything non-local gets SERVFAIL).
#[must_use]
pub fn load(path: &Path, systemd_file: &Path, own: IpAddr) -> Vec<SocketAddr> {
    let read = |p: &Path| match std::fs::read_to_string(p) {
        Ok(t) => Some(parse(&t)),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", p.display());
            None
        }
    };
    let Some(servers) = read(path) else {
        return Vec::new();
    };
    let mut up = upstreams(&servers, own);
    if !up.is_empty()
        && up.iter().all(|s| s.ip() == RESOLVED_STUB)
        && systemd_file.exists()
        && let Some(real) = read(systemd_file)
    {
        let real = upstreams(&real, own);
        if !real.is_empty() {
            up = real;
        }
    }
    up
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_nameservers_only() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.1 # primary\n\
                    nameserver\tfe80::1%eth0\n nameserver 2001:db8::1\nnameserver bogus\n\
                    ;nameserver 10.9.9.9\noptions ndots:5\nnameserver 10.0.0.2";
        assert_eq!(
            parse(text),
            [
                ip("10.0.0.1"),
                ip("fe80::1"),
                ip("2001:db8::1"),
                ip("10.0.0.2")
            ]
        );
        assert!(parse("").is_empty());
    }

    #[test]
    fn own_address_and_duplicates_are_dropped() {
        let own = ip("169.254.0.2");
        let got = upstreams(
            &[
                ip("169.254.0.2"),
                ip("10.0.0.1"),
                ip("0.0.0.0"),
                ip("10.0.0.1"),
                ip("127.0.0.1"),
            ],
            own,
        );
        assert_eq!(
            got,
            [
                "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn systemd_stub_is_looked_through() {
        let d = tempfile::tempdir().unwrap();
        let main = d.path().join("resolv.conf");
        let real = d.path().join("real.conf");
        let own = ip("169.254.0.2");
        std::fs::write(&main, "nameserver 127.0.0.53\n").unwrap();
        // No real file: keep the stub.
        assert_eq!(
            load(&main, &real, own),
            ["127.0.0.53:53".parse::<SocketAddr>().unwrap()]
        );
        std::fs::write(&real, "nameserver 10.1.1.1\n").unwrap();
        assert_eq!(
            load(&main, &real, own),
            ["10.1.1.1:53".parse::<SocketAddr>().unwrap()]
        );
        std::fs::write(&main, "nameserver 127.0.0.53\nnameserver 10.2.2.2\n").unwrap();
        assert_eq!(load(&main, &real, own).len(), 2);
        assert!(load(&d.path().join("missing"), &real, own).is_empty());
    }
}
