//! Reading the network configuration the agent shares with the plugin: a CNI `.conf` (one
//! plugin object) or `.conflist` (the `smarter-cni` entry of `plugins`, completed with the
//! list's `cniVersion` and `name`, as a runtime does before calling the plugin).

use serde_json::Value;

use crate::cni::NetConf;
use crate::cni::config::PLUGIN_TYPE;

/// Why a configuration could not be used by the agent.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// Not JSON, or not an object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// A conflist without a `smarter-cni` plugin.
    #[error("the conflist has no plugin of type \"{PLUGIN_TYPE}\"")]
    NoPlugin,
    /// The plugin entry is invalid (the plugin's own validation).
    #[error("invalid smarter-cni configuration: {0}")]
    Invalid(String),
}

/// Parses a `.conf` or `.conflist` document into the plugin's [`NetConf`].
///
/// # Errors
/// [`ConfError`] naming what is wrong.
pub fn parse_network_config(bytes: &[u8]) -> Result<NetConf, ConfError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ConfError::Json(e.to_string()))?;
    let Value::Object(top) = value else {
        return Err(ConfError::Json("top level is not an object".into()));
    };
    let plugin = match top.get("plugins") {
        Some(Value::Array(plugins)) => {
            let Some(Value::Object(entry)) = plugins
                .iter()
                .find(|p| p.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE))
            else {
                return Err(ConfError::NoPlugin);
            };
            let mut entry = entry.clone();
            for key in ["cniVersion", "name"] {
                if let Some(v) = top.get(key) {
                    entry.insert(key.to_string(), v.clone());
                }
            }
            entry
        }
        Some(_) => return Err(ConfError::Json("\"plugins\" is not an array".into())),
        None => top,
    };
    let bytes =
        serde_json::to_vec(&Value::Object(plugin)).map_err(|e| ConfError::Json(e.to_string()))?;
    NetConf::parse(&bytes).map_err(|e| ConfError::Invalid(e.msg.clone()))
}

#[cfg(test)]
mod tests {
    use super::{ConfError, parse_network_config};
    use crate::cni::UplinkSelector;

    #[test]
    fn conflist_takes_the_smarter_entry_with_list_name_and_version() {
        let list = br#"{"cniVersion":"1.0.0","name":"edge","plugins":[
            {"type":"smarter-cni","bridge":"br9","uplink":"wlan0","bpffsDir":"/sys/fs/bpf/x"},
            {"type":"tuning"}]}"#;
        let conf = parse_network_config(list).expect("valid");
        assert_eq!(conf.name, "edge");
        assert_eq!(conf.bridge, "br9");
        assert_eq!(conf.uplink, UplinkSelector::Named("wlan0".into()));
        assert_eq!(conf.bpffs_dir.to_str(), Some("/sys/fs/bpf/x"));
    }

    #[test]
    fn single_conf_is_parsed_as_is() {
        let conf =
            parse_network_config(br#"{"cniVersion":"1.1.0","type":"smarter-cni"}"#).expect("valid");
        assert_eq!(conf.name, "smartnet");
        assert_eq!(conf.uplink, UplinkSelector::Auto);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let none = br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}"#;
        assert!(matches!(
            parse_network_config(none),
            Err(ConfError::NoPlugin)
        ));
        assert!(matches!(
            parse_network_config(b"[1]"),
            Err(ConfError::Json(_))
        ));
        let bad = br#"{"cniVersion":"1.1.0","type":"smarter-cni","subnet":"nope"}"#;
        let Err(ConfError::Invalid(msg)) = parse_network_config(bad) else {
            panic!("expected Invalid");
        };
        assert!(msg.contains("subnet"), "{msg}");
    }
}
