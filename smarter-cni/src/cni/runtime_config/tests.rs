use serde_json::json;

use super::*;

fn parse(value: Value) -> Result<RuntimeConfig, CniError> {
    RuntimeConfig::from_value(&value, "smartnet")
}

#[test]
fn all_capabilities() {
    let config = parse(json!({
        "portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "TCP"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.168.1.10"},
            {"hostPort": 9000, "containerPort": 9000, "hostIP": ""}
        ],
        "ips": ["fd00::5/64", "172.39.0.9/16", "172.39.0.10"],
        "mac": "c2:11:22:33:44:55",
        "aliases": {"smartnet": ["db", "primary-db"], "other": ["x"]},
        "dns": {"servers": ["10.96.0.10"], "searches": ["svc.cluster.local"], "options": ["ndots:5"]},
        "bandwidth": {"ingressRate": 1}
    }))
    .unwrap();
    assert_eq!(
        config.port_mappings,
        vec![
            PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None
            },
            PortMapping {
                host_port: 5353,
                container_port: 53,
                protocol: Protocol::Udp,
                host_ip: Some("192.168.1.10".parse().unwrap()),
            },
            PortMapping {
                host_port: 9000,
                container_port: 9000,
                protocol: Protocol::Tcp,
                host_ip: None
            },
        ]
    );
    assert_eq!(
        config.ips,
        vec![Ipv4Addr::new(172, 39, 0, 9), Ipv4Addr::new(172, 39, 0, 10)]
    );
    assert_eq!(
        config.mac,
        Some(MacAddr([0xc2, 0x11, 0x22, 0x33, 0x44, 0x55]))
    );
    assert_eq!(
        config.aliases,
        vec!["db".to_owned(), "primary-db".to_owned()]
    );
    let dns = config.dns.unwrap();
    assert_eq!(dns.servers, vec!["10.96.0.10".parse::<IpAddr>().unwrap()]);
    assert_eq!((dns.searches.len(), dns.options.len()), (1, 1));
}

#[test]
fn empty_and_list_aliases() {
    assert_eq!(parse(json!({})).unwrap(), RuntimeConfig::default());
    assert_eq!(
        parse(json!({"aliases": ["a"]})).unwrap().aliases,
        vec!["a".to_owned()]
    );
    assert!(
        parse(json!({"aliases": {"other": ["a"]}}))
            .unwrap()
            .aliases
            .is_empty()
    );
}

fn tcp(host_port: u16, container_port: u16) -> PortMapping {
    PortMapping {
        host_port,
        container_port,
        protocol: Protocol::Tcp,
        host_ip: None,
    }
}

/// Keys as Go's `encoding/json` matches them: containerd (go-cni) sends Go field names.
#[test]
fn port_mapping_keys_as_go_decodes_them() {
    let udp_on = |host_port, container_port, ip: &str| PortMapping {
        host_port,
        container_port,
        protocol: Protocol::Udp,
        host_ip: Some(ip.parse().unwrap()),
    };
    let cases = [
        (
            "camelCase (the conventions)",
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]}),
            vec![tcp(8080, 80)],
        ),
        (
            "Go field names (containerd's go-cni)",
            json!({"portMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}]}),
            vec![tcp(8080, 80)],
        ),
        (
            "Go field names with a host address",
            json!({"portMappings": [{"HostPort": 53, "ContainerPort": 5353, "Protocol": "UDP", "HostIP": "10.0.0.1"}]}),
            vec![udp_on(53, 5353, "10.0.0.1")],
        ),
        (
            "mixed case, capability name included",
            json!({"PORTMAPPINGS": [{"hostport": 1, "CONTAINERPORT": 2, "pRoToCoL": "udp", "hostIp": "10.0.0.2"}]}),
            vec![udp_on(1, 2, "10.0.0.2")],
        ),
        (
            "duplicates: the later key wins (exact first)",
            json!({"portMappings": [{"hostPort": 1, "HostPort": 2, "containerPort": 3}]}),
            vec![tcp(2, 3)],
        ),
        (
            "duplicates: the later key wins (folded first)",
            json!({"portMappings": [{"HostPort": 2, "hostPort": 1, "containerPort": 3}]}),
            vec![tcp(1, 3)],
        ),
        (
            "duplicates: null does not overwrite (Go leaves an int alone)",
            json!({"portMappings": [{"hostPort": 4, "HostPort": null, "containerPort": 3}]}),
            vec![tcp(4, 3)],
        ),
        (
            "duplicate capability names: the later list replaces the earlier",
            json!({"portMappings": [{"hostPort": 1, "containerPort": 1}], "PortMappings": [{"hostPort": 2, "containerPort": 2}]}),
            vec![tcp(2, 2)],
        ),
        (
            "unknown keys inside an entry are ignored, as by Go",
            json!({"portMappings": [{"HostPort": 5, "ContainerPort": 6, "Name": "web", "hostPortX": 9}]}),
            vec![tcp(5, 6)],
        ),
    ];
    for (what, value, want) in cases {
        let got = parse(value).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got.port_mappings, want, "{what}");
    }
}

#[test]
fn kelvin_sign_and_long_s_fold() {
    // "hostPort" has no k or s; "options" and "servers" do.
    let config = parse(
        json!({"dns": {"\u{17F}ervers": ["10.0.0.1"], "optionſ": ["ndots:1"]},
                              "mac\u{212A}": "c2:00:00:00:00:01"}),
    )
    .unwrap();
    let dns = config.dns.unwrap();
    assert_eq!(dns.servers, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(dns.options, vec!["ndots:1".to_owned()]);
    // "mac" + KELVIN SIGN is "mack": not a key we know.
    assert_eq!(config.mac, None);
    assert!(super::super::json::go_key_matches("\u{212A}ey", "key"));
    assert!(!super::super::json::go_key_matches("kéy", "key"));
    assert!(!super::super::json::go_key_matches("hostPor", "hostPort"));
    assert!(!super::super::json::go_key_matches("hostPortt", "hostPort"));
}

/// Every other capability decodes the same way.
#[test]
fn other_capabilities_as_go_decodes_them() {
    let mac = Some(MacAddr([0xc2, 0, 0, 0, 0, 1]));
    let dns = |servers: &[&str], searches: &[&str], options: &[&str]| {
        Some(RuntimeDns {
            servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
            searches: searches.iter().map(|s| (*s).to_owned()).collect(),
            options: options.iter().map(|s| (*s).to_owned()).collect(),
        })
    };
    let cases = [
        (
            "camelCase",
            json!({"ips": ["172.39.0.9/16"], "mac": "c2:00:00:00:00:01", "aliases": {"smartnet": ["a"]},
                   "dns": {"servers": ["10.0.0.10"], "searches": ["svc"], "options": ["ndots:5"]}}),
            vec![Ipv4Addr::new(172, 39, 0, 9)],
            mac,
            vec!["a"],
            dns(&["10.0.0.10"], &["svc"], &["ndots:5"]),
        ),
        (
            "Go field names (go-cni's DNS has no JSON tags)",
            json!({"IPs": ["172.39.0.9"], "MAC": "c2:00:00:00:00:01", "Aliases": ["a"],
                   "DNS": {"Servers": ["10.0.0.10"], "Searches": ["svc"], "Options": ["ndots:5"], "Domain": "x"}}),
            vec![Ipv4Addr::new(172, 39, 0, 9)],
            mac,
            vec!["a"],
            dns(&["10.0.0.10"], &["svc"], &["ndots:5"]),
        ),
        (
            "network names in an aliases object are map keys: exact only",
            json!({"aliases": {"SmartNet": ["no"], "smartnet": ["yes"]}}),
            vec![],
            None,
            vec!["yes"],
            None,
        ),
        (
            "duplicates: later scalars and lists win",
            json!({"mac": "c2:00:00:00:00:09", "Mac": "c2:00:00:00:00:01", "ips": ["172.39.0.1"], "IPS": ["172.39.0.9"]}),
            vec![Ipv4Addr::new(172, 39, 0, 9)],
            mac,
            vec![],
            None,
        ),
        (
            "duplicate dns objects merge like a Go struct decoded twice",
            json!({"dns": {"servers": ["10.0.0.1"], "searches": ["a"]}, "Dns": {"Searches": ["b"], "options": ["x"]}}),
            vec![],
            None,
            vec![],
            dns(&["10.0.0.1"], &["b"], &["x"]),
        ),
    ];
    for (what, value, ips, want_mac, aliases, want_dns) in cases {
        let got = parse(value).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got.ips, ips, "{what}");
        assert_eq!(got.mac, want_mac, "{what}");
        assert_eq!(got.aliases, aliases, "{what}");
        assert_eq!(got.dns, want_dns, "{what}");
    }
}

/// Errors in Go-named keys still name the path (by our name for the field).
#[test]
fn go_named_errors() {
    let cases = [
        (
            json!({"portMappings": [{"HostPort": 0, "ContainerPort": 80}]}),
            "runtimeConfig.portMappings[0].hostPort 0 is not an integer in 1..=65535",
        ),
        (
            json!({"PortMappings": [{"HostPort": 80}]}),
            "runtimeConfig.portMappings[0].containerPort is missing",
        ),
        (
            json!({"DNS": {"Servers": ["x"]}}),
            "runtimeConfig.dns.servers[0] \"x\" is not an IP address",
        ),
        (
            json!({"dns": {"servers": ["10.0.0.1"]}, "DNS": "x"}),
            "runtimeConfig.dns \"x\" is a string, expected an object",
        ),
    ];
    for (value, msg) in cases {
        let err = parse(value).unwrap_err();
        assert_eq!(
            (err.code, err.msg.as_str()),
            (CniError::INVALID_CONFIG, msg)
        );
    }
}

#[test]
fn errors_name_path_and_value() {
    let cases = [
        (
            json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]}),
            "runtimeConfig.portMappings[0].hostPort 0 is not an integer in 1..=65535",
        ),
        (
            json!({"portMappings": [{"hostPort": 80, "containerPort": 70000}]}),
            "runtimeConfig.portMappings[0].containerPort 70000 is not an integer in 1..=65535",
        ),
        (
            json!({"portMappings": [{"hostPort": 80}]}),
            "runtimeConfig.portMappings[0].containerPort is missing",
        ),
        (
            json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "sctp"}]}),
            "runtimeConfig.portMappings[0].protocol \"sctp\" is not \"tcp\" or \"udp\"",
        ),
        (
            json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "h"}]}),
            "runtimeConfig.portMappings[0].hostIP \"h\" is not an IP address",
        ),
        (
            json!({"portMappings": ["80:80"]}),
            "runtimeConfig.portMappings[0] \"80:80\" is not an object",
        ),
        (
            json!({"ips": ["10.0.0.300"]}),
            "runtimeConfig.ips[0] \"10.0.0.300\" is not an IP address or CIDR",
        ),
        (
            json!({"mac": "01:00:5e:00:00:01"}),
            "runtimeConfig.mac \"01:00:5e:00:00:01\" is not a unicast address",
        ),
        (
            json!({"mac": "00:00:00:00:00:00"}),
            "runtimeConfig.mac \"00:00:00:00:00:00\" is not a unicast address",
        ),
        (
            json!({"mac": "c2:11"}),
            "runtimeConfig.mac \"c2:11\" is not a MAC address",
        ),
        (
            json!({"aliases": "db"}),
            "runtimeConfig.aliases \"db\" is not a list or an object of lists",
        ),
        (
            json!({"aliases": {"smartnet": [1]}}),
            "runtimeConfig.aliases.smartnet[0] 1 is not a string",
        ),
        (
            json!({"dns": {"servers": ["x"]}}),
            "runtimeConfig.dns.servers[0] \"x\" is not an IP address",
        ),
    ];
    for (value, msg) in cases {
        let err = parse(value).unwrap_err();
        assert_eq!(
            (err.code, err.msg.as_str()),
            (CniError::INVALID_CONFIG, msg)
        );
    }
}
