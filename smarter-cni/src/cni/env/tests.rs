use super::*;

fn parse(vars: &[(&str, &str)]) -> Result<CniEnv, CniError> {
    let map = vars
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    CniEnv::from_map(&map)
}

const ADD: [(&str, &str); 6] = [
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "abc123"),
    ("CNI_NETNS", "/var/run/netns/pod"),
    ("CNI_IFNAME", "eth0"),
    ("CNI_ARGS", "K8S_POD_NAME=web;IgnoreUnknown=1"),
    ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
];

#[test]
fn full_add() {
    let env = parse(&ADD).unwrap();
    assert_eq!(env.verb, Verb::Add);
    assert_eq!(env.container_id.as_deref(), Some("abc123"));
    assert_eq!(
        env.pod_triplet(),
        Ok(("abc123", "eth0", "/var/run/netns/pod"))
    );
    assert_eq!(env.ifname.as_deref(), Some("eth0"));
    assert_eq!(env.args.pod_name.as_deref(), Some("web"));
    assert_eq!(
        env.path,
        vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
    );
}

#[test]
fn add_and_check_need_only_what_the_spec_requires() {
    for verb in ["ADD", "CHECK"] {
        let env = parse(&[
            ("CNI_COMMAND", verb),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/proc/1/ns/net"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert!(env.path.is_empty());
    }
}

#[test]
fn missing_variables_all_named() {
    let err = parse(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "")]).unwrap_err();
    assert_eq!(err.code, CniError::INVALID_ENV);
    for name in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        assert!(err.msg.contains(name), "{}", err.msg);
    }
    assert!(!err.msg.contains("CNI_PATH"), "{}", err.msg);
}

#[test]
fn missing_and_invalid_reported_together() {
    let err = parse(&[
        ("CNI_COMMAND", "CHECK"),
        ("CNI_CONTAINERID", "-bad"),
        ("CNI_NETNS", "netns"),
        ("CNI_IFNAME", "eth0:1"),
    ])
    .unwrap_err();
    assert_eq!(err.code, CniError::INVALID_ENV);
    assert!(err.msg.contains("CNI_CONTAINERID \"-bad\""), "{}", err.msg);
    assert!(
        err.msg
            .contains("CNI_NETNS \"netns\" is not an absolute path"),
        "{}",
        err.msg
    );
    assert!(err.msg.contains("CNI_IFNAME \"eth0:1\""), "{}", err.msg);
}

#[test]
fn del_without_netns() {
    let env = parse(&[
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_IFNAME", "eth0"),
    ])
    .unwrap();
    assert_eq!((env.container_id(), env.ifname()), (Ok("c"), Ok("eth0")));
    let err = env.netns().unwrap_err();
    assert_eq!(
        (err.code, err.msg.as_str()),
        (4, "CNI_NETNS is not set for DEL")
    );
    let err = parse(&[("CNI_COMMAND", "DEL"), ("CNI_NETNS", "/x")]).unwrap_err();
    assert!(
        err.msg.contains("CNI_CONTAINERID") && err.msg.contains("CNI_IFNAME"),
        "{}",
        err.msg
    );
    assert!(!err.msg.contains("CNI_NETNS"), "{}", err.msg);
}

#[test]
fn long_ifname_named() {
    let err = parse(&[
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_IFNAME", "averyveryverylongname"),
    ])
    .unwrap_err();
    assert!(
        err.msg
            .contains("\"averyveryverylongname\" is 21 bytes long"),
        "{}",
        err.msg
    );
}

#[test]
fn version_status_gc() {
    let env = parse(&[("CNI_COMMAND", "VERSION"), ("CNI_IFNAME", "a/b")]).unwrap();
    assert_eq!((env.verb, env.ifname), (Verb::Version, None));
    let env = parse(&[("CNI_COMMAND", "STATUS")]).unwrap();
    assert_eq!(env.verb, Verb::Status);
    let env = parse(&[
        ("CNI_COMMAND", "GC"),
        ("CNI_PATH", "/opt/cni/bin"),
        ("CNI_ARGS", "BAD"),
    ])
    .unwrap();
    assert_eq!(env.path, vec![PathBuf::from("/opt/cni/bin")]);
    let err = parse(&[("CNI_COMMAND", "GC")]).unwrap_err();
    assert_eq!(err.code, CniError::INVALID_ENV);
    assert!(err.msg.contains("CNI_PATH is missing"), "{}", err.msg);
}

#[test]
fn bad_command() {
    let err = parse(&[]).unwrap_err();
    assert_eq!(
        (err.code, err.msg.contains("CNI_COMMAND is missing")),
        (4, true)
    );
    let err = parse(&[("CNI_COMMAND", "add")]).unwrap_err();
    assert_eq!(
        (err.code, err.msg.contains("CNI_COMMAND \"add\"")),
        (4, true)
    );
}

#[test]
fn args_errors_propagate() {
    let mut vars = ADD;
    vars[4] = ("CNI_ARGS", "FOO=bar");
    assert_eq!(parse(&vars).unwrap_err().code, CniError::UNSUPPORTED_FIELD);
}

#[test]
fn verb_spellings() {
    for verb in [
        Verb::Add,
        Verb::Del,
        Verb::Check,
        Verb::Version,
        Verb::Status,
        Verb::Gc,
    ] {
        assert_eq!(Verb::parse(verb.as_str()), Some(verb));
    }
}
