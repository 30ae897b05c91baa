//! The DaemonSet's containers as `deploy/` declares them, read from the YAML (so the test
//! follows the manifest), and turned into `podman run` arguments the way a kubelet turns
//! them into a container: command and arguments, environment (`envFrom` the ConfigMap),
//! `hostPath`/`emptyDir` volumes at their `mountPath` (read-only, propagation), the
//! security context (user, read-only root, capabilities, no privilege escalation; no
//! `seccompProfile` means Unconfined, the kubelet's default), `hostNetwork` as the node's
//! network namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_yaml::Value as Yaml;

/// One volume mount of a container.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The volume's `hostPath.path`, or `None` for an `emptyDir`.
    pub host_path: Option<String>,
    /// The volume's name.
    pub volume: String,
    /// `mountPath`.
    pub path: String,
    /// `readOnly`.
    pub read_only: bool,
    /// `mountPropagation: HostToContainer`.
    pub host_to_container: bool,
}

/// One container of a pod template.
#[derive(Debug, Clone)]
pub struct Container {
    /// Its name.
    pub name: String,
    /// `command` followed by `args`.
    pub argv: Vec<String>,
    /// The ConfigMap named by `envFrom`, then `env`.
    pub env: BTreeMap<String, String>,
    /// Volume mounts.
    pub mounts: Vec<Mount>,
    /// `securityContext` and `hostNetwork` as `podman run` flags (no volumes, no env).
    pub flags: Vec<String>,
    /// The readiness probe's exec command, if any.
    pub readiness: Option<Vec<String>>,
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn docs(file: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(workspace().join("deploy").join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Yaml::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| match x {
                    Yaml::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The DaemonSet of `deploy/<file>`: (init containers, containers), every ConfigMap of the
/// file resolved for `envFrom`.
pub fn daemonset(file: &str) -> (Vec<Container>, Vec<Container>) {
    let docs = docs(file);
    let config_maps: BTreeMap<String, BTreeMap<String, String>> = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap().to_owned();
            (name, serde_yaml::from_value(d["data"].clone()).unwrap())
        })
        .collect();
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .unwrap_or_else(|| panic!("no DaemonSet in deploy/{file}"));
    let spec = &ds["spec"]["template"]["spec"];
    let host_network = spec["hostNetwork"].as_bool().unwrap_or(false);
    let volumes: BTreeMap<String, Option<String>> = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_owned();
            let host = v["hostPath"]["path"].as_str().map(str::to_owned);
            assert!(
                host.is_some() || v.get("emptyDir").is_some(),
                "volume {name}: only hostPath and emptyDir are mapped"
            );
            (name, host)
        })
        .collect();
    let containers = |key: &str| -> Vec<Container> {
        spec[key]
            .as_sequence()
            .map(|cs| {
                cs.iter()
                    .map(|c| container(c, host_network, &volumes, &config_maps))
                    .collect()
            })
            .unwrap_or_default()
    };
    (containers("initContainers"), containers("containers"))
}

fn container(
    c: &Yaml,
    host_network: bool,
    volumes: &BTreeMap<String, Option<String>>,
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
) -> Container {
    let name = c["name"].as_str().unwrap().to_owned();
    let mut argv = strings(&c["command"]);
    argv.extend(strings(&c["args"]));
    let mut env = BTreeMap::new();
    for from in c["envFrom"].as_sequence().into_iter().flatten() {
        let cm = from["configMapRef"]["name"].as_str().expect("configMapRef");
        env.extend(config_maps[cm].clone());
    }
    for e in c["env"].as_sequence().into_iter().flatten() {
        let value = e["value"].as_str().expect("plain env values only");
        env.insert(e["name"].as_str().unwrap().to_owned(), value.to_owned());
    }
    let mounts = c["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|m| {
            let volume = m["name"].as_str().unwrap().to_owned();
            Mount {
                host_path: volumes[&volume].clone(),
                volume,
                path: m["mountPath"].as_str().unwrap().to_owned(),
                read_only: m["readOnly"].as_bool().unwrap_or(false),
                host_to_container: m["mountPropagation"] == "HostToContainer",
            }
        })
        .collect();
    let sc = &c["securityContext"];
    let mut flags = Vec::new();
    if let Some(uid) = sc["runAsUser"].as_i64() {
        flags.extend(["--user".into(), uid.to_string()]);
    }
    if sc["readOnlyRootFilesystem"].as_bool() == Some(true) {
        flags.push("--read-only".into());
    }
    if sc["allowPrivilegeEscalation"].as_bool() == Some(false) {
        flags.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    if sc["privileged"].as_bool() == Some(true) {
        flags.push("--privileged".into());
    }
    assert!(
        sc.get("seccompProfile").is_none(),
        "{name}: a seccompProfile is not mapped"
    );
    flags.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
    for cap in strings(&sc["capabilities"]["drop"]) {
        flags.extend(["--cap-drop".into(), cap]);
    }
    for cap in strings(&sc["capabilities"]["add"]) {
        flags.extend(["--cap-add".into(), cap]);
    }
    assert!(host_network, "{name}: only hostNetwork pods are mapped");
    Container {
        name,
        argv,
        env,
        mounts,
        flags,
        readiness: c["readinessProbe"]["exec"].get("command").map(strings),
    }
}

impl Container {
    /// `podman run` arguments (after `run`) for this container on a node whose `/` is
    /// `root` and whose network namespace is `node`; `empty_dirs` holds the `emptyDir`s.
    /// `rerooted` are the ConfigMap's directories moved under `root`: each mount whose
    /// `root` + `mountPath` contains one is also mounted there, so the paths in the conflist
    /// mean the same in the container and to the runtime on the host.
    pub fn podman_args(
        &self,
        root: &Path,
        node: &Path,
        empty_dirs: &Path,
        rerooted: &[PathBuf],
        rootfs: &Path,
    ) -> Vec<String> {
        let mut args: Vec<String> = vec!["--network".into(), format!("ns:{}", node.display())];
        args.extend(self.flags.iter().cloned());
        args.extend(
            [
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ]
            .map(String::from),
        );
        for (k, v) in &self.env {
            args.extend(["--env".into(), format!("{k}={v}")]);
        }
        for m in &self.mounts {
            let host = match &m.host_path {
                Some(p) => under(root, p),
                None => empty_dirs.join(&m.volume),
            };
            std::fs::create_dir_all(&host).unwrap();
            let mut opts = vec![if m.read_only { "ro" } else { "rw" }];
            if m.host_to_container {
                opts.push("rslave");
            }
            let opts = opts.join(",");
            args.extend(["-v".into(), format!("{}:{}:{opts}", host.display(), m.path)]);
            let again = rerooted
                .iter()
                .any(|dir| dir.starts_with(under(root, &m.path)));
            if again {
                let at = under(root, &m.path);
                args.extend([
                    "-v".into(),
                    format!("{}:{}:{opts}", host.display(), at.display()),
                ]);
            }
        }
        args.extend(["--rootfs".into(), rootfs.display().to_string()]);
        args.extend(self.argv.iter().cloned());
        args
    }
}

/// `path` (absolute) below `root`.
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}
