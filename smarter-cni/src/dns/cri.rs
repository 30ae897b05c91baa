//! A minimal CRI (`runtime.v1.RuntimeService`) client over the runtime's unix socket: the
//! hostname, namespace and network mode of a pod sandbox.
//!
//! Only the few messages needed are declared, with `prost` derives and the field numbers of
//! the CRI's `api.proto` (unknown fields are skipped by prost), so the build needs no
//! `protoc`. The hostname is not part of `PodSandboxStatus` proper; runtimes report the
//! sandbox config in the verbose `info` map (containerd: `info` → `config.hostname`, also
//! `runtimeSpec.hostname`), which is what `crictl inspectp` shows.

pub mod lifecycle;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// How long one CRI call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A CRI failure.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The endpoint could not be set up.
    #[error("CRI endpoint {socket}: {source}")]
    Endpoint {
        /// The socket path.
        socket: PathBuf,
        /// What failed.
        #[source]
        source: tonic::transport::Error,
    },
    /// The runtime is not reachable (socket missing, refused, not serving yet).
    #[error("CRI {socket} unavailable: {source}")]
    Unavailable {
        /// The socket path.
        socket: PathBuf,
        /// What failed.
        #[source]
        source: tonic::transport::Error,
    },
    /// The runtime answered with an error.
    #[error("CRI {method}: {status}")]
    Status {
        /// The method called.
        method: &'static str,
        /// The runtime's answer.
        status: Box<tonic::Status>,
    },
    /// No answer in time.
    #[error("CRI {method}: no answer within {limit:?}")]
    Timeout {
        /// The method called.
        method: &'static str,
        /// The limit.
        limit: Duration,
    },
}

/// `PodSandboxStatusRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusRequest {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// Ask for the runtime-specific `info` map.
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// `PodSandboxStatusResponse` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusResponse {
    /// The status.
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
    /// Runtime-specific details (verbose only).
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

/// `PodSandboxStatus` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatus {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Pod name, namespace, uid.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    /// `SANDBOX_READY` (0) or `SANDBOX_NOTREADY` (1).
    #[prost(int32, tag = "3")]
    pub state: i32,
    /// The sandbox's addresses.
    #[prost(message, optional, tag = "5")]
    pub network: Option<lifecycle::PodSandboxNetworkStatus>,
    /// Linux namespaces.
    #[prost(message, optional, tag = "6")]
    pub linux: Option<LinuxPodSandboxStatus>,
}

/// `PodSandboxMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    /// Pod name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Pod uid.
    #[prost(string, tag = "2")]
    pub uid: String,
    /// Pod namespace.
    #[prost(string, tag = "3")]
    pub namespace: String,
    /// Attempt number.
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

/// `LinuxPodSandboxStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxStatus {
    /// Namespaces.
    #[prost(message, optional, tag = "1")]
    pub namespaces: Option<Namespace>,
}

/// `Namespace`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Namespace {
    /// Namespace options.
    #[prost(message, optional, tag = "2")]
    pub options: Option<NamespaceOption>,
}

/// `NamespaceOption` (the network mode only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceOption {
    /// `NamespaceMode`: POD 0, CONTAINER 1, NODE 2, TARGET 3.
    #[prost(int32, tag = "1")]
    pub network: i32,
}

/// `NamespaceMode::NODE`: the sandbox uses the node's network namespace.
pub const NAMESPACE_MODE_NODE: i32 = 2;
/// `PodSandboxState::SANDBOX_READY`.
pub const SANDBOX_READY: i32 = 0;

/// `ListPodSandboxRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxRequest {
    /// Filter.
    #[prost(message, optional, tag = "1")]
    pub filter: Option<PodSandboxFilter>,
}

/// `PodSandboxFilter` (the state only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxFilter {
    /// Wanted state.
    #[prost(message, optional, tag = "2")]
    pub state: Option<PodSandboxStateValue>,
}

/// `PodSandboxStateValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStateValue {
    /// `PodSandboxState`.
    #[prost(int32, tag = "1")]
    pub state: i32,
}

/// `ListPodSandboxResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxResponse {
    /// The sandboxes.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

/// `PodSandbox` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandbox {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Pod name, namespace, uid.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    /// State.
    #[prost(int32, tag = "3")]
    pub state: i32,
}

/// What the DNS server wants to know about a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    /// The hostname from the sandbox config, when the runtime reports it.
    pub hostname: Option<String>,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// True for `hostNetwork: true` pods.
    pub host_network: bool,
}

/// The hostname in a verbose `info` map: `config.hostname`, else `runtimeSpec.hostname`.
#[must_use]
pub fn hostname_from_info(info: &HashMap<String, String>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    ["/config/hostname", "/runtimeSpec/hostname"]
        .into_iter()
        .filter_map(|p| v.pointer(p).and_then(serde_json::Value::as_str))
        .find(|h| !h.is_empty())
        .map(str::to_string)
}

/// A CRI client on a unix socket; the connection is made lazily (and again after failures),
/// so a runtime that is down at start does not stop anything.
#[derive(Clone)]
pub struct CriClient {
    socket: PathBuf,
    channel: Channel,
    timeout: Duration,
}

impl std::fmt::Debug for CriClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriClient")
            .field("socket", &self.socket)
            .finish()
    }
}

impl CriClient {
    /// A client for the runtime socket `socket` (e.g. `/run/containerd/containerd.sock`, or
    /// `/run/k3s/containerd/containerd.sock` on k3s).
    ///
    /// # Errors
    /// [`CriError::Endpoint`] when the endpoint cannot be built (not expected).
    pub fn new(socket: &Path) -> Result<Self, CriError> {
        Self::with_timeout(socket, CALL_TIMEOUT)
    }

    /// Like [`Self::new`] with another limit on each call (running a sandbox takes longer
    /// than reading one).
    ///
    /// # Errors
    /// [`CriError::Endpoint`] when the endpoint cannot be built (not expected).
    pub fn with_timeout(socket: &Path, timeout: Duration) -> Result<Self, CriError> {
        let path = socket.to_path_buf();
        // The URI is required by the API but unused: the connector dials the socket.
        let endpoint = Endpoint::from_static("http://cri.invalid")
            .connect_timeout(CALL_TIMEOUT)
            .timeout(timeout);
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        }));
        Ok(Self {
            socket: socket.to_path_buf(),
            channel,
            timeout,
        })
    }

    async fn unary<Req, Resp>(&self, method: &'static str, req: Req) -> Result<Resp, CriError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let path = PathAndQuery::from_static(method);
        let call = async {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready().await.map_err(|source| CriError::Unavailable {
                socket: self.socket.clone(),
                source,
            })?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            grpc.unary(tonic::Request::new(req), path, codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| CriError::Status {
                    method,
                    status: Box::new(status),
                })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| CriError::Timeout {
                method,
                limit: self.timeout,
            })?
    }

    /// The sandbox `id`; `Ok(None)` when the runtime does not know it (yet: a runtime
    /// registers the sandbox only after its network is set up, so a DNS server that sees
    /// the CNI record first has to ask again).
    ///
    /// # Errors
    /// [`CriError`] when the runtime cannot be asked.
    pub async fn sandbox(&self, id: &str) -> Result<Option<SandboxInfo>, CriError> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        };
        let resp: PodSandboxStatusResponse = match self
            .unary("/runtime.v1.RuntimeService/PodSandboxStatus", req)
            .await
        {
            Ok(r) => r,
            Err(CriError::Status { status, .. }) if status.code() == tonic::Code::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let status = resp.status.unwrap_or_default();
        let meta = status.metadata.unwrap_or_default();
        let host_network = status
            .linux
            .and_then(|l| l.namespaces)
            .and_then(|n| n.options)
            .is_some_and(|o| o.network == NAMESPACE_MODE_NODE);
        Ok(Some(SandboxInfo {
            hostname: hostname_from_info(&resp.info),
            name: meta.name,
            namespace: meta.namespace,
            host_network,
        }))
    }

    /// The ids of the ready sandboxes.
    ///
    /// # Errors
    /// [`CriError`] when the runtime cannot be asked.
    pub async fn ready_sandboxes(&self) -> Result<Vec<String>, CriError> {
        let req = ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                state: Some(PodSandboxStateValue {
                    state: SANDBOX_READY,
                }),
            }),
        };
        let resp: ListPodSandboxResponse = self
            .unary("/runtime.v1.RuntimeService/ListPodSandbox", req)
            .await?;
        Ok(resp
            .items
            .into_iter()
            .filter(|s| s.state == SANDBOX_READY)
            .map(|s| s.id)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn hostname_from_containerd_and_runtime_spec() {
        let mut info = HashMap::new();
        assert_eq!(hostname_from_info(&info), None);
        info.insert(
            "info".to_string(),
            r#"{"config":{"hostname":"example","metadata":{"name":"p"}},"runtimeSpec":{"hostname":"other"}}"#.to_string(),
        );
        assert_eq!(hostname_from_info(&info).as_deref(), Some("example"));
        info.insert(
            "info".into(),
            r#"{"config":{"hostname":""},"runtimeSpec":{"hostname":"spec"}}"#.into(),
        );
        assert_eq!(hostname_from_info(&info).as_deref(), Some("spec"));
        info.insert("info".into(), "not json".into());
        assert_eq!(hostname_from_info(&info), None);
    }

    #[test]
    fn wire_compatible_with_the_cri_field_numbers() {
        // Hand-encoded PodSandboxStatusResponse: status{id:"s", metadata{name:"p",
        // namespace:"n"}, linux{namespaces{options{network:2}}}}, plus an unknown field 4.
        let status = PodSandboxStatus {
            id: "s".into(),
            metadata: Some(PodSandboxMetadata {
                name: "p".into(),
                namespace: "n".into(),
                ..Default::default()
            }),
            state: 0,
            network: None,
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(NamespaceOption { network: 2 }),
                }),
            }),
        };
        let mut bytes = PodSandboxStatusResponse {
            status: Some(status.clone()),
            info: HashMap::new(),
        }
        .encode_to_vec();
        // status = field 1 (length-delimited): 0x0a; inside, id = field 1, metadata = field 2,
        // linux = field 6 (0x32).
        assert_eq!(bytes[0], 0x0a);
        assert!(bytes.windows(2).any(|w| w == [0x32, 0x06]), "{bytes:02x?}");
        bytes.extend_from_slice(&[0x20, 0x07]); // timestamp = 7 (field 4, varint): skipped
        let back = PodSandboxStatusResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.status, Some(status));
    }
}
