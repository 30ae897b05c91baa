//! The agent's Prometheus metrics over HTTP, scraped inside the world's node namespace after
//! real ADDs and traffic: verdict counters, map fill, NAT ports, CNI call counts and latencies.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use common::*;
use serde_json::json;
use smarter_cni::agent::metrics::{MetricsSource, serve};
use smarter_cni::dns::stats::{Result as DnsResult, Transport};
use smarter_testbed::{CniCall, spawn_in};

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
}

#[test]
fn scrape_reports_the_datapath_and_cni_calls() {
    let Some(mut w) = world("metrics") else {
        return;
    };
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!("ebpf");
    let ns0 = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    let ns1 = w.add_pod_ns("pod1").unwrap().path().to_path_buf();
    add_ok(&w, &conf, "c0", &ns0);
    add_ok(&w, &conf, "c1", &ns1);
    assert_eq!(
        call(&w, &CniCall::new("DEL", &conf).pod("c1", &ns1)).status,
        0
    );
    let _srv = wan_roundtrip(&w, "pod0");

    let dns_stats = std::sync::Arc::new(smarter_cni::dns::DnsStats::default());
    for _ in 0..3 {
        dns_stats.record(Transport::Udp, DnsResult::NxDomain);
    }
    dns_stats.record(Transport::Tcp, DnsResult::Forwarded);
    let source = MetricsSource {
        network: "smartnet".into(),
        bpffs_dir: w.bpffs_dir().to_path_buf(),
        state_dir: w.state_dir(),
        dns: Some(dns_stats.clone()),
        datapath: None,
    };
    let text = spawn_in(w.node(), move || {
        let addr = serve("127.0.0.1:0".parse().unwrap(), source).unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .join()
    .unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"),
        "{text}"
    );
    let l = "{network=\"smartnet\"";
    assert!(
        sample(
            &text,
            &format!("smarter_verdict_packets_total{l},verdict=\"nat_out\"}}")
        ) > 0.0
    );
    assert_eq!(sample(&text, &format!("smarter_endpoints{l}}}")), 1.0);
    assert_eq!(
        sample(&text, &format!("smarter_endpoints_capacity{l}}}")),
        1024.0
    );
    assert!(
        sample(
            &text,
            &format!("smarter_conntrack_entries{l},table=\"out\"}}")
        ) >= 1.0
    );
    assert!(sample(&text, &format!("smarter_nat_ports_in_use{l}}}")) >= 1.0);
    assert_eq!(
        sample(&text, &format!("smarter_nat_ports_available{l}}}")),
        4000.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("smarter_cni_operations_total{l},op=\"ADD\",result=\"ok\"}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("smarter_cni_operations_total{l},op=\"DEL\",result=\"ok\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("smarter_cni_operation_duration_seconds_count{l},op=\"ADD\"}}")
        ),
        2.0
    );
    assert!(text.contains("smarter_cni_operation_duration_seconds_bucket"));
    assert_eq!(
        sample(
            &text,
            &format!("smarter_dns_queries_total{l},transport=\"udp\",result=\"nxdomain\"}}")
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("smarter_dns_queries_total{l},transport=\"tcp\",result=\"forwarded\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("smarter_dns_queries_total{l},transport=\"udp\",result=\"local\"}}")
        ),
        0.0
    );
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics terminator");
}
