//! In-memory datapaths behind [`Datapaths`]: which of the two exist on the node, the
//! endpoints each holds, the network each was given, and what was removed.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use crate::cni::NetConf;
use crate::datapath::{
    Bridge, Datapath, DatapathChoice, DatapathError, DatapathKind, Datapaths, EndpointSpec,
    HostPortSpec, Opened, PodLink,
};

/// What the fake datapaths of one node hold (shared by every clone of [`FakeDatapaths`]).
#[derive(Debug, Default)]
pub struct DatapathState {
    /// The datapaths that exist.
    pub present: Mutex<Vec<DatapathKind>>,
    /// The datapaths removed, in order.
    pub removed: Mutex<Vec<DatapathKind>>,
    /// Attached endpoints with their hostPorts.
    pub endpoints: Mutex<Vec<(DatapathKind, EndpointSpec, Vec<HostPortSpec>)>>,
    /// The bridges `ensure_network` was given.
    pub bridges: Mutex<Vec<Bridge>>,
    /// Refuse every attach (a datapath failing mid-ADD).
    pub refuse_attach: Mutex<bool>,
}

/// The node's fake datapaths.
#[derive(Debug, Default, Clone)]
pub struct FakeDatapaths(pub Arc<DatapathState>);

impl FakeDatapaths {
    /// Fake datapaths of which `present` exist.
    pub fn with(present: &[DatapathKind]) -> Self {
        let d = Self::default();
        d.0.present.lock().unwrap().extend_from_slice(present);
        d
    }

    /// The endpoints attached, as (datapath, address, host veth).
    pub fn attached(&self) -> Vec<(DatapathKind, Ipv4Addr, String)> {
        let eps = self.0.endpoints.lock().unwrap();
        eps.iter()
            .map(|(k, e, _)| (*k, e.ip, e.host_ifname.clone()))
            .collect()
    }
}

/// One fake datapath.
#[derive(Debug)]
struct Fake {
    kind: DatapathKind,
    node: Arc<DatapathState>,
}

impl Datapath for Fake {
    fn kind(&self) -> DatapathKind {
        self.kind
    }

    fn ensure_network(
        &mut self,
        bridge: Option<Bridge>,
        _: &crate::datapath::External,
    ) -> Result<(), DatapathError> {
        self.node.bridges.lock().unwrap().extend(bridge);
        Ok(())
    }

    fn attach(&self, spec: &EndpointSpec, ports: &[HostPortSpec]) -> Result<(), DatapathError> {
        if *self.node.refuse_attach.lock().unwrap() {
            return Err(DatapathError::Config {
                key: "datapath",
                msg: format!("attach of {} refused (injected)", spec.ip),
            });
        }
        let mut eps = self.node.endpoints.lock().unwrap();
        eps.retain(|(k, e, _)| !(*k == self.kind && e.ip == spec.ip));
        eps.push((self.kind, spec.clone(), ports.to_vec()));
        Ok(())
    }

    fn detach(&self, ip: Ipv4Addr, host: &str) -> Result<(), DatapathError> {
        self.node
            .endpoints
            .lock()
            .unwrap()
            .retain(|(k, e, _)| !(*k == self.kind && e.ip == ip && e.host_ifname == host));
        Ok(())
    }

    fn check(&self, spec: &EndpointSpec) -> Result<Vec<String>, DatapathError> {
        let eps = self.node.endpoints.lock().unwrap();
        let found = eps
            .iter()
            .any(|(k, e, _)| *k == self.kind && e.ip == spec.ip && e.mac == spec.mac);
        Ok(if found {
            Vec::new()
        } else {
            vec![format!("{} has no endpoint {}", self.kind.name(), spec.ip)]
        })
    }

    fn endpoints(&self) -> Result<Vec<PodLink>, DatapathError> {
        let eps = self.node.endpoints.lock().unwrap();
        Ok(eps
            .iter()
            .filter(|(k, _, _)| *k == self.kind)
            .map(|(_, e, _)| e.link())
            .collect())
    }

    fn gc(&self) -> Result<usize, DatapathError> {
        Ok(0)
    }

    fn counters(&self) -> Result<Vec<(String, u64, u64)>, DatapathError> {
        Ok(Vec::new())
    }

    fn pod_traffic(&self) -> Result<Vec<crate::datapath::PodTraffic>, DatapathError> {
        Ok(Vec::new())
    }

    fn remove(&self) -> Result<(), DatapathError> {
        self.node
            .present
            .lock()
            .unwrap()
            .retain(|k| *k != self.kind);
        self.node.removed.lock().unwrap().push(self.kind);
        self.node
            .endpoints
            .lock()
            .unwrap()
            .retain(|(k, _, _)| *k != self.kind);
        Ok(())
    }
}

impl Datapaths for FakeDatapaths {
    fn open(&self, conf: &NetConf) -> Result<Opened, DatapathError> {
        let choice = DatapathChoice::select(conf.datapath, &conf.bpffs_dir);
        let mut present = self.0.present.lock().unwrap();
        if !present.contains(&choice.datapath) {
            present.push(choice.datapath);
        }
        Ok(Opened {
            datapath: Box::new(Fake {
                kind: choice.datapath,
                node: self.0.clone(),
            }),
            choice,
        })
    }

    fn open_existing(
        &self,
        _: &NetConf,
        kind: DatapathKind,
    ) -> Result<Option<Box<dyn Datapath>>, DatapathError> {
        let present = self.0.present.lock().unwrap().contains(&kind);
        Ok(present.then(|| {
            Box::new(Fake {
                kind,
                node: self.0.clone(),
            }) as Box<dyn Datapath>
        }))
    }
}
