//! Careful conntrack writes: the flows are chosen by listing first (with the same filters as
//! `ct`, NAT side included; IPv4 flows and dual-stack pods' NAT66 flows alike); nothing is
//! removed without `--yes`, and then exactly the listed flows are removed (a flow that
//! appeared meanwhile is left alone) and named in the answer.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use super::Failure;
use super::args::{CtAction, Format, Proto};
use super::discover::Net;
use super::output::print;
use super::rows::{WriteRow, proto_name};
use crate::datapath::CtEntryView;

/// The identity of a flow: protocol, pod side, remote side.
type FlowKey = (u8, IpAddr, u16, IpAddr, u16);

/// `ct flush` and `ct delete`.
pub(super) fn ct(fmt: Format, nets: &[&Net], action: &CtAction) -> Result<(), Failure> {
    match action {
        CtAction::Flush { filter, yes } => apply(fmt, nets, *yes, "flush", &|k, nat| {
            filter.matches(k.0, (k.1, k.2), (k.3, k.4), Some(nat))
        }),
        CtAction::Delete {
            proto,
            pod,
            remote,
            yes,
        } => {
            let key = exact_key(*proto, *pod, *remote)?;
            let exact = |k: &FlowKey, _: (IpAddr, u16)| *k == key;
            let total: usize = nets
                .iter()
                .map(|n| listed(n, &exact).map(|keys| keys.len()))
                .sum::<Result<usize, Failure>>()?;
            if total == 0 {
                return Err(Failure::new(
                    1,
                    format!(
                        "no {} flow {pod} -> {remote} in the selected network(s); nothing changed",
                        proto_name(key.0)
                    ),
                ));
            }
            apply(fmt, nets, *yes, "delete", &exact)
        }
    }
}

/// The flow `ct delete` names; both sides of one family.
fn exact_key(proto: Proto, pod: SocketAddr, remote: SocketAddr) -> Result<FlowKey, Failure> {
    if pod.is_ipv4() != remote.is_ipv4() {
        return Err(Failure::new(
            1,
            format!(
                "--pod {pod} and --remote {remote} are of different address families; nothing \
                 changed"
            ),
        ));
    }
    Ok((
        proto.number_in(pod.is_ipv6()),
        pod.ip(),
        pod.port(),
        remote.ip(),
        remote.port(),
    ))
}

fn flow_key<A: Into<IpAddr> + Copy>(e: &CtEntryView<A>) -> FlowKey {
    (
        e.proto,
        e.pod_ip.into(),
        e.pod_port,
        e.remote_ip.into(),
        e.remote_port,
    )
}

fn describe(k: &FlowKey) -> String {
    let side = |ip: IpAddr, port: u16| SocketAddr::new(ip, port).to_string();
    format!(
        "{} {} -> {}",
        proto_name(k.0),
        side(k.1, k.2),
        side(k.3, k.4)
    )
}

/// What picks a flow: its key and its NAT side (address, port).
type Chooser<'a> = &'a dyn Fn(&FlowKey, (IpAddr, u16)) -> bool;

/// The flows of `n` (IPv4 and NAT66) `chosen` picks, sorted, without repeats.
fn listed(n: &Net, chosen: Chooser<'_>) -> Result<Vec<FlowKey>, Failure> {
    let fail = |e: &crate::datapath::DatapathError| Failure::from_err(&n.name, e);
    let mut keys: Vec<FlowKey> =
        n.dp.flows()
            .map_err(|e| fail(&e))?
            .unwrap_or_default()
            .iter()
            .filter(|e| chosen(&flow_key(e), (e.nat_ip.into(), e.nat_port)))
            .map(flow_key)
            .collect();
    keys.extend(
        n.dp.flows6()
            .map_err(|e| fail(&e))?
            .unwrap_or_default()
            .iter()
            .filter(|e| chosen(&flow_key(e), (e.nat_ip.into(), e.nat_port)))
            .map(flow_key),
    );
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

fn apply(
    fmt: Format,
    nets: &[&Net],
    yes: bool,
    what: &str,
    chosen: Chooser<'_>,
) -> Result<(), Failure> {
    let mut plan = Vec::new();
    for n in nets {
        plan.push((n.name.as_str(), &n.dp, listed(n, chosen)?));
    }
    if !yes {
        let listed: Vec<String> = plan
            .iter()
            .map(|(name, _, keys)| {
                let flows: Vec<String> = keys.iter().map(describe).collect();
                format!(
                    "{} flow(s) of {name}{}",
                    keys.len(),
                    if flows.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", flows.join("; "))
                    }
                )
            })
            .collect();
        return Err(Failure::new(
            2,
            format!(
                "refusing to {what} without --yes; nothing changed. It would remove {}",
                listed.join(", ")
            ),
        ));
    }
    let mut rows = Vec::new();
    for (name, dp, keys) in plan {
        let doomed: HashSet<FlowKey> = keys.iter().copied().collect();
        let pick = |p: u8, pip: IpAddr, pport: u16, rip: IpAddr, rport: u16| {
            doomed.contains(&(p, pip, pport, rip, rport))
        };
        let mut removed = dp
            .forget_flows(&|p, pip, pport, rip, rport| {
                pick(p, pip.into(), pport, rip.into(), rport)
            })
            .map_err(|e| Failure::from_err(name, &e))?;
        if keys.iter().any(|k| k.1.is_ipv6()) {
            removed += dp
                .forget_flows6(&|p, pip, pport, rip, rport| {
                    pick(p, pip.into(), pport, rip.into(), rport)
                })
                .map_err(|e| Failure::from_err(name, &e))?;
        }
        let flows: Vec<String> = keys.iter().map(describe).collect();
        eprintln!(
            "smarter-bpfctl: {name}: removed {removed} flow(s){}",
            if flows.is_empty() {
                String::new()
            } else {
                format!(": {}", flows.join("; "))
            }
        );
        rows.push(WriteRow {
            network: name.to_string(),
            removed_flows: removed,
            flows,
        });
    }
    print(fmt, &rows)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use super::{Proto, describe, exact_key};

    #[test]
    fn delete_names_one_flow_of_one_family() {
        let v4: SocketAddr = "172.39.0.5:40000".parse().unwrap();
        let v6: SocketAddr = "[fd00:ac27::5]:7".parse().unwrap();
        let remote6: SocketAddr = "[2001:db8::53]:0".parse().unwrap();
        let err = exact_key(Proto::Udp, v4, remote6).unwrap_err();
        assert_eq!(err.code, 1);
        assert!(
            err.message.contains("different address families"),
            "{}",
            err.message
        );
        let key = exact_key(Proto::Icmp, v6, remote6).unwrap();
        assert_eq!(key.0, 58, "ICMP between IPv6 addresses is ICMPv6");
        assert_eq!(key.1, "fd00:ac27::5".parse::<IpAddr>().unwrap());
        assert_eq!(
            describe(&key),
            "icmpv6 [fd00:ac27::5]:7 -> [2001:db8::53]:0"
        );
        let key4 = exact_key(Proto::Icmp, v4, "203.0.113.1:0".parse().unwrap()).unwrap();
        assert_eq!(describe(&key4), "icmp 172.39.0.5:40000 -> 203.0.113.1:0");
    }
}
