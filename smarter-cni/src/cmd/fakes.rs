//! The node the verbs' unit tests run against: an in-memory netlink and sysctls
//! ([`host::FakeHost`]) and in-memory datapaths ([`datapath::FakeDatapaths`]), so ADD, DEL,
//! CHECK and GC are tested without root, step by step and failure by failure.

pub mod datapath;
pub mod host;

use std::path::Path;

use super::Ctx;
use crate::cni::{CniEnv, DatapathMode, NetConf, Version};
use datapath::FakeDatapaths;
use host::FakeHost;

/// A `Ctx` for `verb` of container `id` (interface `eth0`, namespace `netns`) on `dir`'s stores,
/// with `conf` adjusted by the caller, against `host` and `datapaths`.
pub fn ctx(
    dir: &Path,
    verb: &str,
    id: &str,
    netns: &Path,
    datapath: DatapathMode,
    host: &FakeHost,
    datapaths: &FakeDatapaths,
) -> Ctx {
    let netns = netns.display().to_string();
    let env = CniEnv::from_lookup(&|k| match k {
        "CNI_COMMAND" => Some(verb.into()),
        "CNI_CONTAINERID" => Some(id.into()),
        "CNI_IFNAME" => Some("eth0".into()),
        "CNI_NETNS" => Some(netns.clone()),
        "CNI_PATH" => Some("/opt/cni/bin".into()),
        _ => None,
    })
    .expect("valid environment");
    let conf = NetConf {
        datapath,
        state_dir: dir.join("state"),
        data_dir: dir.join("data"),
        bpffs_dir: dir.join("no-bpffs"),
        ..NetConf::default()
    };
    Ctx {
        env,
        conf,
        version: Version::V110,
        faults: &super::NoFaults,
        datapaths: Box::leak(Box::new(datapaths.clone())),
        host: Box::leak(Box::new(host.clone())),
    }
}
