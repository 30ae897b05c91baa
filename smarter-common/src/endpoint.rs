//! Per-pod map layouts: where a pod is ([`EndpointValue`]), who it is ([`EndpointMeta`]) and
//! what it sent ([`EndpointStats`]).

use core::mem::{offset_of, size_of};

/// Key of [`crate::maps::ENDPOINTS`] and [`crate::maps::EP_META`]: a pod's IPv4 address in
/// network byte order, i.e. `u32::from_ne_bytes(octets)` — exactly the bytes of an IPv4 header's
/// address field read as a `u32`, so the datapath uses header fields as keys without swapping.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// IPv4 address, network byte order.
    pub addr: u32,
}

impl EndpointKey {
    /// The key of the address `a.b.c.d` given as `[a, b, c, d]`.
    #[must_use]
    pub const fn from_octets(octets: [u8; 4]) -> Self {
        Self {
            addr: u32::from_ne_bytes(octets),
        }
    }

    /// The address as `[a, b, c, d]`.
    #[must_use]
    pub const fn octets(self) -> [u8; 4] {
        self.addr.to_ne_bytes()
    }
}

/// Value of [`crate::maps::ENDPOINTS`]: where a pod is attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointValue {
    /// Ifindex of the pod's host-side veth (in the node's namespace); `bpf_redirect_peer` to it
    /// delivers into the pod.
    pub ifindex: u32,
    /// `EP_F_*` flags; none are defined yet, must be 0.
    pub flags: u32,
    /// The pod interface's MAC address.
    pub mac: [u8; 6],
    /// Explicit padding, must be 0.
    pub pad: [u8; 2],
}

/// Value of [`crate::maps::EP_META`]: who a pod is, for operators (`smarter-bpfctl`) and garbage
/// collection. The kernel never reads it. Text fields are UTF-8, NUL-padded, and truncated (at a
/// character boundary) when longer than the field; see [`encode_field`] and [`decode_field`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointMeta {
    /// CNI container id (64 hex characters for containerd/CRI-O, so often not NUL-terminated).
    pub container_id: [u8; 64],
    /// Kubernetes namespace of the pod (`K8S_POD_NAMESPACE`), at most 63 bytes in Kubernetes.
    pub pod_namespace: [u8; 64],
    /// Kubernetes pod name (`K8S_POD_NAME`).
    pub pod_name: [u8; 128],
    /// Host-side veth name.
    pub host_ifname: [u8; 16],
    /// Interface name inside the pod (`CNI_IFNAME`).
    pub pod_ifname: [u8; 16],
}

impl Default for EndpointMeta {
    fn default() -> Self {
        Self {
            container_id: [0; 64],
            pod_namespace: [0; 64],
            pod_name: [0; 128],
            host_ifname: [0; 16],
            pod_ifname: [0; 16],
        }
    }
}

/// Value of [`crate::maps::EP_STATS`] (per CPU): what a pod sent through its host veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Packets.
    pub packets: u64,
    /// Bytes (`skb->len`, link-layer header included).
    pub bytes: u64,
}

/// `s` as a NUL-padded field of `N` bytes, truncated at a character boundary when longer.
#[must_use]
pub fn encode_field<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let mut len = s.len().min(N);
    while !s.is_char_boundary(len) {
        len -= 1;
    }
    out[..len].copy_from_slice(&s.as_bytes()[..len]);
    out
}

/// The text of a NUL-padded field: bytes up to the first NUL (or the end), cut before any
/// invalid UTF-8.
#[must_use]
pub fn decode_field(field: &[u8]) -> &str {
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let bytes = &field[..len];
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        // `valid_up_to` is a character boundary, so this cannot fail.
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

const _: () = {
    assert!(size_of::<EndpointKey>() == 4);
    assert!(size_of::<EndpointValue>() == 16);
    assert!(offset_of!(EndpointValue, flags) == 4);
    assert!(offset_of!(EndpointValue, mac) == 8);
    assert!(offset_of!(EndpointValue, pad) == 14);
    assert!(size_of::<EndpointMeta>() == 288);
    assert!(offset_of!(EndpointMeta, pod_namespace) == 64);
    assert!(offset_of!(EndpointMeta, pod_name) == 128);
    assert!(offset_of!(EndpointMeta, host_ifname) == 256);
    assert!(offset_of!(EndpointMeta, pod_ifname) == 272);
    assert!(size_of::<EndpointStats>() == 16);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_network_byte_order() {
        let key = EndpointKey::from_octets([172, 39, 0, 3]);
        assert_eq!(key.addr.to_ne_bytes(), [172, 39, 0, 3]);
        assert_eq!(u32::from_be(key.addr), 0xac27_0003);
        assert_eq!(key.octets(), [172, 39, 0, 3]);
    }

    #[test]
    fn fields_round_trip_and_truncate() {
        let f: [u8; 8] = encode_field("kube");
        assert_eq!(&f, b"kube\0\0\0\0");
        assert_eq!(decode_field(&f), "kube");
        let full: [u8; 4] = encode_field("abcdef");
        assert_eq!(decode_field(&full), "abcd");
        // "é" is two bytes: never split a character.
        let cut: [u8; 4] = encode_field("abcé");
        assert_eq!(decode_field(&cut), "abc");
        assert_eq!(decode_field(&[b'a', 0xff, b'b']), "a");
        assert_eq!(decode_field(&[]), "");
    }
}
