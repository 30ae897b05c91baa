//! The generated traffic matrix and the probes that run one case: real sockets in the pod, wan
//! and node namespaces (UDP, TCP, raw ICMP and raw sockets of port-less protocols), with IP
//! options and TTL set per socket.

use std::io::{Read as _, Write as _};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

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

/// Every payload size boundary of a 1500-byte MTU path for a header of `l4` bytes after a
/// 20-byte (or 24 with options) IPv4 header: around each fragment boundary up to past 9000.
fn sizes(l4: usize, options: bool) -> Vec<usize> {
    let ip = if options { 24 } else { 20 };
    let per_frag = (1500 - ip) / 8 * 8;
    let mut out = vec![0, 1, 2, 5, 6, 7, 8, 9, 100];
    for frags in 1..=7 {
        // The largest payload that fits `frags` fragments, and one byte more.
        let fit = if frags == 1 {
            1500 - ip - l4
        } else {
            per_frag * (frags - 1) + (1500 - ip) - l4
        };
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
    cases
}

/// The payload of a case: distinct per size so echoes cannot be confused.
pub fn payload(size: usize, salt: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect()
}

/// Sets four bytes of IP options (NOP NOP NOP EOL) on `s`.
pub fn set_options(s: &Socket) {
    let opts = [1u8, 1, 1, 0];
    // SAFETY: a valid fd, a pointer to 4 readable bytes and their length.
    let r = unsafe {
        nix::libc::setsockopt(
            s.as_raw_fd(),
            nix::libc::IPPROTO_IP,
            nix::libc::IP_OPTIONS,
            opts.as_ptr().cast(),
            opts.len() as u32,
        )
    };
    assert_eq!(r, 0, "IP_OPTIONS: {}", std::io::Error::last_os_error());
}

/// Lets the kernel fragment datagrams larger than the path MTU (no DF).
fn allow_fragments(s: &Socket) {
    let v: i32 = nix::libc::IP_PMTUDISC_DONT;
    // SAFETY: a valid fd and a pointer to an int with its size.
    let r = unsafe {
        nix::libc::setsockopt(
            s.as_raw_fd(),
            nix::libc::IPPROTO_IP,
            nix::libc::IP_MTU_DISCOVER,
            (&raw const v).cast(),
            size_of::<i32>() as u32,
        )
    };
    assert_eq!(r, 0, "IP_MTU_DISCOVER: {}", std::io::Error::last_os_error());
}

fn recv(s: &Socket, buf: &mut [u8]) -> Option<(usize, Ipv4Addr)> {
    // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout; recv only writes.
    let uninit = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) };
    let (n, from) = s.recv_from(uninit).ok()?;
    Some((n, *from.as_socket_ipv4()?.ip()))
}

/// A client socket of `kind` configured for `case`.
fn client(kind: Type, proto: Option<Protocol>, case: &Case, timeout: Duration) -> Socket {
    let s = Socket::new(Domain::IPV4, kind, proto).expect("socket");
    s.set_ttl_v4(u32::from(case.ttl)).expect("IP_TTL");
    if case.options {
        set_options(&s);
    }
    allow_fragments(&s);
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s
}

/// Runs the sending side of `case` to `to` (in the calling thread's namespace): sends, waits
/// up to `timeout` for the echo, and says whether the same payload came back.
pub fn probe(case: &Case, to: SocketAddrV4, salt: u8, timeout: Duration) -> bool {
    let mut data = payload(case.size, salt);
    if case.proto == Proto::Raw(47) && data.len() >= 4 {
        // A well-formed GRE (version 0, carrying IPv4) header: the kernel's GRE tracker refuses
        // anything else.
        data[..4].copy_from_slice(&[0, 0, 0x08, 0x00]);
    }
    let deadline = Instant::now() + timeout;
    match case.proto {
        Proto::Udp => {
            let s = client(Type::DGRAM, None, case, timeout);
            if s.send_to(&data, &SocketAddr::V4(to).into()).is_err() {
                return false;
            }
            let mut buf = vec![0u8; 65536];
            while Instant::now() < deadline {
                match recv(&s, &mut buf) {
                    Some((n, _)) if buf[..n] == data[..] => return true,
                    Some(_) => {}
                    None => return false,
                }
            }
            false
        }
        Proto::Tcp => {
            let Ok(mut c) = TcpStream::connect_timeout(&SocketAddr::V4(to), timeout) else {
                return false;
            };
            let _ = c.set_read_timeout(Some(timeout));
            let writer = {
                let mut w = c.try_clone().expect("clone");
                let data = data.clone();
                std::thread::spawn(move || w.write_all(&data).is_ok())
            };
            let mut got = vec![0u8; data.len()];
            let ok = c.read_exact(&mut got).is_ok() && got == data;
            writer.join().unwrap_or(false) && ok
        }
        Proto::Echo => {
            let s = client(Type::RAW, Some(Protocol::ICMPV4), case, timeout);
            let id = 0x5a00 | u16::from(salt);
            let mut msg = vec![8u8, 0, 0, 0];
            msg.extend_from_slice(&id.to_be_bytes());
            msg.extend_from_slice(&1u16.to_be_bytes());
            msg.extend_from_slice(&data);
            let c = inet_csum(&msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
            if s.send_to(&msg, &SocketAddr::V4(to).into()).is_err() {
                return false;
            }
            await_raw(&s, *to.ip(), deadline, |icmp| {
                icmp.len() >= 8
                    && icmp[0] == 0
                    && icmp[4..6] == id.to_be_bytes()
                    && icmp[8..] == data[..]
            })
        }
        Proto::Raw(p) => {
            let s = client(Type::RAW, Some(Protocol::from(i32::from(p))), case, timeout);
            if s.send_to(&data, &SocketAddr::V4(to).into()).is_err() {
                return false;
            }
            await_raw(&s, *to.ip(), deadline, |payload| payload == data)
        }
    }
}

/// Waits on raw socket `s` until `deadline` for a packet from `from` whose payload (after its
/// IPv4 header) satisfies `wanted`.
fn await_raw(
    s: &Socket,
    from: Ipv4Addr,
    deadline: Instant,
    wanted: impl Fn(&[u8]) -> bool,
) -> bool {
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        match recv(s, &mut buf) {
            Some((n, src)) if src == from => {
                let hl = usize::from(buf[0] & 0x0f) * 4;
                if wanted(&buf[hl..n]) {
                    return true;
                }
            }
            Some(_) => {}
            None => return false,
        }
    }
    false
}

pub use smarter_testbed::inet_csum;

/// A raw-socket echo server for protocol `p` (in the calling thread's namespace): every
/// datagram from an address other than `me` is sent back with the same payload; the sources
/// seen are returned when `stop` is set.
pub fn raw_echo(p: u8, me: Ipv4Addr, stop: &std::sync::atomic::AtomicBool) -> Vec<Ipv4Addr> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(p)))).expect("raw");
    // Bound, so replies leave from the address the client sent to (a raw socket otherwise takes
    // the outgoing interface's address).
    s.bind(&SocketAddr::V4(SocketAddrV4::new(me, 0)).into())
        .expect("bind raw echo");
    allow_fragments(&s);
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Some((n, from)) = recv(&s, &mut buf) else {
            continue;
        };
        if from == me || n < 20 {
            continue;
        }
        seen.push(from);
        let hl = usize::from(buf[0] & 0x0f) * 4;
        let _ = s.send_to(
            &buf[hl..n],
            &SocketAddr::V4(SocketAddrV4::new(from, 0)).into(),
        );
    }
    seen
}

/// A UDP echo server on `at` (in the calling thread's namespace); returns the sources seen.
pub fn udp_echo(at: SocketAddrV4, stop: &std::sync::atomic::AtomicBool) -> Vec<Ipv4Addr> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("udp");
    s.set_reuse_address(true).unwrap();
    s.bind(&SocketAddr::V4(at).into()).expect("bind udp echo");
    allow_fragments(&s);
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: as in `recv`.
        let uninit = unsafe { &mut *(std::ptr::from_mut(&mut buf[..]) as *mut [MaybeUninit<u8>]) };
        let Ok((n, from)) = s.recv_from(uninit) else {
            continue;
        };
        if let Some(v4) = from.as_socket_ipv4() {
            seen.push(*v4.ip());
        }
        let _ = s.send_to(&buf[..n], &from);
    }
    seen
}
