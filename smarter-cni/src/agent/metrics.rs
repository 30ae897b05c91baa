//! Prometheus metrics of the agent, read fresh from the datapath (eBPF: its pinned maps) and
//! the plugin's [`crate::opstats`] on every scrape (nothing is cached, so a restarted agent
//! reports the datapath's own totals). Served as OpenMetrics text on `GET /metrics` by a small
//! `tiny_http` server on its own thread; localhost by default.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `smarter_verdict_packets_total`, `smarter_verdict_bytes_total` | counter | `verdict` |
//! | `smarter_pod_interface_packets_total`, `smarter_pod_interface_bytes_total` | counter | `namespace`, `pod`, `interface`, `direction` (`out`, `in`) |
//! | `smarter_endpoints`, `smarter_endpoints_capacity` | gauge | |
//! | `smarter_conntrack_entries`, `smarter_conntrack_capacity` | gauge | `table` (`out`, `in`) |
//! | `smarter_hostports` | gauge | |
//! | `smarter_nat_ports_in_use`, `smarter_nat_ports_available` | gauge | |
//! | `smarter_cni_operations_total` | counter | `op`, `result` |
//! | `smarter_cni_operation_duration_seconds` | histogram | `op` |
//! | `smarter_datapath_info` (always 1) | gauge | `datapath` (`ebpf`, `nftables`), `reason` (`configured`, `auto`, `no_bpffs`, `permission`, `load`) |
//! | `smarter_dns_queries_total` (agent with `--dns`) | counter | `transport` (`udp`, `tcp`), `result` (`local`, `nxdomain`, `forwarded`, `servfail`, `error`, `dropped`) |
//!
//! Every metric also carries the `network` label. The datapath metrics come from the datapath
//! the agent chose (else the recorded choice, else eBPF's pins), through the seam.
//!
//! The per-pod counters are [`crate::datapath::Datapath::pod_traffic`]: what each pod sent
//! (`out`) and received (`in`) through each external interface since its ADD. `pod` is the
//! pod's name, or its address when no endpoint names it (a pod without Kubernetes names, or
//! counters the GC has not collected yet); `interface` is the name, or `ifindex N (gone)`.
//! Samples with the same labels are summed, so a series is never duplicated.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::datapath::rows::TrafficRow;
use crate::datapath::{self, ChoiceRecord, DatapathChoice, DatapathKind};
use crate::opstats;

/// Where the metrics come from.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    /// CNI network name.
    pub network: String,
    /// Pin root (`bpffsDir`).
    pub bpffs_dir: PathBuf,
    /// `stateDir` (the plugin's operation statistics).
    pub state_dir: PathBuf,
    /// The DNS server's counters, when the agent serves DNS.
    pub dns: Option<Arc<crate::dns::DnsStats>>,
    /// The datapath the agent chose ([`crate::agent::control::open_choosing`]); `None`: the
    /// choice recorded in `<stateDir>/<network>/datapath.choice`, if any.
    pub datapath: Option<DatapathChoice>,
}

#[derive(Debug)]
struct DatapathCollector(MetricsSource);

/// A histogram from bucket counts the plugin recorded.
#[derive(Debug)]
struct ConstHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<()>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type Labels = Vec<(&'static str, String)>;

fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, M)],
) -> Result<(), std::fmt::Error> {
    let Some((_, first)) = samples.first() else {
        return Ok(());
    };
    let mut fam = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, metric) in samples {
        metric.encode(fam.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for DatapathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let src = &self.0;
        let net = || vec![("network", src.network.clone())];
        let choice = src
            .datapath
            .as_ref()
            .map(DatapathChoice::record)
            .or_else(|| ChoiceRecord::load(&src.state_dir, &src.network));
        let kind = choice
            .as_ref()
            .and_then(|c| DatapathKind::parse(&c.datapath).ok())
            .unwrap_or(DatapathKind::Ebpf);
        if let Some(c) = choice {
            let mut labels = net();
            labels.push(("datapath", c.datapath));
            labels.push(("reason", c.reason));
            family(
                &mut encoder,
                "smarter_datapath_info",
                "The datapath serving the network and why (reason: configured, auto, or why \
                 eBPF is unavailable: no_bpffs, permission, load)",
                &[(labels, ConstGauge::new(1_i64))],
            )?;
        }
        let conf = crate::cni::NetConf {
            name: src.network.clone(),
            bpffs_dir: src.bpffs_dir.clone(),
            state_dir: src.state_dir.clone(),
            ..crate::cni::NetConf::default()
        };
        if let Ok(Some(dp)) = datapath::open_existing(&conf, kind) {
            if let Ok(stats) = dp.counters() {
                let with = |v: &str| {
                    let mut l = net();
                    l.push(("verdict", v.to_string()));
                    l
                };
                let packets: Vec<_> = stats
                    .iter()
                    .map(|(v, p, _)| (with(v), ConstCounter::new(*p)))
                    .collect();
                let bytes: Vec<_> = stats
                    .iter()
                    .map(|(v, _, b)| (with(v), ConstCounter::new(*b)))
                    .collect();
                family(
                    &mut encoder,
                    "smarter_verdict_packets",
                    "Packets per datapath verdict",
                    &packets,
                )?;
                family(
                    &mut encoder,
                    "smarter_verdict_bytes",
                    "Bytes per datapath verdict",
                    &bytes,
                )?;
            }
            if let Ok(fill) = dp.fill() {
                let gauge = |n: usize| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
                let mut entries: Vec<(&str, Labels, ConstGauge)> = Vec::new();
                let mut capacity: Vec<(&str, Labels, ConstGauge)> = Vec::new();
                for m in &fill {
                    let (name, table) = match m.map {
                        smarter_common::maps::ENDPOINTS => ("smarter_endpoints", None),
                        smarter_common::maps::CT_OUT => ("smarter_conntrack", Some("out")),
                        smarter_common::maps::CT_IN => ("smarter_conntrack", Some("in")),
                        smarter_common::maps::HOSTPORTS => ("smarter_hostports", None),
                        _ => continue,
                    };
                    let mut labels = net();
                    if let Some(t) = table {
                        labels.push(("table", t.to_string()));
                    }
                    entries.push((name, labels.clone(), gauge(m.entries)));
                    capacity.push((name, labels, gauge(m.capacity as usize)));
                }
                for name in [
                    "smarter_endpoints",
                    "smarter_conntrack",
                    "smarter_hostports",
                ] {
                    let pick =
                        |v: &mut Vec<(&str, Labels, ConstGauge)>| -> Vec<(Labels, ConstGauge)> {
                            let (mine, rest): (Vec<_>, Vec<_>) =
                                v.drain(..).partition(|(n, _, _)| *n == name);
                            *v = rest;
                            mine.into_iter().map(|(_, l, g)| (l, g)).collect()
                        };
                    let metric = if name == "smarter_conntrack" {
                        "smarter_conntrack_entries".to_string()
                    } else {
                        name.to_string()
                    };
                    family(
                        &mut encoder,
                        &metric,
                        "Entries in the datapath map",
                        &pick(&mut entries),
                    )?;
                    family(
                        &mut encoder,
                        &format!("{name}_capacity"),
                        "Capacity of the datapath map",
                        &pick(&mut capacity),
                    )?;
                }
            }
            if let Ok(Some((in_use, available))) = dp.nat_ports() {
                let gauge = |n: usize| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
                family(
                    &mut encoder,
                    "smarter_nat_ports_in_use",
                    "Distinct (protocol, NAT port) pairs held by flows",
                    &[(net(), gauge(in_use))],
                )?;
                family(
                    &mut encoder,
                    "smarter_nat_ports_available",
                    "Ports in the NAT range (per protocol)",
                    &[(net(), gauge(available))],
                )?;
            }
            if let Ok(traffic) = dp.pod_traffic() {
                let records = src.state_dir.join(&src.network);
                // Unnamed pods are labelled by address rather than left out.
                let endpoints = dp.endpoint_rows(&src.network, &records).unwrap_or_default();
                let rows = TrafficRow::of(&src.network, &traffic, &endpoints);
                encode_pod_traffic(&mut encoder, &rows)?;
            }
        }
        if let Ok(ops) = opstats::load(&src.state_dir, &src.network) {
            let mut counts = Vec::new();
            let mut hists = Vec::new();
            for (op, c) in &ops.ops {
                for (result, n) in [("ok", c.ok), ("failed", c.failed)] {
                    let mut l = net();
                    l.push(("op", op.clone()));
                    l.push(("result", result.to_string()));
                    counts.push((l, ConstCounter::new(n)));
                }
                let mut l = net();
                l.push(("op", op.clone()));
                let mut buckets: Vec<(f64, u64)> = opstats::BUCKETS
                    .iter()
                    .copied()
                    .chain([f64::MAX])
                    .zip(c.buckets.iter().copied().chain(std::iter::repeat(0)))
                    .collect();
                buckets.truncate(opstats::BUCKETS.len() + 1);
                hists.push((
                    l,
                    ConstHistogram {
                        sum: c.seconds_sum,
                        count: c.ok + c.failed,
                        buckets,
                    },
                ));
            }
            family(
                &mut encoder,
                "smarter_cni_operations",
                "CNI calls by verb and result",
                &counts,
            )?;
            family(
                &mut encoder,
                "smarter_cni_operation_duration_seconds",
                "CNI call latency",
                &hists,
            )?;
        }
        if let Some(dns) = &src.dns {
            let samples: Vec<_> = dns
                .snapshot()
                .into_iter()
                .map(|(t, r, n)| {
                    let mut l = net();
                    l.push(("transport", t.name().to_string()));
                    l.push(("result", r.name().to_string()));
                    (l, ConstCounter::new(n))
                })
                .collect();
            family(
                &mut encoder,
                "smarter_dns_queries",
                "DNS queries by transport and how they ended",
                &samples,
            )?;
        }
        Ok(())
    }
}

/// Packets and bytes of `traffic` rows by the labels of the per-pod metrics (see the module
/// docs), summed where labels coincide.
fn pod_interface_totals(rows: &[TrafficRow]) -> BTreeMap<Labels, (u64, u64)> {
    let mut out: BTreeMap<Labels, (u64, u64)> = BTreeMap::new();
    for r in rows {
        let pod = if r.pod_name.is_empty() {
            &r.pod_ip
        } else {
            &r.pod_name
        };
        let labels = vec![
            ("network", r.network.clone()),
            ("namespace", r.pod_namespace.clone()),
            ("pod", pod.clone()),
            ("interface", r.interface.clone()),
            ("direction", r.direction.to_string()),
        ];
        let sum = out.entry(labels).or_default();
        sum.0 = sum.0.saturating_add(r.packets);
        sum.1 = sum.1.saturating_add(r.bytes);
    }
    out
}

/// `smarter_pod_interface_packets_total` and `smarter_pod_interface_bytes_total` of `rows`.
fn encode_pod_traffic(
    encoder: &mut DescriptorEncoder,
    rows: &[TrafficRow],
) -> Result<(), std::fmt::Error> {
    let totals = pod_interface_totals(rows);
    let packets: Vec<_> = totals
        .iter()
        .map(|(l, (p, _))| (l.clone(), ConstCounter::new(*p)))
        .collect();
    let bytes: Vec<_> = totals
        .into_iter()
        .map(|(l, (_, b))| (l, ConstCounter::new(b)))
        .collect();
    family(
        encoder,
        "smarter_pod_interface_packets",
        "Packets per pod, external interface and direction (out: sent by the pod, in: \
         received by it), since the pod's ADD",
        &packets,
    )?;
    family(
        encoder,
        "smarter_pod_interface_bytes",
        "Bytes per pod, external interface and direction, as the interface saw them (eBPF: \
         skb->len, with the Ethernet header on Ethernet devices)",
        &bytes,
    )
}

/// The metrics text for `source`, as one scrape would return it.
///
/// # Errors
///
/// A formatting error from the encoder.
pub fn render(source: &MetricsSource) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(DatapathCollector(source.clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// Serves `GET /metrics` on `addr` from a background thread until the process ends. Returns
/// the bound address (port 0 picks a free one).
///
/// # Errors
///
/// When the address cannot be bound.
pub fn serve(addr: SocketAddr, source: MetricsSource) -> std::io::Result<SocketAddr> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("metrics server is not on an IP address"))?;
    let source = Arc::new(source);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    match render(&source) {
                        Ok(text) => tiny_http::Response::from_string(text).with_header(
                            tiny_http::Header::from_bytes(
                                &b"Content-Type"[..],
                                &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                            )
                            .expect("static header"),
                        ),
                        Err(e) => {
                            let mut msg = String::new();
                            let _ = write!(msg, "encoding failed: {e}");
                            tiny_http::Response::from_string(msg).with_status_code(500)
                        }
                    }
                } else {
                    tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                };
                if let Err(e) = request.respond(response) {
                    tracing::debug!("metrics response: {e}");
                }
            }
        })?;
    tracing::info!("metrics on http://{bound}/metrics");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::datapath::rows::EndpointRow;
    use crate::datapath::{PodTraffic, TrafficDir};

    /// web-0 (named) out and in through wwan0; an unnamed pod through a gone interface, twice
    /// under the same labels.
    fn rows() -> Vec<TrafficRow> {
        let t = |pod: [u8; 4], ifindex, ifname: Option<&str>, dir, packets| PodTraffic {
            pod: Ipv4Addr::from(pod),
            ifindex,
            ifname: ifname.map(str::to_string),
            dir,
            packets,
            bytes: packets * 100,
        };
        let traffic = [
            t([172, 39, 0, 2], 3, Some("wwan0"), TrafficDir::Out, 5),
            t([172, 39, 0, 2], 3, Some("wwan0"), TrafficDir::In, 4),
            t([172, 39, 0, 3], 4, None, TrafficDir::Out, 2),
            t([172, 39, 0, 3], 4, None, TrafficDir::Out, 1),
        ];
        let web0 = EndpointRow {
            network: "smartnet".into(),
            ip: "172.39.0.2".into(),
            mac: String::new(),
            host_ifname: "smv1".into(),
            host_ifindex: 9,
            pod_namespace: "shop".into(),
            pod_name: "web-0".into(),
            container_id: "c".into(),
            packets: None,
            bytes: None,
        };
        TrafficRow::of("smartnet", &traffic, &[web0])
    }

    #[derive(Debug)]
    struct Rows(Vec<TrafficRow>);

    impl Collector for Rows {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode_pod_traffic(&mut encoder, &self.0)
        }
    }

    fn encoded(rows: Vec<TrafficRow>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Rows(rows)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn pod_counters_are_labelled_summed_and_encoded_as_totals() {
        let text = encoded(rows());
        let l = "{network=\"smartnet\",namespace=";
        for line in [
            "# TYPE smarter_pod_interface_packets counter".to_string(),
            "# TYPE smarter_pod_interface_bytes counter".to_string(),
            format!(
                "smarter_pod_interface_packets_total{l}\"shop\",pod=\"web-0\",\
                 interface=\"wwan0\",direction=\"out\"}} 5"
            ),
            format!(
                "smarter_pod_interface_bytes_total{l}\"shop\",pod=\"web-0\",\
                 interface=\"wwan0\",direction=\"in\"}} 400"
            ),
            // Unnamed: labelled by address; the two rows summed into one series.
            format!(
                "smarter_pod_interface_bytes_total{l}\"\",pod=\"172.39.0.3\",\
                 interface=\"ifindex 4 (gone)\",direction=\"out\"}} 300"
            ),
        ] {
            assert!(text.lines().any(|x| x == line), "{line} not in:\n{text}");
        }
        assert_eq!(text.matches("pod=\"172.39.0.3\"").count(), 2, "{text}");
        // No traffic: no family at all (not an empty one).
        assert!(!encoded(Vec::new()).contains("smarter_pod_interface"));
    }
}
