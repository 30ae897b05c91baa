//! hostPorts on every node address and `hostIP`, through the plugin, on both datapaths, in a
//! gateway with a LAN: a mapping without `hostIP` answers on the uplink and the LAN address;
//! two pods hold the same port on different `hostIP`s (the scheduler allows it) and each
//! answers only on its own; a third pod asking for the port on every address is refused.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use smarter_testbed::{CniCall, EchoServer, LAN_NODE_IP, NODE_UPLINK_IP, World, tcp_roundtrip};

const PORT: u16 = 18080;
const POD_PORT: u16 = 8080;

fn with_ports(conf: &Value, host_ip: Option<Ipv4Addr>) -> Value {
    let mut mapping = json!({"hostPort": PORT, "containerPort": POD_PORT, "protocol": "tcp"});
    if let Some(ip) = host_ip {
        mapping["hostIP"] = json!(ip.to_string());
    }
    let mut c = conf.clone();
    c["runtimeConfig"] = json!({"portMappings": [mapping]});
    c
}

fn answers(w: &World, from_lan: bool, to: Ipv4Addr) -> Result<(), String> {
    let from = if from_lan {
        w.lan().expect("lan")
    } else {
        w.wan()
    };
    tcp_roundtrip(
        from,
        SocketAddr::from((to, PORT)),
        b"hostport",
        Duration::from_secs(2),
    )
    .map(|_| ())
}

fn pod(
    w: &mut World,
    conf: &Value,
    name: &str,
    host_ip: Option<Ipv4Addr>,
) -> (Ipv4Addr, EchoServer) {
    let ns = w.add_pod_ns(name).unwrap().path().to_path_buf();
    let ip = result_ip(&add_ok(w, &with_ports(conf, host_ip), name, &ns));
    let srv = EchoServer::tcp(w.pod(name).unwrap(), ip, POD_PORT);
    (ip, srv)
}

fn del(w: &World, conf: &Value, name: &str) {
    let ns = w.pod(name).unwrap().path().to_path_buf();
    let out = call(w, &CniCall::new("DEL", conf).pod(name, Path::new(&ns)));
    assert_eq!(out.status, 0, "DEL {name}: {}", out.stderr);
}

fn host_ip(dp: &str) {
    let Some(mut w) = world(&format!("host_ip_{dp}")) else {
        return;
    };
    w.add_lan().expect("lan");
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!(dp);

    // Every node address: the wan reaches it on the uplink's, the LAN on the LAN's.
    let (_, _any) = pod(&mut w, &conf, "any", None);
    answers(&w, false, NODE_UPLINK_IP).unwrap_or_else(|e| panic!("{dp}: uplink: {e}"));
    answers(&w, true, LAN_NODE_IP).unwrap_or_else(|e| panic!("{dp}: LAN: {e}"));
    // The same port on one address collides with it.
    let ns = w.add_pod_ns("clash").unwrap().path().to_path_buf();
    let out = call(
        &w,
        &CniCall::new("ADD", &with_ports(&conf, Some(LAN_NODE_IP))).pod("clash", &ns),
    );
    assert_ne!(
        out.status, 0,
        "{dp}: a port on every address and on one collide"
    );
    assert!(
        out.stdout.contains(&PORT.to_string()),
        "{dp}: the error names the port: {}",
        out.stdout
    );
    del(&w, &conf, "clash");
    del(&w, &conf, "any");

    // One pod per address: each answers on its own only.
    let (wan_ip, wan_srv) = pod(&mut w, &conf, "wan-side", Some(NODE_UPLINK_IP));
    let (lan_ip, lan_srv) = pod(&mut w, &conf, "lan-side", Some(LAN_NODE_IP));
    assert_ne!(wan_ip, lan_ip);
    answers(&w, false, NODE_UPLINK_IP).unwrap_or_else(|e| panic!("{dp}: uplink: {e}"));
    answers(&w, true, LAN_NODE_IP).unwrap_or_else(|e| panic!("{dp}: LAN: {e}"));
    assert_eq!(
        wan_srv.seen().len(),
        1,
        "{dp}: the uplink's pod got the wan's flow"
    );
    assert_eq!(
        lan_srv.seen().len(),
        1,
        "{dp}: the LAN's pod got the sensor's flow"
    );
    // Not on the other address: the LAN's address from the LAN has no pod for the uplink's.
    del(&w, &conf, "lan-side");
    assert!(
        answers(&w, true, LAN_NODE_IP).is_err(),
        "{dp}: a hostIP mapping answered on another node address"
    );
    assert_eq!(
        wan_srv.seen().len(),
        1,
        "{dp}: nothing else reached the uplink's pod"
    );
    del(&w, &conf, "wan-side");
}

#[test]
fn ebpf() {
    host_ip("ebpf");
}

#[test]
fn nftables() {
    host_ip("nftables");
}
