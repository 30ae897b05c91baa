//! The sandbox and container lifecycle calls of `runtime.v1.RuntimeService`, for driving a
//! real runtime (the containerd end-to-end suite): run, inspect, stop and remove pod
//! sandboxes, create and start containers in them, and the runtime's version and
//! conditions.
//!
//! As in the parent module, only the fields used are declared, with the field numbers of
//! the CRI's `api.proto` (`k8s.io/cri-api/pkg/apis/runtime/v1`); the runtime skips nothing
//! it needs, since omitted optional fields are their defaults in proto3.

use std::collections::HashMap;

use super::{CriClient, CriError, PodSandboxMetadata, PodSandboxStatus, PodSandboxStatusRequest};
use super::{ListPodSandboxRequest, ListPodSandboxResponse, PodSandboxStatusResponse};

/// `PodSandboxConfig` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    /// Pod name, uid, namespace, attempt.
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    /// The pod's hostname (what the node-local DNS answers for).
    #[prost(string, tag = "2")]
    pub hostname: String,
    /// Directory for container logs.
    #[prost(string, tag = "3")]
    pub log_directory: String,
    /// Resolver settings.
    #[prost(message, optional, tag = "4")]
    pub dns_config: Option<DnsConfig>,
    /// hostPort mappings (what the runtime passes as the `portMappings` capability).
    #[prost(message, repeated, tag = "5")]
    pub port_mappings: Vec<PortMapping>,
    /// Labels.
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    /// Annotations.
    #[prost(map = "string, string", tag = "7")]
    pub annotations: HashMap<String, String>,
    /// Linux settings.
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

/// `DNSConfig`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DnsConfig {
    /// Name servers.
    #[prost(string, repeated, tag = "1")]
    pub servers: Vec<String>,
    /// Search domains.
    #[prost(string, repeated, tag = "2")]
    pub searches: Vec<String>,
    /// Resolver options.
    #[prost(string, repeated, tag = "3")]
    pub options: Vec<String>,
}

/// `Protocol::TCP`.
pub const PROTOCOL_TCP: i32 = 0;
/// `Protocol::UDP`.
pub const PROTOCOL_UDP: i32 = 1;

/// `PortMapping`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PortMapping {
    /// [`PROTOCOL_TCP`] or [`PROTOCOL_UDP`].
    #[prost(int32, tag = "1")]
    pub protocol: i32,
    /// Port inside the pod.
    #[prost(int32, tag = "2")]
    pub container_port: i32,
    /// Port on the node.
    #[prost(int32, tag = "3")]
    pub host_port: i32,
    /// Node address to bind (empty: all).
    #[prost(string, tag = "4")]
    pub host_ip: String,
}

/// `LinuxPodSandboxConfig` (the cgroup parent only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    /// Parent cgroup of the sandbox (cgroupfs path).
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
}

/// `RunPodSandboxRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    /// The sandbox config.
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    /// Runtime handler (empty: the default).
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

/// `RunPodSandboxResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxResponse {
    /// The new sandbox's id.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// `StopPodSandboxRequest` and `RemovePodSandboxRequest` (same shape).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxIdRequest {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// An empty response (`StopPodSandboxResponse`, `StartContainerResponse`, ...).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// `PodSandboxNetworkStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxNetworkStatus {
    /// The primary address.
    #[prost(string, tag = "1")]
    pub ip: String,
    /// Further addresses.
    #[prost(message, repeated, tag = "2")]
    pub additional_ips: Vec<PodIp>,
}

/// `PodIP`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodIp {
    /// The address.
    #[prost(string, tag = "1")]
    pub ip: String,
}

/// `ContainerMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    /// Container name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Attempt number.
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

/// `ImageSpec` (the reference only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    /// Image reference.
    #[prost(string, tag = "1")]
    pub image: String,
}

/// `ContainerConfig` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerConfig {
    /// Name and attempt.
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ContainerMetadata>,
    /// The image.
    #[prost(message, optional, tag = "2")]
    pub image: Option<ImageSpec>,
    /// Entrypoint override.
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    /// Arguments.
    #[prost(string, repeated, tag = "4")]
    pub args: Vec<String>,
    /// Log file, relative to the sandbox's `log_directory`.
    #[prost(string, tag = "11")]
    pub log_path: String,
}

/// `CreateContainerRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    /// The sandbox to create it in.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// The container config.
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    /// The sandbox's config, as given to RunPodSandbox.
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

/// `CreateContainerResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerResponse {
    /// The new container's id.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// `StartContainerRequest` and `RemoveContainerRequest` (same shape).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerIdRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// `StopContainerRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopContainerRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Seconds before SIGKILL.
    #[prost(int64, tag = "2")]
    pub timeout: i64,
}

/// `VersionRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionRequest {
    /// The kubelet's CRI version.
    #[prost(string, tag = "1")]
    pub version: String,
}

/// `VersionResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    /// The CRI API version.
    #[prost(string, tag = "1")]
    pub version: String,
    /// e.g. `containerd`.
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    /// e.g. `1.6.20~ds1`.
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    /// e.g. `v1`.
    #[prost(string, tag = "4")]
    pub runtime_api_version: String,
}

/// `StatusRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {
    /// Ask for the runtime-specific `info` map.
    #[prost(bool, tag = "1")]
    pub verbose: bool,
}

/// `StatusResponse` (the status only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    /// The conditions.
    #[prost(message, optional, tag = "1")]
    pub status: Option<RuntimeStatus>,
}

/// `RuntimeStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuntimeStatus {
    /// `RuntimeReady`, `NetworkReady`.
    #[prost(message, repeated, tag = "1")]
    pub conditions: Vec<RuntimeCondition>,
}

/// `RuntimeCondition`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuntimeCondition {
    /// Condition type.
    #[prost(string, tag = "1")]
    pub r#type: String,
    /// True when met.
    #[prost(bool, tag = "2")]
    pub status: bool,
    /// Machine-readable reason.
    #[prost(string, tag = "3")]
    pub reason: String,
    /// Human-readable message.
    #[prost(string, tag = "4")]
    pub message: String,
}

impl CriClient {
    /// `RunPodSandbox`: the new sandbox's id.
    ///
    /// # Errors
    /// [`CriError`] as the runtime refuses or cannot be reached.
    pub async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String, CriError> {
        let req = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let resp: RunPodSandboxResponse = self
            .unary("/runtime.v1.RuntimeService/RunPodSandbox", req)
            .await?;
        Ok(resp.pod_sandbox_id)
    }

    /// `StopPodSandbox`.
    ///
    /// # Errors
    /// [`CriError`] as the runtime refuses or cannot be reached.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let req = PodSandboxIdRequest {
            pod_sandbox_id: id.to_owned(),
        };
        let _: Empty = self
            .unary("/runtime.v1.RuntimeService/StopPodSandbox", req)
            .await?;
        Ok(())
    }

    /// `RemovePodSandbox`.
    ///
    /// # Errors
    /// [`CriError`] as the runtime refuses or cannot be reached.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let req = PodSandboxIdRequest {
            pod_sandbox_id: id.to_owned(),
        };
        let _: Empty = self
            .unary("/runtime.v1.RuntimeService/RemovePodSandbox", req)
            .await?;
        Ok(())
    }

    /// `PodSandboxStatus` (verbose): the status and the runtime's `info` map (containerd:
    /// `info` → JSON with `pid`, `netNamespacePath`, `config`, `runtimeSpec`, ...).
    ///
    /// # Errors
    /// [`CriError`] as the runtime refuses (NotFound for an unknown id) or cannot be reached.
    pub async fn pod_sandbox_status(
        &self,
        id: &str,
    ) -> Result<(PodSandboxStatus, HashMap<String, String>), CriError> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        };
        let resp: PodSandboxStatusResponse = self
            .unary("/runtime.v1.RuntimeService/PodSandboxStatus", req)
            .await?;
        Ok((resp.status.unwrap_or_default(), resp.info))
    }

    /// The ids of every sandbox, in any state.
    ///
    /// # Errors
    /// [`CriError`] when the runtime cannot be asked.
    pub async fn all_sandboxes(&self) -> Result<Vec<String>, CriError> {
        let resp: ListPodSandboxResponse = self
            .unary(
                "/runtime.v1.RuntimeService/ListPodSandbox",
                ListPodSandboxRequest { filter: None },
            )
            .await?;
        Ok(resp.items.into_iter().map(|s| s.id).collect())
    }

    /// `CreateContainer` in sandbox `sandbox` (created with `sandbox_config`).
    ///
    /// # Errors
    /// [`CriError`] as the runtime refuses or cannot be reached.
    pub async fn create_container(
        &self,
        sandbox: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String, CriError> {
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let resp: CreateContainerResponse = self
            .unary("/runtime.v1.RuntimeService/CreateContainer", req)
            .await?;
        Ok(resp.container_id)
    }

    /// `StartContainer`.
    ///
    /// # Errors
    /// [`CriError`] as the runtime refuses or cannot be reached.
    pub async fn start_container(&self, id: &str) -> Result<(), CriError> {
        let req = ContainerIdRequest {
            container_id: id.to_owned(),
        };
        let _: Empty = self
            .unary("/runtime.v1.RuntimeService/StartContainer", req)
            .await?;
        Ok(())
    }

    /// `StopContainer` with `timeout` seconds before SIGKILL.
    ///
    /// # Errors
    /// [`CriError`] as the runtime refuses or cannot be reached.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), CriError> {
        let req = StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        };
        let _: Empty = self
            .unary("/runtime.v1.RuntimeService/StopContainer", req)
            .await?;
        Ok(())
    }

    /// `RemoveContainer`.
    ///
    /// # Errors
    /// [`CriError`] as the runtime refuses or cannot be reached.
    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let req = ContainerIdRequest {
            container_id: id.to_owned(),
        };
        let _: Empty = self
            .unary("/runtime.v1.RuntimeService/RemoveContainer", req)
            .await?;
        Ok(())
    }

    /// `Version`.
    ///
    /// # Errors
    /// [`CriError`] when the runtime cannot be asked.
    pub async fn version(&self) -> Result<VersionResponse, CriError> {
        self.unary(
            "/runtime.v1.RuntimeService/Version",
            VersionRequest {
                version: "v1".into(),
            },
        )
        .await
    }

    /// `Status`: the runtime's conditions (`RuntimeReady`, `NetworkReady`).
    ///
    /// # Errors
    /// [`CriError`] when the runtime cannot be asked.
    pub async fn conditions(&self) -> Result<Vec<RuntimeCondition>, CriError> {
        let resp: StatusResponse = self
            .unary(
                "/runtime.v1.RuntimeService/Status",
                StatusRequest { verbose: false },
            )
            .await?;
        Ok(resp.status.unwrap_or_default().conditions)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// Field numbers checked against hand-encoded bytes of the CRI's `api.proto`.
    #[test]
    fn wire_compatible_with_the_cri_field_numbers() {
        let config = PodSandboxConfig {
            hostname: "h".into(),
            port_mappings: vec![PortMapping {
                protocol: PROTOCOL_UDP,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new(),
            }],
            ..Default::default()
        };
        // hostname = field 2 (0x12, len 1, "h"); port_mappings = field 5 (0x2a, len 7):
        // protocol 1 (0x08 0x01), container_port 2 (0x10 0x50), host_port 3 (0x18 0x90 0x3f).
        assert_eq!(
            config.encode_to_vec(),
            [
                0x12, 1, b'h', 0x2a, 7, 0x08, 1, 0x10, 0x50, 0x18, 0x90, 0x3f
            ]
        );
        let status = PodSandboxStatus::decode(
            // network = field 5 (0x2a): ip = field 1 "1.2.3.4".
            &[0x2a, 9, 0x0a, 7, b'1', b'.', b'2', b'.', b'3', b'.', b'4'][..],
        )
        .unwrap();
        assert_eq!(status.network.unwrap().ip, "1.2.3.4");
    }
}
