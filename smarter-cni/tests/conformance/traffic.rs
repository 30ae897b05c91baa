//! The generated traffic matrix: every case that runs — direction, protocol, size (around
//! every fragment boundary), IP options and TTL. The probes that run one case are in
//! `probe.rs`.

/// Who sends a case's first packet, to where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// A pod to the wan server (through the NAT), which echoes.
    PodToWan,
    /// The wan to a pod's own address, unsolicited (with a route for the pod subnet).
    WanToPod,
    /// The wan to the node's uplink address on a hostPort.
    WanToHostPort,
    /// Another pod to the node's uplink address on a hostPort (hairpin).
    PodToHostPort,
    /// A process on the node to its uplink address on a hostPort.
    NodeToHostPort,
    /// A pod to a sensor on the LAN (through the NAT), which echoes.
    PodToSensor,
    /// A sensor on the LAN to the node's LAN address on a hostPort.
    SensorToHostPort,
    /// A sensor on the LAN to a pod's own address, unsolicited (the LAN routes the pod
    /// subnet to the gateway).
    SensorToPod,
    /// A pod to a server behind a smaller-MTU link beyond the wan (PMTU discovery).
    PodToFar,
}

/// The transport of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// UDP (an echo server answers with the same payload).
    Udp,
    /// TCP (an echo server answers with the same bytes).
    Tcp,
    /// ICMP echo (the kernel answers).
    Echo,
    /// A protocol without ports by number (a raw socket echoes the payload).
    Raw(u8),
    /// UDP with DF set: answered when the echo comes back (the datagram fits the path) or
    /// when the sender learns a smaller path MTU from an ICMP "fragmentation needed" (which
    /// must cross the NAT back to the pod).
    Pmtu,
}

/// One generated case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Case {
    /// Direction.
    pub dir: Direction,
    /// Protocol.
    pub proto: Proto,
    /// Payload bytes.
    pub size: usize,
    /// Four bytes of IP options (NOP, NOP, NOP, EOL) on the sender's packets.
    pub options: bool,
    /// The sender's TTL.
    pub ttl: u8,
}

impl Case {
    /// `size` bytes of `proto` in direction `dir`, without IP options, TTL 64.
    pub fn plain(dir: Direction, proto: Proto, size: usize) -> Self {
        Self {
            dir,
            proto,
            size,
            options: false,
            ttl: 64,
        }
    }

    /// A short description: `PodToWan/Udp/1472B`, `+opts` with options, `/ttl1` below 64.
    pub fn label(&self) -> String {
        let mut s = format!("{:?}/{:?}/{}B", self.dir, self.proto, self.size);
        if self.options {
            s.push_str("+opts");
        }
        if self.ttl != 64 {
            s.push_str(&format!("/ttl{}", self.ttl));
        }
        s
    }
}

/// The largest payload of a header of `l4` bytes after a 20-byte (24 with options) IPv4 header
/// that fits `frags` fragments on a path of MTU `mtu`.
fn fit(mtu: usize, l4: usize, options: bool, frags: usize) -> usize {
    let ip = if options { 24 } else { 20 };
    let per_frag = (mtu - ip) / 8 * 8;
    per_frag * (frags - 1) + (mtu - ip) - l4
}

/// Every payload size boundary of a 1500-byte MTU path for a header of `l4` bytes after a
/// 20-byte (or 24 with options) IPv4 header: around each fragment boundary up to past 9000.
fn sizes(l4: usize, options: bool) -> Vec<usize> {
    let mut out = vec![0, 1, 2, 5, 6, 7, 8, 9, 100];
    for frags in 1..=7 {
        // The largest payload that fits `frags` fragments, and one byte more.
        let fit = fit(1500, l4, options, frags);
        out.extend([fit - 1, fit, fit + 1]);
    }
    out.extend([8972, 9000, 9100]);
    out.sort_unstable();
    out.dedup();
    out
}

/// The whole matrix: every protocol through every size boundary with and without options,
/// TTL 1 and 2 at a few sizes, and the inbound/hostPort directions.
pub fn matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |dir, proto, size, options, ttl| {
        cases.push(Case {
            dir,
            proto,
            size,
            options,
            ttl,
        });
    };
    use Direction::*;
    for (proto, l4) in [
        (Proto::Udp, 8),
        (Proto::Echo, 8),
        (Proto::Raw(47), 0),
        (Proto::Raw(50), 0),
        (Proto::Raw(132), 0),
        (Proto::Raw(253), 0),
    ] {
        for options in [false, true] {
            let all = sizes(l4, options);
            // Port-less protocols and options: every other boundary keeps the run short.
            let step = if matches!(proto, Proto::Udp) && !options {
                1
            } else {
                2
            };
            for size in all.into_iter().step_by(step) {
                add(PodToWan, proto, size, options, 64);
            }
        }
        for ttl in [1, 2] {
            for size in [1, 4000] {
                add(PodToWan, proto, size, false, ttl);
            }
        }
    }
    for size in [1, 1000, 100_000] {
        add(PodToWan, Proto::Tcp, size, false, 64);
    }
    for dir in [WanToPod, WanToHostPort, PodToHostPort, NodeToHostPort] {
        for size in [1, 1472, 4000] {
            add(dir, Proto::Udp, size, false, 64);
        }
        add(dir, Proto::Tcp, 1000, false, 64);
    }
    cases.extend(pmtu());
    cases
}

/// PMTU discovery through the NAT: datagrams with DF to the server behind the 1280-byte link
/// that fit it (1200), that the wan router refuses (1300: its ICMP error must be translated
/// back to the pod) and that a 1428-byte uplink refuses itself (1420).
pub fn pmtu() -> Vec<Case> {
    [1200, 1300, 1420]
        .into_iter()
        .map(|size| Case {
            dir: Direction::PodToFar,
            proto: Proto::Pmtu,
            size,
            options: false,
            ttl: 64,
        })
        .collect()
}

/// A representative subset of [`matrix`] for a path of MTU `mtu` (the other topologies):
/// UDP around the first and second fragment boundary of that MTU, small and with options,
/// 9000 bytes; TCP 1 B, 1000 B, 100 kB; ICMP echo small and fragmented; GRE and SCTP by
/// address; TTL 1; unsolicited wan → pod; wan, hairpin and node → hostPort; PMTU discovery.
pub fn subset(mtu: usize) -> Vec<Case> {
    use Direction::*;
    let case = |dir, proto, size, options| Case {
        dir,
        proto,
        size,
        options,
        ttl: 64,
    };
    let mut cases = Vec::new();
    let udp1 = fit(mtu, 8, false, 1);
    let udp2 = fit(mtu, 8, false, 2);
    for size in [1, 100, udp1, udp1 + 1, udp2 + 1, 9000] {
        cases.push(case(PodToWan, Proto::Udp, size, false));
    }
    cases.push(case(PodToWan, Proto::Udp, fit(mtu, 8, true, 1) + 1, true));
    for size in [1, 1000, 100_000] {
        cases.push(case(PodToWan, Proto::Tcp, size, false));
    }
    for size in [1, fit(mtu, 8, false, 1) + 1, 4000] {
        cases.push(case(PodToWan, Proto::Echo, size, false));
    }
    for p in [47, 132] {
        cases.push(case(PodToWan, Proto::Raw(p), 100, false));
    }
    cases.push(Case {
        ttl: 1,
        ..case(PodToWan, Proto::Udp, 1, false)
    });
    for dir in [WanToPod, WanToHostPort, PodToHostPort, NodeToHostPort] {
        for size in [1, 4000] {
            cases.push(case(dir, Proto::Udp, size, false));
        }
        cases.push(case(dir, Proto::Tcp, 1000, false));
    }
    cases.extend(pmtu());
    cases
}

/// The core of the matrix for topologies whose point is elsewhere (the LAN, fail-over): a
/// pod to the wan (UDP small and fragmented, TCP, ping), unsolicited wan → pod, and a hostPort
/// from the wan, from a pod (hairpin) and from the node.
pub fn core() -> Vec<Case> {
    use Direction::*;
    let case = Case::plain;
    let mut cases = vec![
        case(PodToWan, Proto::Udp, 1),
        case(PodToWan, Proto::Udp, 4000),
        case(PodToWan, Proto::Tcp, 1000),
        case(PodToWan, Proto::Echo, 1),
        case(WanToPod, Proto::Udp, 1),
    ];
    for dir in [WanToHostPort, PodToHostPort, NodeToHostPort] {
        cases.push(case(dir, Proto::Udp, 1));
        cases.push(case(dir, Proto::Tcp, 1000));
    }
    cases
}

/// The LAN's own cases: a pod to a sensor (UDP, TCP, ping), a sensor to a hostPort on the
/// node's LAN address, a sensor to a pod's address unsolicited.
pub fn lan() -> Vec<Case> {
    use Direction::*;
    let case = Case::plain;
    let mut cases = Vec::new();
    for size in [1, 1472, 4000] {
        cases.push(case(PodToSensor, Proto::Udp, size));
    }
    cases.push(case(PodToSensor, Proto::Tcp, 1000));
    cases.push(case(PodToSensor, Proto::Tcp, 100_000));
    for size in [1, 4000] {
        cases.push(case(PodToSensor, Proto::Echo, size));
    }
    for dir in [SensorToHostPort, SensorToPod] {
        for size in [1, 4000] {
            cases.push(case(dir, Proto::Udp, size));
        }
        cases.push(case(dir, Proto::Tcp, 1000));
    }
    cases
}
