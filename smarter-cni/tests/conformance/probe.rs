//! The probes that run one case of the matrix: real sockets in the pod, wan, sensor and node
//! namespaces (UDP, TCP, raw ICMP and raw sockets of port-less protocols, UDP with DF for PMTU
//! discovery), with IP options and TTL set per socket; and the echo servers they talk to.

use std::io::{Read as _, Write as _};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use smarter_testbed::packet;
use socket2::{Domain, Protocol, Socket, Type};

use crate::traffic::{Case, Proto};

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
    setsockopt_int(s, nix::libc::IP_MTU_DISCOVER, nix::libc::IP_PMTUDISC_DONT);
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
                    // The answer must come from the address asked (a translated reply that
                    // comes from elsewhere is not the conversation the sender started).
                    Some((n, from)) if buf[..n] == data[..] => {
                        if from == *to.ip() {
                            return true;
                        }
                        if std::env::var_os("CONFORMANCE_VERBOSE").is_some() {
                            eprintln!("  {case:?}: echo from {from}, not from {to}");
                        }
                    }
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
            let msg = packet::icmp4(8, 0, packet::id_seq(id, 1), &data);
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
        Proto::Pmtu => pmtu_probe(&data, case, to, timeout),
    }
}

/// The [`Proto::Pmtu`] probe: a connected UDP socket with DF (`IP_PMTUDISC_DO`) and
/// `IP_RECVERR` sends `data`; true when the echo comes back, or when the kernel reports
/// `EMSGSIZE` (an ICMP "fragmentation needed" reached the socket, so its inner header was
/// translated back) and the socket's path MTU (`IP_MTU`) went below 1500.
fn pmtu_probe(data: &[u8], case: &Case, to: SocketAddrV4, timeout: Duration) -> bool {
    let s = client(Type::DGRAM, None, case, timeout);
    setsockopt_int(&s, nix::libc::IP_MTU_DISCOVER, nix::libc::IP_PMTUDISC_DO);
    setsockopt_int(&s, nix::libc::IP_RECVERR, 1);
    if s.connect(&SocketAddr::V4(to).into()).is_err() {
        return false;
    }
    let learned = |s: &Socket| {
        let mut mtu: i32 = 0;
        let mut len = size_of::<i32>() as nix::libc::socklen_t;
        // SAFETY: a valid fd, a pointer to an int and its size.
        let r = unsafe {
            nix::libc::getsockopt(
                s.as_raw_fd(),
                nix::libc::IPPROTO_IP,
                nix::libc::IP_MTU,
                (&raw mut mtu).cast(),
                &raw mut len,
            )
        };
        r == 0 && mtu < 1500
    };
    if let Err(e) = s.send(data) {
        return e.raw_os_error() == Some(nix::libc::EMSGSIZE) && learned(&s);
    }
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        // SAFETY: as in `recv`.
        let uninit = unsafe { &mut *(std::ptr::from_mut(&mut buf[..]) as *mut [MaybeUninit<u8>]) };
        match s.recv(uninit) {
            Ok(n) if buf[..n] == data[..] => return true,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EMSGSIZE) => return learned(&s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            // Another ICMP error (e.g. unreachable): not the answer.
            Err(_) => return false,
        }
    }
    false
}

fn setsockopt_int(s: &Socket, opt: i32, v: i32) {
    // SAFETY: a valid fd and a pointer to an int with its size.
    let r = unsafe {
        nix::libc::setsockopt(
            s.as_raw_fd(),
            nix::libc::IPPROTO_IP,
            opt,
            (&raw const v).cast(),
            size_of::<i32>() as u32,
        )
    };
    assert_eq!(
        r,
        0,
        "setsockopt {opt}: {}",
        std::io::Error::last_os_error()
    );
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

/// A raw socket of protocol `p` bound to `me`, for [`raw_echo`] (in the calling thread's
/// namespace: the socket stays there whichever thread serves it).
pub fn bind_raw(p: u8, me: Ipv4Addr) -> Socket {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(p)))).expect("raw");
    // Bound, so replies leave from the address the client sent to (a raw socket otherwise takes
    // the outgoing interface's address).
    s.bind(&SocketAddr::V4(SocketAddrV4::new(me, 0)).into())
        .expect("bind raw echo");
    allow_fragments(&s);
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

/// A raw-socket echo server on `s` (from [`bind_raw`] for `me`): every datagram from an
/// address other than `me` is sent back with the same payload; the sources seen are returned
/// when `stop` is set.
pub fn raw_echo(s: &Socket, me: Ipv4Addr, stop: &std::sync::atomic::AtomicBool) -> Vec<Ipv4Addr> {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Some((n, from)) = recv(s, &mut buf) else {
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

/// A UDP socket bound to `at`, for [`udp_echo`] (in the calling thread's namespace: the
/// socket stays there whichever thread serves it).
pub fn bind_udp(at: SocketAddrV4) -> Socket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("udp");
    s.set_reuse_address(true).unwrap();
    s.bind(&SocketAddr::V4(at).into()).expect("bind udp echo");
    allow_fragments(&s);
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

/// A UDP echo server on `s` (from [`bind_udp`]) counting what it receives in `hits`; returns
/// the sources seen when `stop` is set.
pub fn udp_echo(
    s: &Socket,
    stop: &std::sync::atomic::AtomicBool,
    hits: &std::sync::atomic::AtomicUsize,
) -> Vec<Ipv4Addr> {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: as in `recv`.
        let uninit = unsafe { &mut *(std::ptr::from_mut(&mut buf[..]) as *mut [MaybeUninit<u8>]) };
        let Ok((n, from)) = s.recv_from(uninit) else {
            continue;
        };
        hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(v4) = from.as_socket_ipv4() {
            seen.push(*v4.ip());
        }
        let _ = s.send_to(&buf[..n], &from);
    }
    seen
}
