//! `uplink`: which external interfaces pods may leave by ([`UplinkSelector`]) and its reader.

use serde_json::Value;

use crate::cni::CniError;
use crate::cni::json::Fields;
use crate::cni::names::validate_ifname;

/// Which of the node's external interfaces pods may leave by (NAT, node-local-only and the
/// leak backstop hold on each of them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum UplinkSelector {
    /// Every external interface (anything but the loopback, the bridge and its ports),
    /// following them as they come and go.
    #[default]
    Auto,
    /// This interface only.
    Named(String),
    /// These interfaces only.
    List(Vec<String>),
}

impl UplinkSelector {
    /// The interface names it restricts to; empty for [`Self::Auto`].
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::Auto => Vec::new(),
            Self::Named(n) => vec![n.clone()],
            Self::List(l) => l.clone(),
        }
    }
}

/// `uplink`: absent or `"auto"` (every external interface), an interface name, or a list of
/// interface names (those only).
pub(super) fn uplink(f: &Fields<'_>) -> Result<UplinkSelector, CniError> {
    let named = |key: &str, name: &str| {
        validate_ifname(name).map_err(|why| {
            f.invalid(
                key,
                &Value::String(name.to_owned()),
                format!("is not \"auto\" or a valid interface name: it {why}"),
            )
        })
    };
    if let Some(Value::Array(_)) = f.get("uplink") {
        let names = f.string_list("uplink")?;
        if names.is_empty() {
            return Err(f.invalid(
                "uplink",
                &Value::Array(Vec::new()),
                "is an empty list (leave it out for every external interface)",
            ));
        }
        for (i, name) in names.iter().enumerate() {
            named(&format!("uplink[{i}]"), name)?;
        }
        return Ok(UplinkSelector::List(names));
    }
    match f.string("uplink")? {
        None | Some("auto") => Ok(UplinkSelector::Auto),
        Some(name) => named("uplink", name).map(|()| UplinkSelector::Named(name.to_owned())),
    }
}
