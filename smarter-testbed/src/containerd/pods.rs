//! The kubelet's side of the CRI: sandbox configs, RunPodSandbox, PodSandboxStatus,
//! Stop/Remove, containers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Containerd, Sandbox, image};
use smarter_cni::dns::cri::lifecycle::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxPodSandboxConfig, PROTOCOL_TCP,
    PodSandboxConfig, PortMapping,
};
use smarter_cni::dns::cri::{PodSandboxMetadata, SANDBOX_READY};

impl Containerd {
    /// A sandbox config: pod `name` in namespace `default` with `hostname` and `ports`
    /// (host, container) over TCP, in this containerd's cgroup.
    #[must_use]
    pub fn config(&self, name: &str, hostname: &str, ports: &[(u16, u16)]) -> PodSandboxConfig {
        let logs = self.dir.path().join("logs").join(name);
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: hostname.into(),
            log_directory: logs.display().to_string(),
            port_mappings: ports
                .iter()
                .map(|&(host, container)| PortMapping {
                    protocol: PROTOCOL_TCP,
                    container_port: i32::from(container),
                    host_port: i32::from(host),
                    host_ip: String::new(),
                })
                .collect(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox then PodSandboxStatus.
    ///
    /// # Errors
    /// Either call failing (the message carries the logs' tails).
    pub fn try_run(&self, config: PodSandboxConfig) -> Result<Sandbox, String> {
        let id = self
            .rt
            .block_on(self.cri.run_pod_sandbox(config))
            .map_err(|e| format!("RunPodSandbox: {e}\n{}", self.log()))?;
        self.try_status(&id)
    }

    /// RunPodSandbox then PodSandboxStatus.
    ///
    /// # Panics
    /// When either fails.
    #[must_use]
    pub fn run(&self, config: PodSandboxConfig) -> Sandbox {
        self.try_run(config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// PodSandboxStatus of a ready sandbox, with its address and namespace.
    ///
    /// # Errors
    /// The call failing, the sandbox not ready, no address or namespace in the answer.
    pub fn try_status(&self, id: &str) -> Result<Sandbox, String> {
        let (status, info) = self
            .rt
            .block_on(self.cri.pod_sandbox_status(id))
            .map_err(|e| format!("PodSandboxStatus {id}: {e}"))?;
        if status.state != SANDBOX_READY {
            return Err(format!("{id} not ready: {status:?}"));
        }
        let info: Value = info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .ok_or_else(|| format!("{id}: no verbose info"))?;
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .and_then(|nss| nss.iter().find(|n| n["type"] == "network"))
            .and_then(|n| n["path"].as_str())
            .map(PathBuf::from)
            .ok_or_else(|| format!("no network namespace in {info}"))?;
        self.netns_seen
            .lock()
            .map_err(|e| e.to_string())?
            .push(netns.clone());
        let ip = status
            .network
            .as_ref()
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        let ip = ip.parse().map_err(|_| format!("sandbox address {ip:?}"))?;
        Ok(Sandbox {
            id: id.to_owned(),
            ip,
            netns,
            info,
        })
    }

    /// PodSandboxStatus; panics when it fails (see [`Containerd::try_status`]).
    #[must_use]
    pub fn status(&self, id: &str) -> Sandbox {
        self.try_status(id).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until containerd reports sandbox `id` not ready, as the kubelet learns of a
    /// sandbox whose init process died (PLEG) before it stops it. containerd 1.6 marks the
    /// sandbox NOTREADY only after it has deleted the dead task and its shim; a
    /// StopPodSandbox sent before that races the shim's shutdown and fails with
    /// `ttrpc: closed` (the kubelet would retry it).
    ///
    /// # Panics
    /// When the status call fails, or the sandbox is still ready after 20 s.
    pub fn wait_not_ready(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _) = self
                .rt
                .block_on(self.cri.pod_sandbox_status(id))
                .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}\n{}", self.log()));
            if status.state != SANDBOX_READY {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} still ready 20 s after its init process died\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// StopPodSandbox; panics when it fails.
    pub fn stop(&self, id: &str) {
        self.rt
            .block_on(self.cri.stop_pod_sandbox(id))
            .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e}\n{}", self.log()));
    }

    /// RemovePodSandbox; panics when it fails.
    pub fn remove(&self, id: &str) {
        self.rt
            .block_on(self.cri.remove_pod_sandbox(id))
            .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {e}\n{}", self.log()));
    }

    /// Every sandbox id containerd knows.
    ///
    /// # Panics
    /// When the call fails.
    #[must_use]
    pub fn sandboxes(&self) -> Vec<String> {
        self.rt
            .block_on(self.cri.all_sandboxes())
            .unwrap_or_else(|e| panic!("ListPodSandbox: {e}"))
    }

    /// CreateContainer + StartContainer of the busybox image in sandbox `sb` (created with
    /// `sandbox_config`), running `/bin/busybox <args>`; returns the container id.
    ///
    /// # Errors
    /// Either call failing (the message carries the logs' tails).
    pub fn start_busybox(
        &self,
        sb: &str,
        name: &str,
        sandbox_config: PodSandboxConfig,
        args: &[&str],
    ) -> Result<String, String> {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image::BUSYBOX_IMAGE.into(),
            }),
            command: vec!["/bin/busybox".into()],
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            log_path: format!("{name}.log"),
        };
        let id = self
            .rt
            .block_on(self.cri.create_container(sb, config, sandbox_config))
            .map_err(|e| format!("CreateContainer: {e}\n{}", self.log()))?;
        self.rt
            .block_on(self.cri.start_container(&id))
            .map_err(|e| format!("StartContainer: {e}\n{}", self.log()))?;
        Ok(id)
    }

    /// RunPodSandbox for every config at once (concurrent calls); each sandbox id with the
    /// time from sending its request to its answer.
    ///
    /// # Errors
    /// The first call that failed (the others' sandboxes stay for [`Self::remove_all`] or
    /// the drop).
    pub fn run_concurrently(
        &self,
        configs: Vec<PodSandboxConfig>,
    ) -> Result<Vec<(String, Duration)>, String> {
        self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for config in configs {
                let cri = self.cri.clone();
                set.spawn(async move {
                    let started = Instant::now();
                    let id = cri.run_pod_sandbox(config).await?;
                    Ok::<_, smarter_cni::dns::cri::CriError>((id, started.elapsed()))
                });
            }
            let mut out = Vec::new();
            let mut first_error = None;
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(done)) => out.push(done),
                    Ok(Err(e)) => first_error = first_error.or(Some(format!("RunPodSandbox: {e}"))),
                    Err(e) => first_error = first_error.or(Some(e.to_string())),
                }
            }
            first_error.map_or(Ok(out), Err)
        })
    }

    /// StopPodSandbox and RemovePodSandbox of every sandbox, concurrently.
    ///
    /// # Errors
    /// Listing failing, or the first stop/remove that failed.
    pub fn remove_all(&self) -> Result<(), String> {
        self.rt.block_on(async {
            let ids = self.cri.all_sandboxes().await.map_err(|e| e.to_string())?;
            let mut set = tokio::task::JoinSet::new();
            for id in ids {
                let cri = self.cri.clone();
                set.spawn(async move {
                    cri.stop_pod_sandbox(&id).await?;
                    cri.remove_pod_sandbox(&id).await
                });
            }
            let mut first_error = None;
            while let Some(r) = set.join_next().await {
                if let Err(e) = r
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                {
                    first_error = first_error.or(Some(e));
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }
}
