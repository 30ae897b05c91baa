//! A CRI `RuntimeService` stub (PodSandboxStatus and ListPodSandbox only) served with tonic
//! on a unix socket, for testing the DNS server's CRI client without a container runtime.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use smarter_cni::dns::cri::{
    LinuxPodSandboxStatus, ListPodSandboxRequest, ListPodSandboxResponse, Namespace,
    NamespaceOption, PodSandbox, PodSandboxMetadata, PodSandboxStatus, PodSandboxStatusRequest,
    PodSandboxStatusResponse,
};
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic_prost::ProstCodec;

/// One sandbox as the stub reports it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub name: String,
    pub namespace: String,
    /// Sandbox config hostname (empty: none, as kubelet sends for host-networked pods).
    pub hostname: String,
    pub host_network: bool,
    /// Answer NotFound this many times first (a runtime registers a sandbox only after its
    /// network is set up).
    pub not_found_first: usize,
}

#[derive(Default)]
struct State {
    sandboxes: Mutex<HashMap<String, Sandbox>>,
    status_calls: AtomicUsize,
}

/// The running stub; stops on drop.
pub struct CriStub {
    state: Arc<State>,
    path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CriStub {
    pub fn start(path: &Path) -> Self {
        let state = Arc::new(State::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = std::os::unix::net::UnixListener::bind(path).expect("bind CRI stub");
        listener.set_nonblocking(true).unwrap();
        let svc = Service(state.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::UnixListener::from_std(listener).unwrap();
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::UnixListenerStream::new(l),
                        async {
                            let _ = rx.await;
                        },
                    )
                    .await
                    .expect("CRI stub serve");
            });
        });
        Self {
            state,
            path: path.to_path_buf(),
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn add(&self, id: &str, s: Sandbox) {
        self.state
            .sandboxes
            .lock()
            .unwrap()
            .insert(id.to_string(), s);
    }

    pub fn status_calls(&self) -> usize {
        self.state.status_calls.load(Ordering::Relaxed)
    }
}

impl Drop for CriStub {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Clone)]
struct Service(Arc<State>);

impl NamedService for Service {
    const NAME: &'static str = "runtime.v1.RuntimeService";
}

impl tower::Service<http::Request<Body>> for Service {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let state = self.0.clone();
        match req.uri().path() {
            "/runtime.v1.RuntimeService/PodSandboxStatus" => Box::pin(async move {
                let mut g = Grpc::new(ProstCodec::<
                    PodSandboxStatusResponse,
                    PodSandboxStatusRequest,
                >::default());
                Ok(g.unary(Status(state), req).await)
            }),
            "/runtime.v1.RuntimeService/ListPodSandbox" => Box::pin(async move {
                let mut g = Grpc::new(
                    ProstCodec::<ListPodSandboxResponse, ListPodSandboxRequest>::default(),
                );
                Ok(g.unary(List(state), req).await)
            }),
            _ => Box::pin(async move { Ok(tonic::Status::unimplemented("stub").into_http()) }),
        }
    }
}

struct Status(Arc<State>);

impl UnaryService<PodSandboxStatusRequest> for Status {
    type Response = PodSandboxStatusResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<PodSandboxStatusRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            state.status_calls.fetch_add(1, Ordering::Relaxed);
            let req = req.into_inner();
            let mut map = state.sandboxes.lock().unwrap();
            let Some(s) = map.get_mut(&req.pod_sandbox_id) else {
                return Err(tonic::Status::not_found("no such sandbox"));
            };
            if s.not_found_first > 0 {
                s.not_found_first -= 1;
                return Err(tonic::Status::not_found("not yet"));
            }
            let mut info = HashMap::new();
            if req.verbose {
                info.insert(
                    "info".to_string(),
                    serde_json::json!({"config": {"hostname": s.hostname, "metadata": {"name": s.name}}})
                        .to_string(),
                );
            }
            Ok(tonic::Response::new(PodSandboxStatusResponse {
                status: Some(PodSandboxStatus {
                    id: req.pod_sandbox_id.clone(),
                    metadata: Some(PodSandboxMetadata {
                        name: s.name.clone(),
                        namespace: s.namespace.clone(),
                        ..Default::default()
                    }),
                    state: 0,
                    network: None,
                    linux: Some(LinuxPodSandboxStatus {
                        namespaces: Some(Namespace {
                            options: Some(NamespaceOption {
                                network: if s.host_network { 2 } else { 0 },
                            }),
                        }),
                    }),
                }),
                info,
            }))
        })
    }
}

struct List(Arc<State>);

impl UnaryService<ListPodSandboxRequest> for List {
    type Response = ListPodSandboxResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(&mut self, _req: tonic::Request<ListPodSandboxRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let items = state
                .sandboxes
                .lock()
                .unwrap()
                .iter()
                .map(|(id, s)| PodSandbox {
                    id: id.clone(),
                    metadata: Some(PodSandboxMetadata {
                        name: s.name.clone(),
                        namespace: s.namespace.clone(),
                        ..Default::default()
                    }),
                    state: 0,
                })
                .collect();
            Ok(tonic::Response::new(ListPodSandboxResponse { items }))
        })
    }
}
