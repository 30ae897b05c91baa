//! The CNI error result: a numeric code, a short message and optional details.
//!
//! Every failure that reaches the runtime is a [`CniError`]; [`CniError::to_json`] renders the
//! spec's error object, which the binary prints on stdout before exiting non-zero.

use std::fmt;

use serde_json::{Value, json};

/// An error reported to the container runtime (CNI spec 1.1.0, section 5 "Error").
///
/// Codes 0–99 are reserved by the spec; 100 and up are ours:
///
/// | code | const | meaning |
/// |-----:|-------|---------|
/// | 1 | [`INCOMPATIBLE_VERSION`](Self::INCOMPATIBLE_VERSION) | the config's `cniVersion` is not supported, or too old for the verb |
/// | 2 | [`UNSUPPORTED_FIELD`](Self::UNSUPPORTED_FIELD) | unknown key in the network config, or unknown/malformed `CNI_ARGS` |
/// | 3 | [`UNKNOWN_CONTAINER`](Self::UNKNOWN_CONTAINER) | the container (attachment) does not exist |
/// | 4 | [`INVALID_ENV`](Self::INVALID_ENV) | missing or invalid `CNI_*` environment variables (the message names them) |
/// | 5 | [`IO`](Self::IO) | I/O failure, e.g. reading stdin |
/// | 6 | [`DECODE`](Self::DECODE) | the config (or `prevResult`) is not decodable JSON of the expected shape |
/// | 7 | [`INVALID_CONFIG`](Self::INVALID_CONFIG) | a config value is invalid (the message names key and value) |
/// | 11 | [`TRY_AGAIN_LATER`](Self::TRY_AGAIN_LATER) | transient condition; the runtime should retry |
/// | 50 | [`NOT_AVAILABLE`](Self::NOT_AVAILABLE) | STATUS: the plugin cannot service ADD |
/// | 51 | [`LIMITED_CONNECTIVITY`](Self::LIMITED_CONNECTIVITY) | STATUS: not available, and existing pods may have limited connectivity |
/// | 100 | [`IPAM_EXHAUSTED`](Self::IPAM_EXHAUSTED) | no free address left in the subnet |
/// | 101 | [`IP_UNAVAILABLE`](Self::IP_UNAVAILABLE) | the requested address is taken or outside the subnet |
/// | 102 | [`NETLINK`](Self::NETLINK) | a netlink operation (link, address, route, namespace) failed |
/// | 103 | [`EBPF`](Self::EBPF) | loading, attaching or updating the eBPF datapath failed |
/// | 104 | [`ATTACHMENT_EXISTS`](Self::ATTACHMENT_EXISTS) | ADD for a `(containerID, ifname)` that is already attached |
/// | 105 | [`CHECK_MISMATCH`](Self::CHECK_MISMATCH) | CHECK found state differing from `prevResult` or our records |
/// | 106 | [`STATE_STORE`](Self::STATE_STORE) | reading or writing the attachment records in `stateDir` failed |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// Numeric error code (see the table above).
    pub code: u32,
    /// Short message characterising the error; names the offending key, variable or value.
    pub msg: String,
    /// Longer description (e.g. the underlying cause); omitted from JSON when empty.
    pub details: String,
}

/// Defines one named constructor per error code, each documented with its code.
macro_rules! constructors {
    ($($(#[$doc:meta])* $fn_name:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $fn_name(msg: impl Into<String>) -> Self {
                Self::new(Self::$code, msg, "")
            }
        )*
    };
}

impl CniError {
    /// Code 1: incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Code 2: unsupported field in the network config or `CNI_ARGS`.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Code 3: container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Code 4: invalid or missing environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// Code 5: I/O failure.
    pub const IO: u32 = 5;
    /// Code 6: failed to decode content.
    pub const DECODE: u32 = 6;
    /// Code 7: invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Code 11: try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// Code 50: plugin not available (STATUS).
    pub const NOT_AVAILABLE: u32 = 50;
    /// Code 51: plugin not available and existing containers may have limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Code 100: the IPAM subnet has no free address.
    pub const IPAM_EXHAUSTED: u32 = 100;
    /// Code 101: the requested IP is unavailable.
    pub const IP_UNAVAILABLE: u32 = 101;
    /// Code 102: a netlink operation failed.
    pub const NETLINK: u32 = 102;
    /// Code 103: the eBPF datapath failed.
    pub const EBPF: u32 = 103;
    /// Code 104: the attachment already exists.
    pub const ATTACHMENT_EXISTS: u32 = 104;
    /// Code 105: CHECK found a mismatch.
    pub const CHECK_MISMATCH: u32 = 105;
    /// Code 106: the state store failed.
    pub const STATE_STORE: u32 = 106;
    /// Code 107: the nftables datapath failed.
    pub const NFTABLES: u32 = 107;
    /// Code 108: a requested hostPort is already mapped to another pod.
    pub const HOSTPORT_TAKEN: u32 = 108;

    /// Creates an error from its three parts (`details` may be empty).
    #[must_use]
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Creates an error whose details are `source` and its whole `source()` chain,
    /// joined with `": "`.
    #[must_use]
    pub fn from_source(
        code: u32,
        msg: impl Into<String>,
        source: &(dyn std::error::Error + 'static),
    ) -> Self {
        let mut details = source.to_string();
        let mut next = source.source();
        while let Some(cause) = next {
            details.push_str(": ");
            details.push_str(&cause.to_string());
            next = cause.source();
        }
        Self::new(code, msg, details)
    }

    /// Returns this error with `details` replaced.
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    constructors! {
        /// Code 1 ([`Self::INCOMPATIBLE_VERSION`]).
        incompatible_version => INCOMPATIBLE_VERSION;
        /// Code 2 ([`Self::UNSUPPORTED_FIELD`]).
        unsupported_field => UNSUPPORTED_FIELD;
        /// Code 3 ([`Self::UNKNOWN_CONTAINER`]).
        unknown_container => UNKNOWN_CONTAINER;
        /// Code 4 ([`Self::INVALID_ENV`]).
        invalid_env => INVALID_ENV;
        /// Code 5 ([`Self::IO`]).
        io => IO;
        /// Code 6 ([`Self::DECODE`]).
        decode => DECODE;
        /// Code 7 ([`Self::INVALID_CONFIG`]).
        invalid_config => INVALID_CONFIG;
        /// Code 11 ([`Self::TRY_AGAIN_LATER`]).
        try_again_later => TRY_AGAIN_LATER;
        /// Code 50 ([`Self::NOT_AVAILABLE`]).
        not_available => NOT_AVAILABLE;
        /// Code 51 ([`Self::LIMITED_CONNECTIVITY`]).
        limited_connectivity => LIMITED_CONNECTIVITY;
        /// Code 100 ([`Self::IPAM_EXHAUSTED`]).
        ipam_exhausted => IPAM_EXHAUSTED;
        /// Code 101 ([`Self::IP_UNAVAILABLE`]).
        ip_unavailable => IP_UNAVAILABLE;
        /// Code 102 ([`Self::NETLINK`]).
        netlink => NETLINK;
        /// Code 103 ([`Self::EBPF`]).
        ebpf => EBPF;
        /// Code 104 ([`Self::ATTACHMENT_EXISTS`]).
        attachment_exists => ATTACHMENT_EXISTS;
        /// Code 105 ([`Self::CHECK_MISMATCH`]).
        check_mismatch => CHECK_MISMATCH;
        /// Code 106 ([`Self::STATE_STORE`]).
        state_store => STATE_STORE;
    }

    /// Renders the spec's error object `{"cniVersion", "code", "msg", "details"}`;
    /// `details` is omitted when empty.
    #[must_use]
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut out = json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            out["details"] = Value::String(self.details.clone());
        }
        out
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_omits_empty_details() {
        let err = CniError::invalid_config("subnet \"x\" is not an IPv4 CIDR");
        assert_eq!(
            err.to_json("1.1.0"),
            json!({"cniVersion": "1.1.0", "code": 7, "msg": "subnet \"x\" is not an IPv4 CIDR"})
        );
    }

    #[test]
    fn json_includes_details() {
        let err =
            CniError::ipam_exhausted("no free address in 10.0.0.0/30").with_details("2 in use");
        assert_eq!(
            err.to_json("0.4.0"),
            json!({
                "cniVersion": "0.4.0",
                "code": 100,
                "msg": "no free address in 10.0.0.0/30",
                "details": "2 in use"
            })
        );
    }

    #[test]
    fn constructors_set_spec_codes() {
        let cases = [
            (CniError::incompatible_version(""), 1),
            (CniError::unsupported_field(""), 2),
            (CniError::unknown_container(""), 3),
            (CniError::invalid_env(""), 4),
            (CniError::io(""), 5),
            (CniError::decode(""), 6),
            (CniError::invalid_config(""), 7),
            (CniError::try_again_later(""), 11),
            (CniError::not_available(""), 50),
            (CniError::limited_connectivity(""), 51),
            (CniError::ipam_exhausted(""), 100),
            (CniError::ip_unavailable(""), 101),
            (CniError::netlink(""), 102),
            (CniError::ebpf(""), 103),
            (CniError::attachment_exists(""), 104),
            (CniError::check_mismatch(""), 105),
            (CniError::state_store(""), 106),
        ];
        for (err, code) in cases {
            assert_eq!(err.code, code);
        }
    }

    #[test]
    fn display_and_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);

        let inner = std::io::Error::other("inner");
        let err = CniError::from_source(CniError::IO, "reading stdin", &Outer(inner));
        assert_eq!(err.details, "outer: inner");
        assert_eq!(err.to_string(), "reading stdin: outer: inner");
        assert_eq!(CniError::io("x").to_string(), "x");
    }
}
