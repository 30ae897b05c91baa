//! Every error class of `NetConf::parse`: code and a message naming key and value.

use serde_json::{Value, json};

use super::{parse, with};
use crate::cni::{CniError, NetConf};

/// Asserts that `extra` added to a minimal config fails with code 7 and exactly `msg`.
fn assert_invalid(cases: &[(Value, &str)]) {
    for (extra, msg) in cases {
        let err = parse(&with(extra.clone())).unwrap_err();
        assert_eq!(
            (err.code, err.msg.as_str()),
            (CniError::INVALID_CONFIG, *msg),
            "{extra}"
        );
    }
}

#[test]
fn json_and_version_errors() {
    let err = NetConf::parse(b"{\"cniVersion\": ").unwrap_err();
    assert_eq!(err.code, CniError::DECODE);
    assert!(
        err.msg.starts_with("network config is not valid JSON: EOF"),
        "{}",
        err.msg
    );
    let err = NetConf::parse(b"[1]").unwrap_err();
    assert_eq!(
        (err.code, err.msg.as_str()),
        (6, "network config [1] is not a JSON object")
    );
    let err = parse(&json!({"type": "smarter-cni"})).unwrap_err();
    assert_eq!((err.code, err.msg.as_str()), (7, "cniVersion is missing"));
    let err =
        parse(&json!({"cniVersion": "0.3.1", "type": "smarter-cni", "bogus": 1})).unwrap_err();
    assert_eq!(err.code, CniError::INCOMPATIBLE_VERSION);
    assert!(err.msg.contains("\"0.3.1\""), "{}", err.msg);
}

#[test]
fn unknown_keys_are_code_2_named_with_values() {
    let err = parse(&with(json!({"ipam": {"type": "host-local"}}))).unwrap_err();
    assert_eq!(err.code, CniError::UNSUPPORTED_FIELD);
    assert_eq!(err.msg, "unknown network config key \"ipam\"");
    assert_eq!(err.details, "\"ipam\": {\"type\":\"host-local\"}");
    let err = parse(&with(json!({"zeta": 1, "alpha": "x"}))).unwrap_err();
    assert_eq!(err.msg, "unknown network config keys \"alpha\", \"zeta\"");
    assert_eq!(err.details, "\"alpha\": \"x\", \"zeta\": 1");
}

#[test]
fn foreign_plugin_config_reports_the_type() {
    let err = parse(&json!({"cniVersion": "1.0.0", "type": "bridge", "ipam": {}})).unwrap_err();
    assert_eq!(
        (err.code, err.msg.as_str()),
        (7, "type \"bridge\" is not \"smarter-cni\"")
    );
}

#[test]
fn identity_errors() {
    assert_invalid(&[
        (
            json!({"type": "bridge"}),
            "type \"bridge\" is not \"smarter-cni\"",
        ),
        (json!({"type": null}), "type is missing"),
        (
            json!({"name": "-net"}),
            "name \"-net\" contains '-' at byte 0, must start with an ASCII letter or digit \
             followed by letters, digits, '_', '.' or '-'",
        ),
        (json!({"name": 5}), "name 5 is a number, expected a string"),
        (
            json!({"bridge": "smartnet-bridge0"}),
            "bridge \"smartnet-bridge0\" is not a valid interface name: \
             it is 16 bytes long (at most 15 allowed)",
        ),
        (
            json!({"uplink": "eth0:1"}),
            "uplink \"eth0:1\" is not \"auto\" or a valid interface name: it contains ':' at byte 4, \
             interface names must not contain '/', ':', NUL or whitespace",
        ),
    ]);
}

#[test]
fn addressing_errors() {
    assert_invalid(&[
        (
            json!({"subnet": "10.0.0.0/33"}),
            "subnet \"10.0.0.0/33\" is not an IPv4 CIDR",
        ),
        (
            json!({"subnet": "fd00::/64"}),
            "subnet \"fd00::/64\" is not an IPv4 CIDR",
        ),
        (
            json!({"subnet": "10.0.0.5/16"}),
            "subnet \"10.0.0.5/16\" has host bits set (the network is 10.0.0.0/16)",
        ),
        (
            json!({"subnet": "10.0.0.0/31"}),
            "subnet \"10.0.0.0/31\" is too small (the prefix must be /30 or shorter)",
        ),
        (
            json!({"gateway": "10.0.0.1"}),
            "gateway \"10.0.0.1\" is outside subnet 172.39.0.0/16",
        ),
        (
            json!({"gateway": "172.39.0.0"}),
            "gateway \"172.39.0.0\" is the network address of subnet 172.39.0.0/16",
        ),
        (
            json!({"gateway": "172.39.255.255"}),
            "gateway \"172.39.255.255\" is the broadcast address of subnet 172.39.0.0/16",
        ),
        (
            json!({"gateway": "x"}),
            "gateway \"x\" is not an IPv4 address",
        ),
        (
            json!({"denyCIDRs": ["10.0.0.0/8", "x"]}),
            "denyCIDRs[1] \"x\" is not an IPv4 CIDR",
        ),
        (
            json!({"denyCIDRs": ["10.0.0.1/8"]}),
            "denyCIDRs[0] \"10.0.0.1/8\" has host bits set (the network is 10.0.0.0/8)",
        ),
        (
            json!({"denyCIDRs": "10.0.0.0/8"}),
            "denyCIDRs \"10.0.0.0/8\" is a string, expected an array",
        ),
        (
            json!({"dns": {"nameservers": ["dns.example"]}}),
            "dns.nameservers[0] \"dns.example\" is not an IP address",
        ),
        (json!({"dns": []}), "dns [] is not an object"),
        (
            json!({"args": {"cni": {"ips": ["10.0.0.300"]}}}),
            "args.cni.ips[0] \"10.0.0.300\" is not an IP address or CIDR",
        ),
    ]);
}

#[test]
fn scalar_errors() {
    assert_invalid(&[
        (
            json!({"nodeDns": "169.254.0.300"}),
            "nodeDns \"169.254.0.300\" is not an IPv4 unicast address or \"off\"",
        ),
        (
            json!({"nodeDns": "224.0.0.1"}),
            "nodeDns \"224.0.0.1\" is not an IPv4 unicast address or \"off\"",
        ),
        (
            json!({"clusterDomain": "bad domain"}),
            "clusterDomain \"bad domain\" is not a DNS name (labels of letters, digits and '-', at most 253 characters)",
        ),
        (
            json!({"nat64Prefix": "2001:db8::/64"}),
            "nat64Prefix \"2001:db8::/64\" is not a /96 (the only NAT64 prefix length the CLAT translates)",
        ),
        (
            json!({"nat64Prefix": "on"}),
            "nat64Prefix \"on\" is not an IPv6 CIDR, \"auto\" or \"off\"",
        ),
        (json!({"mtu": 67}), "mtu 67 is not an integer in 68..=65535"),
        (
            json!({"mtu": 65536}),
            "mtu 65536 is not an integer in 68..=65535",
        ),
        (
            json!({"mtu": 1500.5}),
            "mtu 1500.5 is not an integer in 68..=65535",
        ),
        (
            json!({"hairpinMode": "true"}),
            "hairpinMode \"true\" is a string, expected a boolean",
        ),
        (
            json!({"ipMasq": 1}),
            "ipMasq 1 is a number, expected a boolean",
        ),
        (
            json!({"datapath": "xdp"}),
            "datapath \"xdp\" is not one of \"auto\", \"ebpf\", \"nftables\", \"iptables\"",
        ),
        (
            json!({"tcAttach": "TCX"}),
            "tcAttach \"TCX\" is not one of \"auto\", \"tcx\", \"netlink\"",
        ),
        (
            json!({"dataDir": "var/run"}),
            "dataDir \"var/run\" is not an absolute path",
        ),
        (
            json!({"stateDir": ""}),
            "stateDir \"\" is not an absolute path",
        ),
        (
            json!({"dataDir": "/etc/cni/net.d"}),
            "dataDir \"/etc/cni/net.d\" is inside a system tree (/etc, /usr, /boot, /dev, /proc...)",
        ),
        (
            json!({"stateDir": "/var/lib/../../etc"}),
            "stateDir \"/var/lib/../../etc\" contains `.` or `..` components",
        ),
        (
            json!({"bpffsDir": 1}),
            "bpffsDir 1 is a number, expected a string",
        ),
        (
            json!({"ctTimeouts": {"udp": 0}}),
            "ctTimeouts.udp 0 is not a number of seconds in 1..=604800",
        ),
        (
            json!({"ctTimeouts": {"sctp": 5}}),
            "ctTimeouts.sctp 5 is not one of tcpEstablished, tcpOther, udp, icmp",
        ),
        (
            json!({"ctTimeouts": 5}),
            "ctTimeouts 5 is not an object of seconds",
        ),
        (
            json!({"ctMaxEntries": 1023}),
            "ctMaxEntries 1023 is not an integer in 1024..=4194304",
        ),
        (
            json!({"ctMaxEntries": 4_194_305}),
            "ctMaxEntries 4194305 is not an integer in 1024..=4194304",
        ),
    ]);
}

#[test]
fn structure_errors() {
    assert_invalid(&[
        (
            json!({"args": []}),
            "args [] is an array, expected an object",
        ),
        (
            json!({"capabilities": true}),
            "capabilities true is a boolean, expected an object",
        ),
        (
            json!({"runtimeConfig": 1}),
            "runtimeConfig 1 is not an object",
        ),
        (
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 0}]}}),
            "runtimeConfig.portMappings[0].containerPort 0 is not an integer in 1..=65535",
        ),
        (
            json!({"cni.dev/valid-attachments": [{"ifname": "eth0"}]}),
            "cni.dev/valid-attachments[0].containerID is missing",
        ),
        (
            json!({"cni.dev/valid-attachments": {}}),
            "cni.dev/valid-attachments {} is an object, expected an array",
        ),
    ]);
}

#[test]
fn nat_port_range_forms() {
    const WHY: &str =
        "is not a port range \"a-b\" or {\"start\": a, \"end\": b} with 1024 <= a <= b <= 65535";
    for bad in [
        json!("100-200"),
        json!("2000-1500"),
        json!("2000"),
        json!("2000-70000"),
        json!({"start": 2000}),
        json!({"start": 2000, "end": 3000, "step": 1}),
        json!(5),
    ] {
        let err = parse(&with(json!({"natPortRange": bad.clone()}))).unwrap_err();
        assert_eq!(
            (err.code, err.msg.clone()),
            (7, format!("natPortRange {bad} {WHY}"))
        );
    }
    let conf = parse(&with(json!({"natPortRange": "20000-20010"}))).unwrap();
    assert_eq!(conf.nat_port_range.to_string(), "20000-20010");
}
