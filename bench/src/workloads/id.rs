//! The data-plane workloads: their ids (`--only`), report names, units, which world of a
//! contender each runs in, and which contenders measure it.

use crate::contender::Kind;

/// One data-plane workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadId {
    /// iperf3 TCP stream between two pods.
    StreamPod,
    /// iperf3 TCP stream from a pod to the wan (NAT).
    StreamNat,
    /// TCP request/response between two pods.
    RrPod,
    /// TCP connect/request/response/close to the wan (NAT).
    CrrNat,
    /// 64-byte UDP datagrams to the wan (NAT).
    UdpNat,
    /// TCP request/response from the wan to a hostPort.
    RrHostPort,
    /// TCP request/response from a pod to a server on the LAN host (NAT to the node's LAN
    /// address).
    RrLan,
    /// TCP request/response from the LAN host to a hostPort on the node's LAN address.
    RrLanHostPort,
    /// 64-byte UDP datagrams from a pod to the wan through the layer-3 uplink `wwan0` (NAT).
    UdpL3,
    /// 64-byte UDP datagrams from a pod to the wan's IPv4 server over an IPv6-only uplink:
    /// translated by a CLAT on the node and the wan's NAT64.
    UdpClat,
    /// TCP request/response from a pod to the wan's IPv4 server over an IPv6-only uplink (CLAT
    /// and NAT64).
    RrClat,
    /// 64-byte UDP datagrams from a pod to the wan's IPv6 server over a dual-stack uplink,
    /// NAT66 to the node's global address (the limit: routed, the pod's own global address).
    UdpNat6,
    /// TCP request/response from a pod to the wan's IPv6 server over a dual-stack uplink
    /// (NAT66; the limit routed).
    RrNat6,
    /// iperf3 TCP stream from a pod to the wan's IPv6 server over a dual-stack uplink (NAT66,
    /// the pod's TSO super-packets included; the limit routed).
    StreamNat6,
}

impl WorkloadId {
    /// Every workload, in report order (the ones before issue 25 first, in their old order).
    pub const ALL: [WorkloadId; 14] = [
        WorkloadId::StreamPod,
        WorkloadId::StreamNat,
        WorkloadId::RrPod,
        WorkloadId::CrrNat,
        WorkloadId::UdpNat,
        WorkloadId::RrHostPort,
        WorkloadId::RrLan,
        WorkloadId::RrLanHostPort,
        WorkloadId::UdpL3,
        WorkloadId::UdpClat,
        WorkloadId::RrClat,
        WorkloadId::UdpNat6,
        WorkloadId::RrNat6,
        WorkloadId::StreamNat6,
    ];

    /// Short id (`--only`).
    pub fn id(self) -> &'static str {
        match self {
            WorkloadId::StreamPod => "stream-pod",
            WorkloadId::StreamNat => "stream-nat",
            WorkloadId::RrPod => "rr-pod",
            WorkloadId::CrrNat => "crr-nat",
            WorkloadId::UdpNat => "udp-nat",
            WorkloadId::RrHostPort => "rr-hostport",
            WorkloadId::RrLan => "rr-lan",
            WorkloadId::RrLanHostPort => "rr-lan-hostport",
            WorkloadId::UdpL3 => "udp-l3",
            WorkloadId::UdpClat => "udp-clat",
            WorkloadId::RrClat => "rr-clat",
            WorkloadId::UdpNat6 => "udp-nat6",
            WorkloadId::RrNat6 => "rr-nat6",
            WorkloadId::StreamNat6 => "stream-nat6",
        }
    }

    /// Report name.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadId::StreamPod => "stream pod→pod",
            WorkloadId::StreamNat => "stream pod→wan (NAT)",
            WorkloadId::RrPod => "rr pod→pod",
            WorkloadId::CrrNat => "crr pod→wan (NAT)",
            WorkloadId::UdpNat => "udp pod→wan (NAT)",
            WorkloadId::RrHostPort => "rr wan→hostPort",
            WorkloadId::RrLan => "rr pod→LAN (NAT)",
            WorkloadId::RrLanHostPort => "rr LAN→hostPort",
            WorkloadId::UdpL3 => "udp pod→wan via L3 uplink (NAT)",
            WorkloadId::UdpClat => "udp pod→IPv4 wan via CLAT + NAT64",
            WorkloadId::RrClat => "rr pod→IPv4 wan via CLAT + NAT64",
            WorkloadId::UdpNat6 => "udp pod→IPv6 wan (NAT66)",
            WorkloadId::RrNat6 => "rr pod→IPv6 wan (NAT66)",
            WorkloadId::StreamNat6 => "stream pod→IPv6 wan (NAT66)",
        }
    }

    /// Unit of the figure.
    pub fn unit(self) -> &'static str {
        match self {
            WorkloadId::StreamPod | WorkloadId::StreamNat | WorkloadId::StreamNat6 => "Gbit/s",
            WorkloadId::UdpNat | WorkloadId::UdpL3 | WorkloadId::UdpClat | WorkloadId::UdpNat6 => {
                "packets/s"
            }
            WorkloadId::CrrNat => "connections/s",
            WorkloadId::RrPod
            | WorkloadId::RrHostPort
            | WorkloadId::RrLan
            | WorkloadId::RrLanHostPort
            | WorkloadId::RrClat
            | WorkloadId::RrNat6 => "transactions/s",
        }
    }

    /// The unit of the CPU cost and how many of them one unit of the rate over one second is.
    pub fn cpu_unit(self) -> (&'static str, f64) {
        match self {
            WorkloadId::StreamPod | WorkloadId::StreamNat | WorkloadId::StreamNat6 => {
                ("per Gbit", 1.0)
            }
            WorkloadId::UdpNat | WorkloadId::UdpL3 | WorkloadId::UdpClat | WorkloadId::UdpNat6 => {
                ("per 100k packets", 1e-5)
            }
            WorkloadId::CrrNat => ("per 100k connections", 1e-5),
            WorkloadId::RrPod
            | WorkloadId::RrHostPort
            | WorkloadId::RrLan
            | WorkloadId::RrLanHostPort
            | WorkloadId::RrClat
            | WorkloadId::RrNat6 => ("per 100k transactions", 1e-5),
        }
    }

    /// Whether it runs in the contender's world with the layer-3 uplink (whose default route
    /// goes through `wwan0`, so it cannot be the world of the others).
    pub fn needs_l3_world(self) -> bool {
        self == WorkloadId::UdpL3
    }

    /// Whether it runs in the contender's CLAT world (IPv6-only uplink, NAT64 in the wan).
    pub fn needs_clat_world(self) -> bool {
        matches!(self, WorkloadId::UdpClat | WorkloadId::RrClat)
    }

    /// Whether it runs in the contender's NAT66 world (dual-stack uplink). Every contender
    /// measures it.
    pub fn needs_nat6_world(self) -> bool {
        matches!(
            self,
            WorkloadId::UdpNat6 | WorkloadId::RrNat6 | WorkloadId::StreamNat6
        )
    }

    /// Whether contender `kind` measures it. The CLAT workloads have three: smarter-ebpf (its
    /// CLAT), the reference chain with tayga on the node as its CLAT, and the limit (pods with
    /// IPv6 of their own); the nftables datapath cannot translate between address families
    /// (its STATUS says so on an IPv6-only uplink), and tayga beside it would measure tayga and
    /// masquerade again, as beside the reference.
    pub fn measured_by(self, kind: Kind) -> bool {
        !(self.needs_clat_world() && kind == Kind::SmarterIptables)
    }
}
