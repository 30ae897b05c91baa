//! The deployment manifests: the plain manifest `deploy/smarter-cni.yaml` is the Helm chart
//! `deploy/helm/smarter-cni` rendered with its default values (by the subset renderer in
//! `install_manifests/render.rs`; `UPDATE_DEPLOY=1` rewrites the file), the chart's config
//! defaults are the installer's and the plugin's, the upstream conventions hold, and
//! `kubernetes-validate` (PyPI) accepts every manifest in strict mode.

#[path = "install_manifests/render.rs"]
mod render;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use smarter_cni::cni::NetConf;
use smarter_cni::install::{DEFAULT_CONFLIST_NAME, KNOBS, conflist_from};

const NAMESPACE: &str = "kube-system";
const TEMPLATES: [&str; 2] = ["configmap.yaml", "daemonset.yaml"];
/// The Kubernetes version validated against (k3s of 2025-2026 is 1.31-1.35).
const KUBE_VERSION: &str = "1.33.0";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn chart() -> PathBuf {
    deploy().join("helm/smarter-cni")
}

fn values() -> Value {
    let text = fs::read_to_string(chart().join("values.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("values.yaml is YAML")
}

/// `helm template`'s output shape: one `# Source:` document per template.
fn rendered_chart() -> String {
    let values = values();
    let mut out = String::from(
        "# smarter-cni: ConfigMap and DaemonSet for kube-system. GENERATED from the Helm chart\n\
         # deploy/helm/smarter-cni with its default values: edit the chart, then run\n\
         # `UPDATE_DEPLOY=1 cargo test -p smarter-cni --test install_manifests`.\n",
    );
    for t in TEMPLATES {
        let text = fs::read_to_string(chart().join("templates").join(t)).unwrap();
        let body = render::render(&text, &values, NAMESPACE)
            .unwrap_or_else(|e| panic!("templates/{t}: {e}"));
        out.push_str(&format!("---\n# Source: smarter-cni/templates/{t}\n{body}"));
    }
    out
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

#[test]
fn plain_manifest_is_the_chart_rendered_with_defaults() {
    let rendered = rendered_chart();
    let plain = deploy().join("smarter-cni.yaml");
    if std::env::var_os("UPDATE_DEPLOY").is_some() {
        fs::write(&plain, &rendered).unwrap();
    }
    let committed = fs::read_to_string(&plain).unwrap_or_default();
    assert!(
        committed == rendered,
        "deploy/smarter-cni.yaml differs from the chart rendered with its defaults: run \
         `UPDATE_DEPLOY=1 cargo test -p smarter-cni --test install_manifests`"
    );
}

#[test]
fn chart_defaults_are_the_installer_and_plugin_defaults() {
    let values = values();
    let config = values["config"].as_object().expect("config values");
    let keys: Vec<&str> = config.keys().map(String::as_str).collect();
    let knobs: Vec<&str> = KNOBS.iter().map(|k| k.env).collect();
    assert_eq!(
        {
            let mut k = keys.clone();
            k.sort_unstable();
            k
        },
        {
            let mut k = knobs.clone();
            k.sort_unstable();
            k
        },
        "one chart value per installer knob"
    );
    for k in &KNOBS {
        assert_eq!(config[k.env].as_str(), Some(k.default), "config.{}", k.env);
    }
    // The ConfigMap as rendered, through the installer, gives the plugin's defaults.
    let docs = documents(&rendered_chart());
    let data = docs[0]["data"].as_object().expect("ConfigMap data").clone();
    let conflist = conflist_from(|k| data.get(k).and_then(Value::as_str).map(str::to_owned))
        .expect("defaults are valid");
    let expected = NetConf {
        cni_version: conflist.netconf.cni_version,
        capabilities: conflist.netconf.capabilities.clone(),
        ..NetConf::default()
    };
    assert_eq!(conflist.netconf, expected);
    assert_eq!(values["cni"]["conflistName"], DEFAULT_CONFLIST_NAME);
}

#[test]
fn upstream_conventions_hold() {
    let docs = documents(&rendered_chart());
    assert_eq!(docs.len(), 2);
    let (cm, ds) = (&docs[0], &docs[1]);
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(ds["kind"], "DaemonSet");
    for d in [cm, ds] {
        assert_eq!(d["metadata"]["namespace"], NAMESPACE);
    }
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["nodeSelector"]["smarter.cni"], "deploy");
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert!(tolerations.iter().any(|t| t["key"] == "smarter.type"
        && t["value"] == "edge"
        && t["effect"] == "NoSchedule"));
    assert_eq!(pod["initContainers"][0]["command"][1], "install");
    let agent = &pod["containers"][0];
    assert_eq!(agent["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(agent["securityContext"].get("privileged").is_none());
    assert_eq!(agent["readinessProbe"]["exec"]["command"][1], "health");
    let conf_arg = agent["command"][2].as_str().unwrap();
    assert!(conf_arg.ends_with(DEFAULT_CONFLIST_NAME), "{conf_arg}");
    // The agent serves the node-local DNS on port 53: it needs exactly that privilege more.
    let args: Vec<&str> = agent["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--dns"), "{args:?}");
    let caps = &agent["securityContext"]["capabilities"]["add"];
    assert!(
        caps.as_array()
            .unwrap()
            .iter()
            .any(|c| c == "NET_BIND_SERVICE"),
        "{caps}"
    );
}

/// `kubernetes-validate --strict` on every manifest; installs it from PyPI when missing, and
/// skips (saying so) when that is impossible.
#[test]
fn manifests_pass_kubernetes_validate() {
    let rendered =
        std::env::temp_dir().join(format!("smarter-cni-chart-{}.yaml", std::process::id()));
    fs::write(&rendered, rendered_chart()).unwrap();
    let files = [
        rendered.clone(),
        deploy().join("smarter-cni.yaml"),
        deploy().join("smarter-cni-uninstall.yaml"),
    ];
    let tool = "kubernetes-validate";
    let have = |_: ()| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have(()) {
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", tool])
            .status();
    }
    if !have(()) {
        eprintln!(
            "SKIP manifests_pass_kubernetes_validate: {tool} is not installed (pip install {tool})"
        );
        return;
    }
    let out = Command::new(tool)
        .args(["-k", KUBE_VERSION, "--strict"])
        .args(&files)
        .output()
        .unwrap();
    let _ = fs::remove_file(&rendered);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("WARN"), "{text}");
}
