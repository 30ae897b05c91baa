//! The name table: an immutable index from names to addresses and back, rebuilt from the
//! pod entries whenever they change and swapped in whole (readers never see half an update).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};

use super::names::{
    in_domain, is_name, normalize, parse_reverse, parse_reverse6, pod_names, reverse_name,
};

/// One pod attached to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    /// The pod address.
    pub ip: Ipv4Addr,
    /// Prefix length of the pod subnet.
    pub prefix: u8,
    /// The pod's IPv6 address (a dual-stack pod), with the prefix length of its subnet.
    pub ip6: Option<(Ipv6Addr, u8)>,
    /// The pod's gateway (the bridge address), when the record has one.
    pub gateway: Option<Ipv4Addr>,
    /// The host label (see [`super::names::host_label`]).
    pub host: String,
    /// The Kubernetes namespace (may be empty).
    pub namespace: String,
    /// Extra names from the CNI `aliases` capability.
    pub aliases: Vec<String>,
}

/// A host-networked pod: it answers to the same names, at an address the asker can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPodEntry {
    /// The host label.
    pub host: String,
    /// The Kubernetes namespace.
    pub namespace: String,
}

/// Where a name points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Pod(Ipv4Addr),
    /// The node itself (host-networked pods): depends on who asks.
    Node,
}

/// The outcome of a forward lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name exists; its addresses (never empty).
    Found(Vec<Ipv4Addr>),
    /// The name is inside the cluster domain (or a pod subnet's reverse zone) but unknown.
    NxDomain,
    /// Not ours: forward it upstream.
    NotOurs,
}

/// The index; see the module docs.
#[derive(Debug, Default)]
pub struct NameTable {
    domain: String,
    by_name: HashMap<String, Vec<Target>>,
    ptr: HashMap<Ipv4Addr, String>,
    /// Pod address → its gateway, to answer host-networked names for pod askers.
    gateways: HashMap<Ipv4Addr, Ipv4Addr>,
    subnets: Vec<Ipv4Network>,
    /// Pod IPv4 address → its IPv6 address (dual-stack pods): the AAAA answer of its names.
    v6_of: HashMap<Ipv4Addr, Ipv6Addr>,
    ptr6: HashMap<Ipv6Addr, String>,
    subnets6: Vec<Ipv6Network>,
}

impl NameTable {
    /// Indexes `pods` and `host_pods` for `domain`.
    #[must_use]
    pub fn build(domain: &str, pods: &[PodEntry], host_pods: &[HostPodEntry]) -> Self {
        let mut t = Self {
            domain: normalize(domain),
            ..Self::default()
        };
        for p in pods {
            let names = pod_names(&p.host, &p.namespace, &t.domain);
            if let Some(primary) = names.first() {
                t.ptr.entry(p.ip).or_insert_with(|| primary.clone());
            }
            if let Some((ip6, prefix6)) = p.ip6 {
                t.index6(p.ip, ip6, prefix6, names.first());
            }
            let aliases = p
                .aliases
                .iter()
                .map(|a| normalize(a))
                .filter(|a| is_name(a));
            for name in names.into_iter().chain(aliases) {
                t.insert(name, Target::Pod(p.ip));
            }
            if let Some(gw) = p.gateway {
                t.gateways.insert(p.ip, gw);
            }
            if let Ok(net) = Ipv4Network::new(p.ip, p.prefix)
                && let Ok(net) = Ipv4Network::new(net.network(), p.prefix)
                && !t.subnets.contains(&net)
            {
                t.subnets.push(net);
            }
        }
        for h in host_pods {
            for name in pod_names(&h.host, &h.namespace, &t.domain) {
                t.insert(name, Target::Node);
            }
        }
        t
    }

    fn index6(&mut self, ip: Ipv4Addr, ip6: Ipv6Addr, prefix: u8, primary: Option<&String>) {
        self.v6_of.insert(ip, ip6);
        if let Some(primary) = primary {
            self.ptr6.entry(ip6).or_insert_with(|| primary.clone());
        }
        if let Ok(net) = Ipv6Network::new(ip6, prefix)
            && let Ok(net) = Ipv6Network::new(net.network(), prefix)
            && !self.subnets6.contains(&net)
        {
            self.subnets6.push(net);
        }
    }

    /// The IPv6 addresses of the pods behind `ips` (an A answer), for the AAAA answer of the
    /// same name: the dual-stack pods' only (a host-networked pod's name has none).
    #[must_use]
    pub fn addrs6(&self, ips: &[Ipv4Addr]) -> Vec<Ipv6Addr> {
        let mut out: Vec<Ipv6Addr> = Vec::new();
        for ip6 in ips.iter().filter_map(|ip| self.v6_of.get(ip)) {
            if !out.contains(ip6) {
                out.push(*ip6);
            }
        }
        out
    }

    fn insert(&mut self, name: String, target: Target) {
        let v = self.by_name.entry(name).or_default();
        if !v.contains(&target) {
            v.push(target);
        }
    }

    /// The cluster domain (key form).
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Number of names indexed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no name is indexed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Looks `name` (any case, trailing dot or not) up for `asker`.
    #[must_use]
    pub fn lookup(&self, name: &str, asker: IpAddr) -> Lookup {
        let key = normalize(name);
        match self.by_name.get(&key) {
            Some(targets) => {
                let mut out: Vec<Ipv4Addr> = Vec::with_capacity(targets.len());
                for t in targets {
                    let ip = match t {
                        Target::Pod(ip) => *ip,
                        Target::Node => self.node_address_for(asker),
                    };
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
                Lookup::Found(out)
            }
            None if in_domain(&key, &self.domain) => Lookup::NxDomain,
            None => Lookup::NotOurs,
        }
    }

    /// True when `name` exists (for any record type).
    #[must_use]
    pub fn has_name(&self, name: &str) -> bool {
        self.by_name.contains_key(&normalize(name))
    }

    /// The PTR answer for a reverse (`in-addr.arpa` or `ip6.arpa`) name.
    #[must_use]
    pub fn reverse(&self, name: &str) -> Reverse {
        let key = normalize(name);
        if let Some(ip6) = parse_reverse6(&key) {
            return match self.ptr6.get(&ip6) {
                Some(target) => Reverse::Found(target.clone()),
                None if self.subnets6.iter().any(|n| n.contains(ip6)) => Reverse::NxDomain,
                None => Reverse::NotOurs,
            };
        }
        let Some(ip) = parse_reverse(&key) else {
            return Reverse::NotOurs;
        };
        match self.ptr.get(&ip) {
            Some(target) => Reverse::Found(target.clone()),
            None if self.subnets.iter().any(|n| n.contains(ip)) => Reverse::NxDomain,
            None => Reverse::NotOurs,
        }
    }

    /// The reverse name of a pod address, if the pod is known (for tests and logs).
    #[must_use]
    pub fn reverse_of(&self, ip: Ipv4Addr) -> Option<(String, String)> {
        self.ptr.get(&ip).map(|t| (reverse_name(ip), t.clone()))
    }

    /// The address of the node as `asker` reaches it: a pod's gateway for a known pod,
    /// loopback for everyone else (host processes ask from a node address).
    #[must_use]
    pub fn node_address_for(&self, asker: IpAddr) -> Ipv4Addr {
        match asker {
            IpAddr::V4(ip) => self
                .gateways
                .get(&ip)
                .copied()
                .or_else(|| {
                    // A pod not (yet) in the table: the gateway of its subnet's known pods.
                    self.subnets.iter().find(|n| n.contains(ip)).and_then(|n| {
                        self.gateways
                            .iter()
                            .find(|(p, _)| n.contains(**p))
                            .map(|(_, gw)| *gw)
                    })
                })
                .unwrap_or(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
        }
    }
}

/// The outcome of a PTR lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reverse {
    /// The pod's most specific name.
    Found(String),
    /// An address of a pod subnet with no pod.
    NxDomain,
    /// Not ours: forward it upstream.
    NotOurs,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);

    fn pod(last: u8, host: &str, ns: &str, aliases: &[&str]) -> PodEntry {
        PodEntry {
            ip: Ipv4Addr::new(172, 39, 0, last),
            prefix: 16,
            ip6: None,
            gateway: Some(GW),
            host: host.into(),
            namespace: ns.into(),
            aliases: aliases.iter().map(ToString::to_string).collect(),
        }
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(172, 39, 0, last)
    }

    const HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 0, 2));

    #[test]
    fn every_form_resolves_and_unknowns_split_by_domain() {
        let t = NameTable::build(
            "cluster.local",
            &[
                pod(2, "web", "default", &["Alias.Example."]),
                pod(3, "db", "prod", &[]),
            ],
            &[],
        );
        for n in [
            "web",
            "WEB.",
            "web.default.svc.cluster.local",
            "web.svc.cluster.local.",
            "web.cluster.local",
            "alias.example",
        ] {
            assert_eq!(t.lookup(n, HOST), Lookup::Found(vec![ip(2)]), "{n}");
        }
        assert_eq!(
            t.lookup("db.prod.svc.cluster.local", HOST),
            Lookup::Found(vec![ip(3)])
        );
        assert_eq!(
            t.lookup("web.prod.svc.cluster.local", HOST),
            Lookup::NxDomain
        );
        assert_eq!(t.lookup("nope.cluster.local", HOST), Lookup::NxDomain);
        assert_eq!(t.lookup("example.com", HOST), Lookup::NotOurs);
        assert_eq!(t.lookup("nope", HOST), Lookup::NotOurs);
    }

    #[test]
    fn same_hostname_twice_answers_both() {
        let t = NameTable::build(
            "cluster.local",
            &[pod(2, "x", "a", &[]), pod(3, "x", "b", &[])],
            &[],
        );
        assert_eq!(t.lookup("x", HOST), Lookup::Found(vec![ip(2), ip(3)]));
        assert_eq!(
            t.lookup("x.b.svc.cluster.local", HOST),
            Lookup::Found(vec![ip(3)])
        );
    }

    #[test]
    fn ptr_for_pods_nxdomain_in_subnet_forward_outside() {
        let t = NameTable::build("cluster.local", &[pod(2, "web", "default", &[])], &[]);
        assert_eq!(
            t.reverse("2.0.39.172.in-addr.arpa."),
            Reverse::Found("web.default.svc.cluster.local".into())
        );
        assert_eq!(t.reverse("9.0.39.172.in-addr.arpa"), Reverse::NxDomain);
        assert_eq!(t.reverse("8.8.8.8.in-addr.arpa"), Reverse::NotOurs);
        assert_eq!(t.reverse("web"), Reverse::NotOurs);
    }

    #[test]
    fn host_networked_pods_resolve_per_asker() {
        let host = HostPodEntry {
            host: "agent".into(),
            namespace: "kube-system".into(),
        };
        let t = NameTable::build("cluster.local", &[pod(2, "web", "default", &[])], &[host]);
        assert_eq!(
            t.lookup("agent", IpAddr::V4(ip(2))),
            Lookup::Found(vec![GW])
        );
        // A pod of the subnet that has no record yet still gets the gateway.
        assert_eq!(
            t.lookup("agent", IpAddr::V4(ip(7))),
            Lookup::Found(vec![GW])
        );
        assert_eq!(
            t.lookup("agent.kube-system.svc.cluster.local", HOST),
            Lookup::Found(vec![Ipv4Addr::LOCALHOST])
        );
    }

    #[test]
    fn bad_aliases_are_ignored() {
        let t = NameTable::build(
            "cluster.local",
            &[pod(2, "web", "d", &["", "a..b", "ok"])],
            &[],
        );
        assert!(t.has_name("ok") && !t.has_name("a..b") && !t.has_name(""));
        assert_eq!(t.len(), 5);
    }
}
