use serde_json::json;

use super::*;
use crate::cni::{MacAddr, PortMapping, Protocol};

mod errors;

pub(super) fn parse(value: &Value) -> Result<NetConf, CniError> {
    NetConf::parse(value.to_string().as_bytes())
}

/// The smallest accepted config, plus `extra` keys.
pub(super) fn with(extra: Value) -> Value {
    let mut conf = json!({"cniVersion": "1.1.0", "type": "smarter-cni"});
    let Value::Object(extra) = extra else {
        panic!("extra keys must be an object")
    };
    for (key, value) in extra {
        conf[key] = value;
    }
    conf
}

#[test]
fn minimal_config_gets_every_default_in_each_version() {
    for (text, version) in [
        ("0.4.0", Version::V040),
        ("1.0.0", Version::V100),
        ("1.1.0", Version::V110),
    ] {
        let conf = parse(&json!({"cniVersion": text, "type": "smarter-cni"})).unwrap();
        assert_eq!(
            conf,
            NetConf {
                cni_version: version,
                ..NetConf::default()
            }
        );
    }
    let d = NetConf::default();
    assert_eq!(
        (d.name.as_str(), d.bridge.as_str()),
        ("smartnet", "smartnet0")
    );
    assert_eq!(
        (d.subnet.to_string(), d.gateway.to_string()),
        ("172.39.0.0/16".into(), "172.39.0.1".into())
    );
    assert_eq!(
        (d.mtu, d.hairpin_mode, d.datapath, d.tc_attach),
        (None, true, DatapathMode::Auto, TcAttachMode::Auto)
    );
    assert_eq!(d.uplink, UplinkSelector::Auto);
    assert_eq!(d.data_dir, PathBuf::from("/var/run/cni/networks"));
    assert_eq!(d.state_dir, PathBuf::from("/var/lib/smarter-cni"));
    assert_eq!(d.bpffs_dir, PathBuf::from("/sys/fs/bpf/smarter-cni"));
    assert_eq!(
        (d.nat_port_range.to_string(), d.ct_max_entries),
        ("61000-64999".into(), 65536)
    );
    assert!(d.deny_cidrs.is_empty() && d.valid_attachments.is_none() && d.prev_result.is_none());
}

#[test]
fn full_config() {
    let conf = parse(&json!({
        "cniVersion": "1.0.0",
        "cniVersions": ["1.0.0", "1.1.0"],
        "name": "edge-net.1",
        "type": "smarter-cni",
        "args": {"labels": {"app": "x"}},
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}], "mac": "02:00:00:00:00:09"},
        "dns": {"nameservers": ["10.1.0.1", "fd00::1"], "domain": "local", "search": ["a"], "options": ["ndots:2"]},
        "ipMasq": true,
        "disableCheck": false,
        "cni.dev/some-future-key": 1,
        "bridge": "br-edge",
        "subnet": "10.1.0.0/24",
        "gateway": "10.1.0.254",
        "mtu": 1400,
        "hairpinMode": false,
        "datapath": "iptables",
        "tcAttach": "netlink",
        "uplink": "wlan0",
        "dataDir": "/tmp/data",
        "stateDir": "/tmp/state",
        "bpffsDir": "/sys/fs/bpf/x",
        "denyCIDRs": ["169.254.169.254/32", "192.168.0.0/16", "10.9.9.9"],
        "natPortRange": {"start": 40000, "end": 40100},
        "ctMaxEntries": 1024,
        "ctTimeouts": {"udp": 20, "tcpEstablished": 7200}
    }))
    .unwrap();
    assert_eq!(conf.cni_version, Version::V100);
    assert_eq!(conf.name, "edge-net.1");
    assert_eq!(conf.args, Some(json!({"labels": {"app": "x"}})));
    assert_eq!(conf.capabilities.get("portMappings"), Some(&json!(true)));
    assert_eq!(
        conf.runtime_config.port_mappings,
        vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: None
        }]
    );
    assert_eq!(conf.runtime_config.mac, Some(MacAddr([2, 0, 0, 0, 0, 9])));
    assert_eq!(conf.dns.nameservers.len(), 2);
    assert_eq!(conf.dns.domain.as_deref(), Some("local"));
    assert_eq!(conf.ip_masq, Some(true));
    assert_eq!(
        (conf.bridge.as_str(), conf.subnet.to_string()),
        ("br-edge", "10.1.0.0/24".into())
    );
    assert_eq!(conf.gateway, Ipv4Addr::new(10, 1, 0, 254));
    assert_eq!((conf.mtu, conf.hairpin_mode), (Some(1400), false));
    assert_eq!(
        (conf.datapath, conf.tc_attach),
        (DatapathMode::Nftables, TcAttachMode::Netlink)
    );
    assert_eq!(conf.uplink, UplinkSelector::Named("wlan0".into()));
    assert_eq!(
        (conf.data_dir.to_str(), conf.state_dir.to_str()),
        (Some("/tmp/data"), Some("/tmp/state"))
    );
    assert_eq!(conf.bpffs_dir, PathBuf::from("/sys/fs/bpf/x"));
    assert_eq!(conf.deny_cidrs.len(), 3);
    assert_eq!(conf.deny_cidrs[2].prefix(), 32);
    assert_eq!(
        conf.nat_port_range,
        PortRange {
            start: 40000,
            end: 40100
        }
    );
    assert_eq!(conf.ct_max_entries, 1024);
    assert_eq!(
        conf.ct_timeouts,
        crate::cni::CtTimeoutsConf {
            tcp_established: 7200,
            udp: 20,
            ..crate::cni::CtTimeoutsConf::DEFAULT
        }
    );
}

#[test]
fn gateway_defaults_to_first_host_of_subnet() {
    let conf = parse(&with(json!({"subnet": "192.168.7.0/24"}))).unwrap();
    assert_eq!(conf.gateway, Ipv4Addr::new(192, 168, 7, 1));
    let conf = parse(&with(
        json!({"natPortRange": "1024-1024", "subnet": "10.0.0.0/30"}),
    ))
    .unwrap();
    assert_eq!(
        (conf.gateway, conf.nat_port_range),
        (
            Ipv4Addr::new(10, 0, 0, 1),
            PortRange {
                start: 1024,
                end: 1024
            }
        )
    );
}

#[test]
fn gc_attachments_both_spellings() {
    let list =
        json!([{"containerID": "abc", "ifname": "eth0"}, {"containerID": "def", "ifname": "net1"}]);
    for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
        let conf = parse(&with(json!({key: list.clone()}))).unwrap();
        let got = conf.valid_attachments.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            ValidAttachment {
                container_id: "def".into(),
                ifname: "net1".into()
            }
        );
    }
    let conf = parse(&with(json!({"cni.dev/valid-attachments": []}))).unwrap();
    assert_eq!(conf.valid_attachments, Some(vec![]));
}

#[test]
fn prev_result_kept_and_typed_in_config_version() {
    let prev = json!({
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/p"}],
        "ips": [{"version": "4", "address": "172.39.0.7/16", "gateway": "172.39.0.1", "interface": 0}]
    });
    let conf =
        parse(&json!({"cniVersion": "0.4.0", "type": "smarter-cni", "prevResult": prev})).unwrap();
    assert_eq!(conf.prev_result.as_ref(), Some(&prev));
    let typed = conf.prev_result_typed().unwrap().unwrap();
    assert_eq!(typed.to_json(conf.cni_version), prev);
    assert_eq!(
        parse(&with(json!({}))).unwrap().prev_result_typed(),
        Ok(None)
    );
    let bad = parse(&with(json!({"prevResult": {"ips": [{"address": "x"}]}}))).unwrap();
    assert_eq!(bad.prev_result_typed().unwrap_err().code, CniError::DECODE);
}

#[test]
fn requested_ip_precedence() {
    let args = CniArgs {
        ip: Some(Ipv4Addr::new(172, 39, 0, 30)),
        ..CniArgs::default()
    };
    let conf = parse(&with(json!({}))).unwrap();
    assert_eq!(
        conf.requested_ip(&args),
        Some(Ipv4Addr::new(172, 39, 0, 30))
    );
    let conf = parse(&with(
        json!({"args": {"cni": {"ips": ["fd00::1", "172.39.0.20/16"]}}}),
    ))
    .unwrap();
    assert_eq!(
        conf.requested_ip(&args),
        Some(Ipv4Addr::new(172, 39, 0, 20))
    );
    let conf = parse(&with(json!({
        "args": {"cni": {"ips": ["172.39.0.20"]}},
        "runtimeConfig": {"ips": ["172.39.0.10/16"]}
    })))
    .unwrap();
    assert_eq!(
        conf.requested_ip(&args),
        Some(Ipv4Addr::new(172, 39, 0, 10))
    );
    let conf = parse(&with(json!({"args": {"cni": "x", "other": 1}}))).unwrap();
    assert_eq!(conf.requested_ip(&CniArgs::default()), None);
}

#[test]
fn runtime_aliases_use_our_network_name() {
    let conf = parse(&with(json!({
        "name": "edge",
        "runtimeConfig": {"aliases": {"edge": ["web"], "smartnet": ["no"]}, "unknownCap": {"x": 1}}
    })))
    .unwrap();
    assert_eq!(conf.runtime_config.aliases, vec!["web".to_owned()]);
}

#[test]
fn null_values_mean_default() {
    let conf = parse(&with(
        json!({"mtu": null, "subnet": null, "runtimeConfig": null}),
    ))
    .unwrap();
    assert_eq!(conf, NetConf::default());
}

#[test]
fn result_dns_is_configured_or_node_local_or_none() {
    use std::net::IpAddr;
    // Default: the node-local DNS with the pod's search list.
    let d = parse(&with(json!({}))).unwrap().result_dns(Some("prod"));
    assert_eq!(d.nameservers, [IpAddr::V4(Ipv4Addr::new(169, 254, 0, 2))]);
    assert_eq!(
        d.search,
        [
            "prod.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local"
        ]
    );
    // Another address and domain (normalized).
    let conf = parse(&with(
        json!({"nodeDns": "172.39.0.1", "clusterDomain": "Edge.Example."}),
    ))
    .unwrap();
    assert_eq!(conf.cluster_domain, "edge.example");
    let d = conf.result_dns(None);
    assert_eq!(d.nameservers, [IpAddr::V4(Ipv4Addr::new(172, 39, 0, 1))]);
    assert_eq!(d.search, ["svc.edge.example", "edge.example"]);
    // An explicit `dns` object wins.
    let d = parse(&with(json!({"dns": {"nameservers": ["10.0.0.53"]}})))
        .unwrap()
        .result_dns(Some("prod"));
    assert_eq!(d.nameservers, ["10.0.0.53".parse::<IpAddr>().unwrap()]);
    assert!(d.search.is_empty());
    // "off" (or "") turns it off.
    for off in ["off", ""] {
        assert!(
            parse(&with(json!({"nodeDns": off})))
                .unwrap()
                .result_dns(Some("prod"))
                .is_empty()
        );
    }
}

#[test]
fn nat64_prefix_is_auto_fixed_or_off() {
    assert_eq!(
        parse(&with(json!({}))).unwrap().nat64_prefix,
        Nat64Prefix::Auto
    );
    assert_eq!(
        parse(&with(json!({"nat64Prefix": "auto"})))
            .unwrap()
            .nat64_prefix,
        Nat64Prefix::Auto
    );
    assert_eq!(
        parse(&with(json!({"nat64Prefix": "2001:db8:64:64::/96"})))
            .unwrap()
            .nat64_prefix,
        Nat64Prefix::Fixed("2001:db8:64:64::".parse().unwrap())
    );
    assert_eq!(
        parse(&with(json!({"nat64Prefix": "off"})))
            .unwrap()
            .nat64_prefix,
        Nat64Prefix::Off
    );
}

/// containerd (go-cni) sends Go field names; the whole config decodes as the reference
/// plugins decode it, and DEL's parse ignores a runtimeConfig it cannot read.
#[test]
fn containerd_port_mappings_and_lenient_del() {
    let conf = parse(&with(json!({
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}]}
    })))
    .unwrap();
    assert_eq!(
        conf.runtime_config.port_mappings,
        vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: None
        }]
    );
    let bad = with(json!({"runtimeConfig": {"portMappings": [{"HostPort": 0}]}}));
    let text = bad.to_string();
    let err = NetConf::parse_with(text.as_bytes(), RuntimeConfigErrors::Refuse).unwrap_err();
    assert_eq!(err.code, CniError::INVALID_CONFIG);
    let conf = NetConf::parse_with(text.as_bytes(), RuntimeConfigErrors::Ignore).unwrap();
    assert_eq!(conf, NetConf::default());
    // Only runtimeConfig is forgiven.
    let bad_subnet = with(json!({"subnet": "x"})).to_string();
    assert!(NetConf::parse_with(bad_subnet.as_bytes(), RuntimeConfigErrors::Ignore).is_err());
}

#[test]
fn mtu_auto_and_uplink_lists() {
    let conf = parse(&with(json!({"mtu": "auto", "uplink": ["eth0", "wwan0"]}))).unwrap();
    assert_eq!((conf.mtu, conf.mtu_auto), (None, true));
    let absent = parse(&with(json!({}))).unwrap();
    assert_eq!((absent.mtu, absent.mtu_auto), (None, true));
    let fixed = parse(&with(json!({"mtu": 1400}))).unwrap();
    assert_eq!((fixed.mtu, fixed.mtu_auto), (Some(1400), false));
    assert_eq!(
        conf.uplink,
        UplinkSelector::List(vec!["eth0".into(), "wwan0".into()])
    );
    let err = parse(&with(json!({"uplink": []}))).unwrap_err();
    assert!(err.to_string().contains("uplink"), "{err}");
    let err = parse(&with(json!({"uplink": ["eth0", "bad/name"]}))).unwrap_err();
    assert!(err.to_string().contains("uplink[1]"), "{err}");
    let err = parse(&with(json!({"mtu": "big"}))).unwrap_err();
    assert!(err.to_string().contains("mtu"), "{err}");
}
