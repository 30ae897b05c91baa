//! Careful conntrack writes: the flows are chosen by listing first (with the same filters as
//! `ct`, NAT side included); nothing is removed without `--yes`, and then exactly the listed
//! flows are removed (a flow that appeared meanwhile is left alone) and named in the answer.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::Failure;
use super::args::{CtAction, Format};
use super::discover::Net;
use super::output::print;
use super::rows::{WriteRow, proto_name};
use crate::datapath::CtEntryView;

/// The identity of a flow: protocol, pod side, remote side.
type FlowKey = (u8, Ipv4Addr, u16, Ipv4Addr, u16);

/// `ct flush` and `ct delete`.
pub(super) fn ct(fmt: Format, nets: &[&Net], action: &CtAction) -> Result<(), Failure> {
    match action {
        CtAction::Flush { filter, yes } => {
            apply(fmt, nets, *yes, "flush", |e| filter.matches_view(e))
        }
        CtAction::Delete {
            proto,
            pod,
            remote,
            yes,
        } => {
            let key: FlowKey = (
                proto.number(),
                *pod.ip(),
                pod.port(),
                *remote.ip(),
                remote.port(),
            );
            let exact = |e: &CtEntryView| flow_key(e) == key;
            let total: usize = nets
                .iter()
                .map(|n| {
                    n.dp.flows()
                        .map(|all| all.unwrap_or_default().iter().filter(|e| exact(e)).count())
                        .map_err(|e| Failure::from_err(&n.name, &e))
                })
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
            apply(fmt, nets, *yes, "delete", exact)
        }
    }
}

fn flow_key(e: &CtEntryView) -> FlowKey {
    (e.proto, e.pod_ip, e.pod_port, e.remote_ip, e.remote_port)
}

fn describe(k: &FlowKey) -> String {
    format!("{} {}:{} -> {}:{}", proto_name(k.0), k.1, k.2, k.3, k.4)
}

fn apply(
    fmt: Format,
    nets: &[&Net],
    yes: bool,
    what: &str,
    chosen: impl Fn(&CtEntryView) -> bool,
) -> Result<(), Failure> {
    let mut plan = Vec::new();
    for n in nets {
        let mut keys: Vec<FlowKey> =
            n.dp.flows()
                .map_err(|e| Failure::from_err(&n.name, &e))?
                .unwrap_or_default()
                .iter()
                .filter(|e| chosen(e))
                .map(flow_key)
                .collect();
        keys.sort_unstable();
        keys.dedup();
        plan.push((n.name.as_str(), &n.dp, keys));
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
        let removed = dp
            .forget_flows(&|p, pip, pport, rip, rport| {
                doomed.contains(&(p, pip, pport, rip, rport))
            })
            .map_err(|e| Failure::from_err(name, &e))?;
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
