//! The ICMP (IPv4) types NAT treats by name.

/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Destination unreachable (fragmentation needed included).
pub const DEST_UNREACH: u8 = 3;
/// Source quench.
pub const SOURCE_QUENCH: u8 = 4;
/// Redirect.
pub const REDIRECT: u8 = 5;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const PARAM_PROBLEM: u8 = 12;

/// The errors a pod may send about one of its flows (translated on the way out).
#[must_use]
pub const fn is_error_from_pod(kind: u8) -> bool {
    matches!(
        kind,
        DEST_UNREACH | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
    )
}

/// The errors about a NATed flow translated into its pod (PMTU, traceroute).
#[must_use]
pub const fn is_error_to_pod(kind: u8) -> bool {
    matches!(kind, DEST_UNREACH | TIME_EXCEEDED | PARAM_PROBLEM)
}

/// Query types with an identifier, requests (`outbound`) or replies: echo, timestamp,
/// information, address mask.
#[must_use]
pub const fn is_query(kind: u8, outbound: bool) -> bool {
    if outbound {
        matches!(kind, ECHO_REQUEST | 13 | 15 | 17)
    } else {
        matches!(kind, ECHO_REPLY | 14 | 16 | 18)
    }
}
