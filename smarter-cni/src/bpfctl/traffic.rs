//! `traffic`: what each pod sent and received through each external interface (metered
//! links), from the datapath's per-pod counters, pods named by its endpoint rows (as
//! `endpoints` names them); with `--interval`, rates between two samples.

use std::time::Duration;

use super::Failure;
use super::args::TrafficArgs;
use super::discover::{Net, collect};
use super::rows::TrafficRow;
use crate::datapath::DatapathError;

/// The rows of every network matching `args`, each network's in its datapath's order (pod,
/// interface, direction); with an interval, the second sample with rates.
///
/// # Errors
///
/// A [`Failure`] when a network's counters or endpoints cannot be read.
pub(super) fn rows(nets: &[Net], args: &TrafficArgs) -> Result<Vec<TrafficRow>, Failure> {
    let sample = || collect(nets, |n| network_rows(n, args));
    let first = sample()?;
    let Some(secs) = args.interval.filter(|s| *s > 0.0) else {
        return Ok(first);
    };
    std::thread::sleep(Duration::from_secs_f64(secs));
    let mut second = sample()?;
    add_rates(&first, &mut second, secs);
    Ok(second)
}

/// The rows of one network matching `args`.
fn network_rows(n: &Net, args: &TrafficArgs) -> Result<Vec<TrafficRow>, DatapathError> {
    let traffic = n.dp.pod_traffic()?;
    let endpoints = n.dp.endpoint_rows(&n.name, &n.records)?;
    let mut rows = TrafficRow::of(&n.name, &traffic, &endpoints);
    rows.retain(|r| matches(args, r));
    Ok(rows)
}

/// Whether a row passes the `--pod` and `--interface` filters.
fn matches(args: &TrafficArgs, r: &TrafficRow) -> bool {
    args.pod.is_none_or(|p| r.pod_ip == p.to_string())
        && args.interface.as_deref().is_none_or(|i| r.interface == i)
}

/// Fills in the rates of `now` against `before`, `secs` apart; a row new in `now` (or whose
/// counters restarted: a new pod on the address) counts from zero.
fn add_rates(before: &[TrafficRow], now: &mut [TrafficRow], secs: f64) {
    for r in now {
        let earlier = before.iter().find(|b| {
            (&b.network, &b.pod_ip, b.ifindex, b.direction)
                == (&r.network, &r.pod_ip, r.ifindex, r.direction)
        });
        let (p0, b0) = earlier
            .filter(|b| b.packets <= r.packets && b.bytes <= r.bytes)
            .map_or((0, 0), |b| (b.packets, b.bytes));
        r.packets_per_s = Some((r.packets - p0) as f64 / secs);
        r.bytes_per_s = Some((r.bytes - b0) as f64 / secs);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::bpfctl::args::Format;
    use crate::bpfctl::output::render;
    use crate::bpfctl::rows::{EndpointRow, UplinkRow, interface_name};
    use crate::datapath::{PodTraffic, TrafficDir};

    fn endpoint(ip: &str, ns: &str, name: &str) -> EndpointRow {
        EndpointRow {
            network: "smartnet".into(),
            ip: ip.into(),
            mac: "02:00:00:00:00:01".into(),
            host_ifname: "smv1".into(),
            host_ifindex: 9,
            pod_namespace: ns.into(),
            pod_name: name.into(),
            container_id: "c".into(),
            packets: None,
            bytes: None,
        }
    }

    fn traffic(pod: [u8; 4], ifindex: u32, name: Option<&str>, dir: TrafficDir) -> PodTraffic {
        PodTraffic {
            pod: Ipv4Addr::from(pod),
            ifindex,
            ifname: name.map(str::to_string),
            dir,
            packets: 3,
            bytes: 300,
        }
    }

    fn sample() -> Vec<TrafficRow> {
        let t = [
            traffic([172, 39, 0, 2], 3, Some("wwan0"), TrafficDir::Out),
            traffic([172, 39, 0, 2], 3, Some("wwan0"), TrafficDir::In),
            traffic([172, 39, 0, 9], 7, None, TrafficDir::Out),
        ];
        TrafficRow::of("smartnet", &t, &[endpoint("172.39.0.2", "shop", "web-0")])
    }

    #[test]
    fn rows_name_pods_and_interfaces() {
        let rows = sample();
        assert_eq!(rows.len(), 3);
        let r = &rows[0];
        assert_eq!(
            (
                r.pod_namespace.as_str(),
                r.pod_name.as_str(),
                r.pod_ip.as_str()
            ),
            ("shop", "web-0", "172.39.0.2")
        );
        assert_eq!((r.interface.as_str(), r.ifindex), ("wwan0", 3));
        assert_eq!((r.direction, rows[1].direction), ("out", "in"));
        assert_eq!((r.packets, r.bytes), (3, 300));
        // No endpoint names 172.39.0.9 (a pod whose counters GC has not collected yet).
        let gone = &rows[2];
        assert_eq!(
            (gone.pod_namespace.as_str(), gone.pod_name.as_str()),
            ("", "")
        );
        assert_eq!(gone.interface, "ifindex 7 (gone)");
        assert_eq!(interface_name(7, Some("eth0")), "eth0");
    }

    #[test]
    fn json_fields_are_the_documented_schema() {
        let v = serde_json::to_value(&sample()[0]).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "network",
                "pod_namespace",
                "pod_name",
                "pod_ip",
                "interface",
                "ifindex",
                "direction",
                "packets",
                "bytes"
            ]
        );
    }

    #[test]
    fn table_has_a_column_per_field() {
        let text = render(Format::Table, &sample()).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NETWORK",
                "POD_NAMESPACE",
                "POD_NAME",
                "POD_IP",
                "INTERFACE",
                "IFINDEX",
                "DIRECTION",
                "PACKETS",
                "BYTES"
            ]
        );
        let first: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            first,
            [
                "smartnet",
                "shop",
                "web-0",
                "172.39.0.2",
                "wwan0",
                "3",
                "out",
                "3",
                "300"
            ]
        );
        assert!(text.contains("ifindex 7 (gone)"), "{text}");
        assert_eq!(
            render(Format::Table, &[] as &[TrafficRow]).unwrap(),
            "(none)"
        );
    }

    #[test]
    fn filters_pick_pod_and_interface() {
        let rows = sample();
        let by = |pod: Option<[u8; 4]>, interface: Option<&str>| {
            let args = TrafficArgs {
                pod: pod.map(Ipv4Addr::from),
                interface: interface.map(str::to_string),
                interval: None,
            };
            rows.iter().filter(|r| matches(&args, r)).count()
        };
        assert_eq!(by(None, None), 3);
        assert_eq!(by(Some([172, 39, 0, 2]), None), 2);
        assert_eq!(by(None, Some("wwan0")), 2);
        assert_eq!(by(Some([172, 39, 0, 9]), Some("wwan0")), 0);
        assert_eq!(by(None, Some("ifindex 7 (gone)")), 1);
    }

    #[test]
    fn rates_count_from_the_first_sample() {
        let before = sample();
        let mut now = sample();
        now[0].packets += 10;
        now[0].bytes += 1000;
        now[1].packets = 1; // counters restarted (another pod on the address)
        now[1].bytes = 100;
        add_rates(&before[..2], &mut now, 2.0);
        assert_eq!(
            (now[0].packets_per_s, now[0].bytes_per_s),
            (Some(5.0), Some(500.0))
        );
        assert_eq!(
            (now[1].packets_per_s, now[1].bytes_per_s),
            (Some(0.5), Some(50.0))
        );
        // Not in the first sample: everything counted in the interval.
        assert_eq!(
            (now[2].packets_per_s, now[2].bytes_per_s),
            (Some(1.5), Some(150.0))
        );
        let v = serde_json::to_value(&now[0]).unwrap();
        assert_eq!(v["bytes_per_s"], 500.0);
    }

    #[test]
    fn uplink_rows_say_none_gone_and_default_route() {
        let up = UplinkRow::new(
            3,
            Some("uplink0".into()),
            Ipv4Addr::new(198, 51, 100, 2),
            false,
            1500,
            true,
        );
        assert_eq!(
            up.describe(),
            "uplink0 (ifindex 3): NAT to 198.51.100.2, ethernet, mtu 1500, default route"
        );
        let modem = UplinkRow::new(5, None, Ipv4Addr::UNSPECIFIED, true, 1428, false);
        assert_eq!(modem.addr, None);
        assert_eq!(
            modem.describe(),
            "ifindex 5 (gone): NAT to none, l3, mtu 1428"
        );
        let v = serde_json::to_value(&modem).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ifname": null, "ifindex": 5, "addr": null, "link": "l3",
                               "mtu": 1428, "default_route": false, "egress": true,
                               "clat": null})
        );
        let cellular = UplinkRow::new(
            6,
            Some("wwan0".into()),
            Ipv4Addr::new(192, 0, 0, 1),
            true,
            1500,
            false,
        )
        .with_clat(
            "2001:db8::c1a7".parse().unwrap(),
            "64:ff9b::".parse().unwrap(),
        );
        assert_eq!(
            cellular.describe(),
            "wwan0 (ifindex 6): NAT to 192.0.0.1 then the CLAT 2001:db8::c1a7 -> 64:ff9b::/96, l3, mtu 1500"
        );
        let lan = UplinkRow::new(
            4,
            Some("lan0".into()),
            Ipv4Addr::new(192, 168, 50, 1),
            false,
            1500,
            false,
        )
        .replies_only();
        assert_eq!(
            lan.describe(),
            "lan0 (ifindex 4): not selected, replies only from 192.168.50.1, ethernet, mtu 1500"
        );
    }
}
