//! Careful conntrack writes: nothing happens without `--yes`; the answer says what changed.

use super::Failure;
use super::cli::{CtAction, Filter, Format, print};
use super::rows::{WriteRow, proto_name};
use crate::datapath::EbpfDatapath;

/// `ct flush` and `ct delete`.
pub(super) fn ct(
    fmt: Format,
    nets: &[(String, EbpfDatapath)],
    action: &CtAction,
) -> Result<(), Failure> {
    let (filter, yes) = match action {
        CtAction::Flush { filter, yes } => (filter.clone(), *yes),
        CtAction::Delete {
            proto,
            pod,
            remote,
            yes,
        } => {
            if !matches!(proto.as_str(), "tcp" | "udp" | "icmp") {
                return Err(Failure::new(
                    2,
                    format!("--proto {proto}: not tcp, udp or icmp"),
                ));
            }
            let exact = Filter {
                proto: Some(proto.clone()),
                ..Filter::default()
            };
            let (pod, remote) = (*pod, *remote);
            let exact = &exact;
            return apply(
                fmt,
                nets,
                *yes,
                "delete",
                move |p, pip, pport, rip, rport| {
                    exact.matches(p, pip, pport, rip, rport, None)
                        && (pip, pport) == (*pod.ip(), pod.port())
                        && (rip, rport) == (*remote.ip(), remote.port())
                },
            );
        }
    };
    let filter = &filter;
    apply(fmt, nets, yes, "flush", move |p, pip, pport, rip, rport| {
        filter.matches(p, pip, pport, rip, rport, None)
    })
}

fn apply(
    fmt: Format,
    nets: &[(String, EbpfDatapath)],
    yes: bool,
    what: &str,
    doomed: impl Fn(u8, std::net::Ipv4Addr, u16, std::net::Ipv4Addr, u16) -> bool + Copy,
) -> Result<(), Failure> {
    let mut rows = Vec::new();
    for (name, dp) in nets {
        let matching: Vec<String> = dp
            .ct_entries()
            .map_err(|e| Failure::from_ebpf(name, &e))?
            .into_iter()
            .filter(|e| doomed(e.proto, e.pod_ip, e.pod_port, e.remote_ip, e.remote_port))
            .map(|e| {
                format!(
                    "{} {}:{} -> {}:{}",
                    proto_name(e.proto),
                    e.pod_ip,
                    e.pod_port,
                    e.remote_ip,
                    e.remote_port
                )
            })
            .collect();
        if !yes {
            return Err(Failure::new(
                2,
                format!(
                    "refusing to {what} without --yes: it would remove {} flow(s) of {name}{}",
                    matching.len(),
                    if matching.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", matching.join("; "))
                    }
                ),
            ));
        }
        let removed = dp
            .ct_remove(doomed)
            .map_err(|e| Failure::from_ebpf(name, &e))?;
        eprintln!("smarter-bpfctl: {name}: removed {removed} flow(s)");
        rows.push(WriteRow {
            network: name.clone(),
            removed_flows: removed,
        });
    }
    print(fmt, &rows)
}
