//! The IPv6 matrix's probes (`six.rs`): UDP, TCP and ICMPv6 echo from real sockets with the
//! hop limit set per socket; the kernel fragments what is larger than the path, as a pod's
//! stack does.

use std::io::{Read as _, Write as _};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd as _;

use nix::libc;
use socket2::{Domain, Protocol, Socket, Type};

use crate::probe::payload;
use crate::six::X;

/// ICMPv6 echo request and reply types.
const ECHO_REQUEST: u8 = 128;
const ECHO_REPLY: u8 = 129;

/// The hop limit and the extension header of a probe's packets.
type Shape = (u8, X);

fn client(kind: Type, proto: Option<Protocol>, (hops, x): Shape, timeout: Duration) -> Socket {
    let s = Socket::new(Domain::IPV6, kind, proto).expect("IPv6 socket");
    s.set_unicast_hops_v6(u32::from(hops))
        .expect("IPV6_UNICAST_HOPS");
    let opt = match x {
        X::No => None,
        X::Dst => Some(libc::IPV6_DSTOPTS),
        X::Hbh => Some(libc::IPV6_HOPOPTS),
    };
    if let Some(opt) = opt {
        // An 8-byte header of one PadN option (the kernel fills in the next header).
        let hdr = [0u8, 0, 1, 4, 0, 0, 0, 0];
        // SAFETY: a valid socket and an 8-byte buffer of the length given.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IPV6,
                opt,
                hdr.as_ptr().cast(),
                hdr.len() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "{x:?}: {}", std::io::Error::last_os_error());
    }
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s
}

fn recv(s: &Socket, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout; recv only writes.
    let uninit = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) };
    s.recv(uninit).ok()
}

/// UDP: `size` bytes to `to`, answered when the same bytes come back.
pub fn udp(to: SocketAddrV6, size: usize, shape: Shape, salt: u8, timeout: Duration) -> bool {
    let data = payload(size, salt);
    let s = client(Type::DGRAM, None, shape, timeout);
    if s.connect(&SocketAddr::V6(to).into()).is_err() || s.send(&data).is_err() {
        return false;
    }
    let mut buf = vec![0u8; size + 64];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match recv(&s, &mut buf) {
            Some(n) if buf[..n] == data[..] => return true,
            Some(_) => {}
            None => return false,
        }
    }
    false
}

/// TCP: connect, send `size` bytes, read them back.
pub fn tcp(to: SocketAddrV6, size: usize, shape: Shape, salt: u8, timeout: Duration) -> bool {
    let data = payload(size, salt);
    let s = client(Type::STREAM, None, shape, timeout);
    if s.connect_timeout(&SocketAddr::V6(to).into(), timeout)
        .is_err()
    {
        return false;
    }
    let mut stream: std::net::TcpStream = s.into();
    if stream.write_all(&data).is_err() {
        return false;
    }
    let mut back = vec![0u8; size];
    stream.read_exact(&mut back).is_ok() && back == data
}

/// ICMPv6 echo of `size` payload bytes (a raw socket: the kernel fills the checksum), answered
/// when a reply with the request's identifier, sequence and payload comes back.
pub fn echo(to: SocketAddrV6, size: usize, shape: Shape, salt: u8, timeout: Duration) -> bool {
    let s = client(Type::RAW, Some(Protocol::ICMPV6), shape, timeout);
    let id = 0x6c00 | u16::from(salt);
    let seq = 1u16;
    let mut msg = vec![ECHO_REQUEST, 0, 0, 0];
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(&payload(size, salt));
    if s.send_to(&msg, &SocketAddr::V6(to).into()).is_err() {
        return false;
    }
    let mut buf = vec![0u8; msg.len() + 64];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Some(n) = recv(&s, &mut buf) else {
            return false;
        };
        // Raw ICMPv6 sockets get the ICMPv6 message without the IPv6 header.
        if n == msg.len() && buf[0] == ECHO_REPLY && buf[4..n] == msg[4..] {
            return true;
        }
    }
    false
}
