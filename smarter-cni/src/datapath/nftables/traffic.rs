//! Per-pod traffic per external interface, counted in the kernel: two dynamic sets of the inet
//! table keyed `pod address . interface name`, whose elements carry counters.
//!
//! - `traffic_out`: updated in the backstop chain (postrouting, after NAT and after the leak
//!   drop, so only what really leaves is counted) for packets forwarded from the bridge out of
//!   any interface but the bridge and `lo`; the pod is the connection's original source (a
//!   masqueraded flow) or its reply source (the reply of a hostPort flow).
//! - `traffic_in`: updated in the regular chain `pod_in`, which the forward chain jumps to for
//!   every packet it lets through from an external interface into a pod (replies after the
//!   reverse NAT, hostPort traffic after DNAT), keyed by the pod destination.
//!
//! In a dual-stack network the pods' IPv6 is counted the same way in `traffic6_out` and
//! `traffic6_in` (`pod ULA . interface name`); readers add it to the pod's IPv4 row.
//!
//! Elements appear with a pod's first packet through an interface and go with its detach
//! (and, should a late packet re-create one, with the next attach of the address or the
//! agent's gc).

use std::net::IpAddr;

use serde_json::Value;

use super::error::NftablesError;
use super::parse;
use crate::datapath::types::TrafficDir;

/// Inet-family dynamic set of `pod . oifname` with counters: what pods sent.
pub(super) const SET_OUT: &str = "traffic_out";
/// Inet-family dynamic set of `pod . iifname` with counters: what pods received.
pub(super) const SET_IN: &str = "traffic_in";
/// Inet-family dynamic set of `pod ULA . oifname` with counters (dual-stack).
pub(super) const SET6_OUT: &str = "traffic6_out";
/// Inet-family dynamic set of `pod ULA . iifname` with counters (dual-stack).
pub(super) const SET6_IN: &str = "traffic6_in";
/// The inet table's regular chain that counts a packet into a pod and accepts it.
pub(super) const CHAIN_IN: &str = "pod_in";
/// Elements per set: pods times external interfaces, with room to spare.
const SET_SIZE: u32 = 65_535;

/// One counted element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Counted {
    /// The pod address (its ULA in the IPv6 sets).
    pub pod: IpAddr,
    /// The interface name the packets left or came in by.
    pub ifname: String,
    /// Which set it is in.
    pub dir: TrafficDir,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

fn set_of(dir: TrafficDir, v6: bool) -> &'static str {
    match (dir, v6) {
        (TrafficDir::Out, false) => SET_OUT,
        (TrafficDir::In, false) => SET_IN,
        (TrafficDir::Out, true) => SET6_OUT,
        (TrafficDir::In, true) => SET6_IN,
    }
}

/// The two sets (four with `v6`), for inet table `i` (`inet <name>`). No per-set `counter`
/// (Linux 5.11): each element gets the counter of the statement that creates it.
pub(super) fn set_lines(i: &str, v6: bool) -> Vec<String> {
    let mut sets = vec![(SET_OUT, "ipv4_addr"), (SET_IN, "ipv4_addr")];
    if v6 {
        sets.extend([(SET6_OUT, "ipv6_addr"), (SET6_IN, "ipv6_addr")]);
    }
    sets.iter()
        .map(|(set, addr)| {
            format!("add set {i} {set} {{ type {addr} . ifname; flags dynamic; size {SET_SIZE}; }}")
        })
        .collect()
}

/// The counting rules of the backstop chain (after its leak drop), for bridge `br` and pod
/// subnet `net`: a masqueraded flow's packets by their original source, a hostPort flow's
/// replies by their reply source, both before NAT rewrote them.
pub(super) fn out_rules(br: &str, net: &str) -> Vec<String> {
    out_rules_of(br, net, "ip", SET_OUT)
}

/// [`out_rules`] of the pods' IPv6 subnet `net6`, into [`SET6_OUT`].
pub(super) fn out_rules6(br: &str, net6: &str) -> Vec<String> {
    out_rules_of(br, net6, "ip6", SET6_OUT)
}

fn out_rules_of(br: &str, net: &str, ip: &str, set: &str) -> Vec<String> {
    ["original", "reply"]
        .iter()
        .map(|dir| {
            let pod = format!("ct {dir} {ip} saddr");
            format!(
                "iifname \"{br}\" oifname != {{ \"{br}\", \"lo\" }} ct direction {dir} {pod} {net} \
                 update @{set} {{ {pod} . oifname counter }}"
            )
        })
        .collect()
}

/// The rules of [`CHAIN_IN`]: count (IPv6 too with `v6`), then accept (also when the set is
/// full and the update fails).
pub(super) fn in_chain_rules(v6: bool) -> Vec<String> {
    let mut rules = vec![format!("update @{SET_IN} {{ ip daddr . iifname counter }}")];
    if v6 {
        rules.push(format!(
            "update @{SET6_IN} {{ ip6 daddr . iifname counter }}"
        ));
    }
    rules.push("accept".to_owned());
    rules
}

/// The batch deleting `doomed` from table `t`'s sets.
pub(super) fn delete_script(t: &str, doomed: &[Counted]) -> String {
    doomed
        .iter()
        .map(|c| {
            format!(
                "delete element inet {t} {} {{ {} . \"{}\" }}\n",
                set_of(c.dir, c.pod.is_ipv6()),
                c.pod,
                c.ifname
            )
        })
        .collect()
}

/// Every set's elements in an inet table listing (the IPv6 sets' when they exist).
///
/// # Errors
///
/// [`NftablesError::Parse`] for an element of another shape.
pub(super) fn counted(doc: &Value) -> Result<Vec<Counted>, NftablesError> {
    let mut all = Vec::new();
    for (dir, v6) in [
        (TrafficDir::Out, false),
        (TrafficDir::In, false),
        (TrafficDir::Out, true),
        (TrafficDir::In, true),
    ] {
        for (pod, ifname, packets, bytes) in parse::counted_elements(doc, set_of(dir, v6))? {
            all.push(Counted {
                pod,
                ifname,
                dir,
                packets,
                bytes,
            });
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Counted, counted, delete_script, in_chain_rules, out_rules, set_lines};
    use crate::datapath::nftables::error::NftablesError;
    use crate::datapath::types::TrafficDir;

    #[test]
    fn rules_count_by_pod_before_nat() {
        assert_eq!(
            set_lines("inet t", false),
            [
                "add set inet t traffic_out { type ipv4_addr . ifname; flags dynamic; size 65535; }",
                "add set inet t traffic_in { type ipv4_addr . ifname; flags dynamic; size 65535; }",
            ]
        );
        assert_eq!(
            out_rules("br0", "10.1.0.0/16"),
            [
                "iifname \"br0\" oifname != { \"br0\", \"lo\" } ct direction original ct original ip saddr 10.1.0.0/16 update @traffic_out { ct original ip saddr . oifname counter }",
                "iifname \"br0\" oifname != { \"br0\", \"lo\" } ct direction reply ct reply ip saddr 10.1.0.0/16 update @traffic_out { ct reply ip saddr . oifname counter }",
            ]
        );
        // The accept does not depend on the update (which fails when the set is full).
        assert_eq!(
            in_chain_rules(false),
            [
                "update @traffic_in { ip daddr . iifname counter }",
                "accept"
            ]
        );
    }

    #[test]
    fn listing_round_trip_and_deletion() {
        // Captured from nftables 1.0.6 after packets created the elements.
        let doc = json!({"nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"set": {"family": "inet", "name": "traffic_out", "table": "t", "type": ["ipv4_addr", "ifname"],
                     "handle": 4, "size": 65535,
                     "elem": [{"elem": {"val": {"concat": ["172.39.0.2", "uplink0"]},
                                        "counter": {"packets": 4, "bytes": 336}}}]}},
            {"set": {"family": "inet", "name": "traffic_in", "table": "t", "type": ["ipv4_addr", "ifname"],
                     "handle": 5, "size": 65535,
                     "elem": [{"concat": ["172.39.0.3", "lan0"]}]}}]});
        let all = counted(&doc).unwrap();
        let out = Counted {
            pod: "172.39.0.2".parse().unwrap(),
            ifname: "uplink0".into(),
            dir: TrafficDir::Out,
            packets: 4,
            bytes: 336,
        };
        let bare = Counted {
            pod: "172.39.0.3".parse().unwrap(),
            ifname: "lan0".into(),
            dir: TrafficDir::In,
            packets: 0,
            bytes: 0,
        };
        assert_eq!(all, vec![out, bare]);
        assert_eq!(
            delete_script("t", &all),
            "delete element inet t traffic_out { 172.39.0.2 . \"uplink0\" }\n\
             delete element inet t traffic_in { 172.39.0.3 . \"lan0\" }\n"
        );
        let bad = json!({"nftables": [{"set": {"name": "traffic_in", "elem": [{"concat": ["172.39.0.3", 7]}]}}]});
        assert!(matches!(counted(&bad), Err(NftablesError::Parse { .. })));
    }
}
