use super::*;

fn sample() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "smartnet0".into(),
                mac: Some(MacAddr([0x02, 0, 0, 0, 0, 1])),
                mtu: Some(1500),
                ..Interface::default()
            },
            Interface {
                name: "eth0".into(),
                mac: Some(MacAddr([0x02, 0, 0, 0, 0, 2])),
                sandbox: Some("/var/run/netns/pod".into()),
                mtu: Some(1450),
                socket_path: Some("/run/x.sock".into()),
                pci_id: Some("0000:04:00.5".into()),
            },
        ],
        ips: vec![IpConfig {
            address: "172.39.0.5/16".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(172, 39, 0, 1).into()),
            interface: Some(1),
        }],
        routes: vec![Route {
            mtu: Some(1400),
            advmss: Some(1360),
            priority: Some(10),
            table: Some(100),
            scope: Some(0),
            ..Route::new(
                "0.0.0.0/0".parse().unwrap(),
                Some(Ipv4Addr::new(172, 39, 0, 1).into()),
            )
        }],
        dns: Dns {
            nameservers: vec!["10.96.0.10".parse().unwrap()],
            domain: Some("cluster.local".into()),
            search: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        },
    }
}

fn dns_json() -> Value {
    json!({
        "nameservers": ["10.96.0.10"],
        "domain": "cluster.local",
        "search": ["default.svc.cluster.local"],
        "options": ["ndots:5"]
    })
}

#[test]
fn json_v040() {
    assert_eq!(
        sample().to_json(Version::V040),
        json!({
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name": "smartnet0", "mac": "02:00:00:00:00:01"},
                {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/pod"}
            ],
            "ips": [{"version": "4", "address": "172.39.0.5/16", "gateway": "172.39.0.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "172.39.0.1"}],
            "dns": dns_json()
        })
    );
}

#[test]
fn json_v100() {
    assert_eq!(
        sample().to_json(Version::V100),
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "smartnet0", "mac": "02:00:00:00:00:01"},
                {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/pod"}
            ],
            "ips": [{"address": "172.39.0.5/16", "gateway": "172.39.0.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "172.39.0.1"}],
            "dns": dns_json()
        })
    );
}

#[test]
fn json_v110() {
    assert_eq!(
        sample().to_json(Version::V110),
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "smartnet0", "mac": "02:00:00:00:00:01", "mtu": 1500},
                {
                    "name": "eth0",
                    "mac": "02:00:00:00:00:02",
                    "sandbox": "/var/run/netns/pod",
                    "mtu": 1450,
                    "socketPath": "/run/x.sock",
                    "pciID": "0000:04:00.5"
                }
            ],
            "ips": [{"address": "172.39.0.5/16", "gateway": "172.39.0.1", "interface": 1}],
            "routes": [{
                "dst": "0.0.0.0/0",
                "gw": "172.39.0.1",
                "mtu": 1400,
                "advmss": 1360,
                "priority": 10,
                "table": 100,
                "scope": 0
            }],
            "dns": dns_json()
        })
    );
}

#[test]
fn empty_result_is_just_the_version() {
    assert_eq!(
        CniResult::default().to_json(Version::V110),
        json!({"cniVersion": "1.1.0"})
    );
}

/// `result` without the fields that only 1.1.0 defines.
fn without_v110_fields(mut result: CniResult) -> CniResult {
    for iface in &mut result.interfaces {
        (iface.mtu, iface.socket_path, iface.pci_id) = (None, None, None);
    }
    for route in &mut result.routes {
        *route = Route::new(route.dst, route.gw);
    }
    result
}

#[test]
fn round_trip_every_version() {
    let full = sample();
    for (version, expected) in [
        (Version::V040, without_v110_fields(sample())),
        (Version::V100, without_v110_fields(sample())),
        (Version::V110, sample()),
    ] {
        let parsed = CniResult::from_prev_result(&full.to_json(version), version).unwrap();
        assert_eq!(parsed, expected, "{version}");
    }
}

#[test]
fn prev_result_with_or_without_ip_version() {
    let with = json!({"cniVersion": "1.0.0", "ips": [{"version": "4", "address": "10.0.0.5/24"}]});
    let without = json!({"ips": [{"address": "10.0.0.5/24"}], "unknownKey": 1});
    for (value, version) in [
        (&with, Version::V100),
        (&without, Version::V040),
        (&with, Version::V040),
    ] {
        let parsed = CniResult::from_prev_result(value, version).unwrap();
        assert_eq!(
            parsed.ips[0].address,
            "10.0.0.5/24".parse::<IpNetwork>().unwrap()
        );
        assert_eq!(
            (parsed.ips[0].gateway, parsed.ips[0].interface),
            (None, None)
        );
    }
}

#[test]
fn prev_result_spec_example() {
    // The 0.4.0 example from the spec's "Network configuration list runtime examples".
    let value = json!({
        "ips": [{"version": "4", "address": "10.0.0.5/32", "interface": 2}],
        "interfaces": [
            {"name": "cni0", "mac": "00:11:22:33:44:55"},
            {"name": "veth3243", "mac": "55:44:33:22:11:11"},
            {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
        ],
        "dns": {"nameservers": ["10.1.0.1"]}
    });
    let parsed = CniResult::from_prev_result(&value, Version::V040).unwrap();
    assert_eq!(parsed.interfaces.len(), 3);
    assert_eq!(
        parsed.interfaces[2].sandbox.as_deref(),
        Some("/var/run/netns/blue")
    );
    assert_eq!(parsed.ips[0].interface, Some(2));
    let mut expected = value.clone();
    expected["cniVersion"] = json!("0.4.0");
    assert_eq!(parsed.to_json(Version::V040), expected);
}

#[test]
fn prev_result_errors_are_code_6_and_named() {
    let cases = [
        (json!([]), "prevResult [] is not an object"),
        (
            json!({"ips": [{"address": "fd00::2/644"}]}),
            "prevResult.ips[0].address \"fd00::2/644\" is not an IP CIDR",
        ),
        (
            json!({"ips": [{"version": "6", "address": "10.0.0.1/8"}]}),
            "prevResult.ips[0].version \"6\" is not the family of address 10.0.0.1/8 (\"4\")",
        ),
        (
            json!({"ips": [{"version": "4", "address": "fd00::2/64"}]}),
            "prevResult.ips[0].version \"4\" is not the family of address fd00::2/64 (\"6\")",
        ),
        (
            json!({"ips": [{"address": "10.0.0.1/8", "interface": 0}]}),
            "prevResult.ips[0].interface 0 is out of range (0 interfaces)",
        ),
        (json!({"ips": [{}]}), "prevResult.ips[0].address is missing"),
        (
            json!({"interfaces": [{"name": "eth0", "mac": "nope"}]}),
            "prevResult.interfaces[0].mac \"nope\" is not a MAC address",
        ),
        (
            json!({"interfaces": [{"mac": "02:00:00:00:00:01"}]}),
            "prevResult.interfaces[0].name is missing",
        ),
        (
            json!({"routes": [{"dst": "0.0.0.0/0", "gw": "x"}]}),
            "prevResult.routes[0].gw \"x\" is not an IP address",
        ),
        (
            json!({"routes": "x"}),
            "prevResult.routes \"x\" is a string, expected an array",
        ),
        (
            json!({"dns": {"nameservers": ["ns1"]}}),
            "prevResult.dns.nameservers[0] \"ns1\" is not an IP address",
        ),
    ];
    for (value, msg) in cases {
        let err = CniResult::from_prev_result(&value, Version::V110).unwrap_err();
        assert_eq!((err.code, err.msg.as_str()), (CniError::DECODE, msg));
    }
}

#[test]
fn route_scope_range_only_checked_in_v110() {
    let value = json!({"routes": [{"dst": "10.0.0.0/8", "scope": 300}]});
    assert!(CniResult::from_prev_result(&value, Version::V110).is_err());
    let parsed = CniResult::from_prev_result(&value, Version::V100).unwrap();
    assert_eq!(
        parsed.routes,
        vec![Route::new("10.0.0.0/8".parse().unwrap(), None)]
    );
}

#[test]
fn dual_stack_results_round_trip_with_the_family_in_040() {
    let mut r = sample();
    r.ips.push(IpConfig {
        address: "fd00:ac27::5/64".parse().unwrap(),
        gateway: Some("fd00:ac27::1".parse().unwrap()),
        interface: Some(1),
    });
    r.routes.push(Route::new(
        "::/0".parse().unwrap(),
        Some("fd00:ac27::1".parse().unwrap()),
    ));
    let v040 = r.to_json(Version::V040);
    assert_eq!(v040["ips"][0]["version"], json!("4"));
    assert_eq!(v040["ips"][1]["version"], json!("6"));
    assert_eq!(v040["ips"][1]["address"], json!("fd00:ac27::5/64"));
    let v100 = r.to_json(Version::V100);
    assert_eq!(v100["ips"][1].get("version"), None);
    assert_eq!(
        v100["routes"][1],
        json!({"dst": "::/0", "gw": "fd00:ac27::1"})
    );
    let back = CniResult::from_prev_result(&v100, Version::V100).unwrap();
    assert_eq!(back.ips, r.ips);
    assert_eq!(back.routes[1], r.routes[1]);
}
