//! The topologies the matrix runs in, each a gateway as users have it: which links the node
//! has, which `"uplink"` its network configuration names, which node address each direction's
//! hostPort case targets, and which cases run there.

use std::net::{Ipv4Addr, SocketAddrV4};

use smarter_testbed::{
    FAR_SERVER_IP, L3_UPLINK, LAN_HOST_IP, LAN_NODE_IP, NODE_BACKUP_IP, NODE_L3_IP, NODE_UPLINK_IP,
    WAN_SERVER_IP, World,
};

use crate::traffic::{self, Case, Direction, Proto};

/// Container ports of the server pod, hostPorts on the node, the wan's and sensor's echo ports.
pub const TCP_PORT: u16 = 8080;
/// See [`TCP_PORT`].
pub const UDP_PORT: u16 = 8081;
/// See [`TCP_PORT`].
pub const HOST_TCP: u16 = 20000;
/// See [`TCP_PORT`].
pub const HOST_UDP: u16 = 20001;
/// See [`TCP_PORT`].
pub const ECHO_UDP: u16 = 7;
/// See [`TCP_PORT`].
pub const ECHO_TCP: u16 = 8000;
/// MTU of the layer-3 uplink (a cellular modem's usual 1428).
pub const L3_MTU: u32 = 1428;

/// One topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topo {
    /// The single Ethernet uplink `uplink0` (the original suite).
    Eth,
    /// The uplink plus a LAN with a sensor.
    Lan,
    /// Two uplinks; the matrix runs while failed over to the backup.
    Failover,
    /// A layer-3 (TUN, raw-IP) uplink as the default route, MTU [`L3_MTU`].
    L3,
}

impl Topo {
    /// Its name in labels and tables.
    pub fn name(self) -> &'static str {
        match self {
            Topo::Eth => "eth",
            Topo::Lan => "lan",
            Topo::Failover => "failover",
            Topo::L3 => "l3",
        }
    }

    /// The `"uplink"` key of our configuration, as users write it: absent on the plain
    /// gateway and across a failover, `"auto"` with a LAN (the LAN is an uplink too: pods
    /// reach its sensors masqueraded), the modem's name on a layer-3 gateway (pods may leave
    /// by it only; the Ethernet interface there still guards and answers hostPorts).
    pub fn uplink_key(self) -> Option<&'static str> {
        match self {
            Topo::Eth | Topo::Failover => None,
            Topo::Lan => Some("auto"),
            Topo::L3 => Some(L3_UPLINK),
        }
    }

    /// Adds the topology's links to a new world (before any pod, as at boot), the server
    /// behind a smaller-MTU link for the PMTU cases, and the route for the pod subnet an
    /// upstream may have (so unsolicited traffic to pods reaches the node).
    pub fn build(self, w: &mut World) {
        w.add_far().expect("far server");
        match self {
            Topo::Eth => {}
            Topo::Lan => {
                w.add_lan().expect("LAN");
            }
            Topo::Failover => w.add_backup_uplink().expect("backup uplink"),
            Topo::L3 => w.add_l3_uplink(L3_MTU).expect("layer-3 uplink"),
        }
        let via = match self {
            Topo::L3 => "dev tun1".to_owned(),
            Topo::Failover => format!("via {NODE_BACKUP_IP}"),
            Topo::Eth | Topo::Lan => format!("via {NODE_UPLINK_IP}"),
        };
        w.wan().ip(&format!("route add 172.39.0.0/16 {via}"));
    }

    /// The cases run here; see `traffic.rs`.
    pub fn cases(self) -> Vec<Case> {
        match self {
            Topo::Eth => traffic::matrix(),
            Topo::Lan => {
                let mut c = traffic::core();
                c.extend(traffic::lan());
                c
            }
            Topo::Failover => traffic::core(),
            Topo::L3 => traffic::subset(L3_MTU as usize),
        }
    }

    /// The node address the wan's hostPort cases go to: the address of the link the wan
    /// reaches the node by (the backup while failed over, the modem's).
    pub fn wan_hostport(self) -> Ipv4Addr {
        match self {
            Topo::Eth | Topo::Lan => NODE_UPLINK_IP,
            Topo::Failover => NODE_BACKUP_IP,
            Topo::L3 => NODE_L3_IP,
        }
    }

    /// The node address the pods' (hairpin) and the node's own hostPort cases go to: the LAN
    /// address on a LAN, else as [`Topo::wan_hostport`].
    pub fn local_hostport(self) -> Ipv4Addr {
        match self {
            Topo::Lan => LAN_NODE_IP,
            t => t.wan_hostport(),
        }
    }

    /// The interfaces on the far side (capture names `ns/if`) that carry this topology's run:
    /// each must have seen frames.
    pub fn busy(self) -> &'static [&'static str] {
        match self {
            Topo::Eth => &["wan/wan0"],
            Topo::Lan => &["wan/wan0", "lan/eth0"],
            Topo::Failover => &["wan/wan0", "wan/wan2"],
            Topo::L3 => &["wan/tun1"],
        }
    }
}

/// Who sends `case`'s first packet (`"client"`, `"wan"`, `"node"` or `"lan"`), to which
/// address, in topology `t`; `server` is the server pod's address.
pub fn endpoints(t: Topo, case: &Case, server: Ipv4Addr) -> (&'static str, SocketAddrV4) {
    let port = |udp, tcp| match case.proto {
        Proto::Udp | Proto::Pmtu => udp,
        Proto::Tcp => tcp,
        _ => 0,
    };
    let echo = port(ECHO_UDP, ECHO_TCP);
    let hostport = port(HOST_UDP, HOST_TCP);
    let pod = port(UDP_PORT, TCP_PORT);
    let sa = SocketAddrV4::new;
    match case.dir {
        Direction::PodToWan => ("client", sa(WAN_SERVER_IP, echo)),
        Direction::WanToPod => ("wan", sa(server, pod)),
        Direction::WanToHostPort => ("wan", sa(t.wan_hostport(), hostport)),
        Direction::PodToHostPort => ("client", sa(t.local_hostport(), hostport)),
        Direction::NodeToHostPort => ("node", sa(t.local_hostport(), hostport)),
        Direction::PodToSensor => ("client", sa(LAN_HOST_IP, echo)),
        Direction::SensorToHostPort => ("lan", sa(LAN_NODE_IP, hostport)),
        Direction::SensorToPod => ("lan", sa(server, pod)),
        Direction::PodToFar => ("client", sa(FAR_SERVER_IP, echo)),
    }
}
