//! Which families hold a table of a given name, asked of nf_tables over netlink (one
//! `NFT_MSG_GETTABLE` dump) instead of running `nft -j list tables`: the eBPF datapath's ADD
//! and DEL look for leftover tables of the nftables datapath on every call, and starting
//! `nft` costs about 5 ms of a 10 ms CNI call. Callers fall back to `nft` on any error.

use std::io;

/// `NFNL_SUBSYS_NFTABLES << 8`.
const SUBSYS_NFTABLES: u16 = 10 << 8;
/// `NFT_MSG_NEWTABLE` (the dump's replies) and `NFT_MSG_GETTABLE` (the request).
const MSG_NEWTABLE: u16 = 0;
const MSG_GETTABLE: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NFTA_TABLE_NAME`.
const TABLE_NAME: u16 = 1;
const HDR: usize = 16;
const GENMSG: usize = 4;

/// The families (`inet`, `bridge`, `ip`, …) that hold a table named `table`, in the calling
/// thread's network namespace.
///
/// # Errors
///
/// When the netlink socket cannot be used, the kernel reports an error or the dump was
/// interrupted (callers then ask `nft`).
pub(super) fn table_families(table: &str) -> io::Result<Vec<String>> {
    use nix::libc;
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    let req = request(1);
    // SAFETY: `req` is valid for its length; the kernel is the default destination.
    if unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = usize::try_from(n).map_err(io::Error::other)?;
        if parse(&buf[..n], table, &mut found)? {
            return Ok(found);
        }
    }
}

/// The dump request with sequence number `seq`.
fn request(seq: u32) -> [u8; HDR + GENMSG] {
    let mut m = [0u8; HDR + GENMSG];
    m[0..4].copy_from_slice(&((HDR + GENMSG) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&(SUBSYS_NFTABLES | MSG_GETTABLE).to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nfgenmsg: family NFPROTO_UNSPEC (every family), version 0, res_id 0.
    m
}

/// Parses one datagram of the dump, adding the families of tables named `table` to `found`;
/// true when the dump is done.
fn parse(mut buf: &[u8], table: &str, found: &mut Vec<String>) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed nf_tables dump");
    while buf.len() >= HDR {
        let len = u32::from_ne_bytes(buf[0..4].try_into().map_err(|_| bad())?) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let flags = u16::from_ne_bytes([buf[6], buf[7]]);
        if len < HDR || len > buf.len() {
            return Err(bad());
        }
        let body = &buf[HDR..len];
        if flags & NLM_F_DUMP_INTR != 0 {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "nf_tables dump interrupted",
            ));
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = body
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(bad)?;
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
            }
            k if k == SUBSYS_NFTABLES | MSG_NEWTABLE && body.len() >= GENMSG => {
                if attr_str(&body[GENMSG..], TABLE_NAME).as_deref() == Some(table)
                    && let Some(f) = family_name(body[0])
                    && !found.iter().any(|x| x == f)
                {
                    found.push(f.to_string());
                }
            }
            _ => {}
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    Ok(false)
}

/// The string attribute `want` of an attribute list.
fn attr_str(mut attrs: &[u8], want: u16) -> Option<String> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == want {
            let v = &attrs[4..len];
            let v = v.split(|&b| b == 0).next().unwrap_or(v);
            return String::from_utf8(v.to_vec()).ok();
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

/// `nft`'s name of an `NFPROTO_*` family.
fn family_name(f: u8) -> Option<&'static str> {
    Some(match f {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_msg(family: u8, name: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        let payload = [name.as_bytes(), &[0]].concat();
        attr.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        attr.extend_from_slice(&TABLE_NAME.to_ne_bytes());
        attr.extend_from_slice(&payload);
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((HDR + GENMSG + attr.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&(SUBSYS_NFTABLES | MSG_NEWTABLE).to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&[family, 0, 0, 0]);
        m.extend_from_slice(&attr);
        m
    }

    fn done() -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((HDR + 4) as u32).to_ne_bytes());
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&[0; 14]);
        m
    }

    #[test]
    fn finds_the_families_of_the_named_table_only() {
        let buf = [
            table_msg(1, "smarter_smartnet"),
            table_msg(7, "smarter_smartnet"),
            table_msg(2, "filter"),
            table_msg(1, "smarter_other"),
        ]
        .concat();
        let mut found = Vec::new();
        assert!(!parse(&buf, "smarter_smartnet", &mut found).unwrap());
        assert_eq!(found, ["inet", "bridge"]);
        assert!(parse(&done(), "smarter_smartnet", &mut found).unwrap());
    }

    #[test]
    fn kernel_errors_and_truncation_are_errors() {
        let mut err = Vec::new();
        err.extend_from_slice(&((HDR + 4) as u32).to_ne_bytes());
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0; 10]);
        err.extend_from_slice(&(-1i32).to_ne_bytes());
        assert!(parse(&err, "t", &mut Vec::new()).is_err());
        let msg = table_msg(1, "t");
        assert!(parse(&msg[..msg.len() - 4], "t", &mut Vec::new()).is_err());
    }

    #[test]
    fn the_request_is_a_dump_of_every_family() {
        let r = request(7);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 0x0a01);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(r[16], 0);
    }
}
