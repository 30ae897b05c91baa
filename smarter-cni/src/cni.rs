//! The CNI protocol (spec 1.1.0; also 1.0.0 and 0.4.0): pure parsing and rendering, no side
//! effects.
//!
//! - [`CniEnv`] — the `CNI_*` environment, from an injected lookup ([`env`](mod@env)), with
//!   [`CniArgs`] ([`args`]);
//! - [`NetConf`] — the network config from stdin ([`config`]), with [`RuntimeConfig`]
//!   ([`runtime_config`]);
//! - [`Version`] — negotiation and the VERSION answer ([`version`]);
//! - [`CniResult`] — the ADD result in any supported version, and `prevResult` parsing
//!   ([`result`]);
//! - [`CniError`] — the error object and codes ([`error`]);
//! - [`names`], [`mac`] — identifier and MAC address validation.
//!
//! A verb handler typically does: `CniEnv::from_lookup` → `NetConf::parse` →
//! `version::check_verb` → work → `CniResult::to_json(conf.cni_version)`, and on failure
//! prints `CniError::to_json` with the config's version (or [`Version::LATEST`] if the config
//! could not be read).

pub mod args;
pub mod config;
pub mod env;
pub mod error;
pub mod fuzzing;
mod json;
pub mod mac;
pub mod names;
pub mod result;
pub mod runtime_config;
pub mod version;

pub use args::CniArgs;
pub use config::{
    CtTimeoutsConf, DatapathMode, Nat64Prefix, NetConf, PortRange, TcAttachMode, UplinkSelector,
    ValidAttachment,
};
pub use env::{CniEnv, Verb};
pub use error::CniError;
pub use mac::MacAddr;
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use runtime_config::{PortMapping, Protocol, RuntimeConfig, RuntimeDns};
pub use version::{Version, negotiate};
