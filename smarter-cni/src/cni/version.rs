//! CNI specification versions: which we speak, negotiation, and the VERSION verb's answer.

use std::fmt;

use serde_json::{Value, json};

use super::{CniError, Verb};

/// The specification versions this plugin speaks, oldest first (the VERSION verb's list).
pub const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The newest version we speak (same as [`Version::LATEST`]).
pub const LATEST: Version = Version::LATEST;

/// A supported CNI specification version; ordered oldest to newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// CNI 0.4.0: results carry `"version": "4"` on each IP; CHECK exists.
    V040,
    /// CNI 1.0.0: the `version` field on IPs is gone.
    V100,
    /// CNI 1.1.0: adds STATUS and GC, interface `mtu`/`socketPath`/`pciID`, route attributes.
    V110,
}

impl Version {
    /// The newest version we speak.
    pub const LATEST: Self = Self::V110;

    /// The version string, e.g. `"1.1.0"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V040 => "0.4.0",
            Self::V100 => "1.0.0",
            Self::V110 => "1.1.0",
        }
    }

    /// Parses an exact version string; `None` for anything we do not speak.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "0.4.0" => Some(Self::V040),
            "1.0.0" => Some(Self::V100),
            "1.1.0" => Some(Self::V110),
            _ => None,
        }
    }

    /// The oldest version in which `verb` exists (CHECK: 0.4.0, STATUS and GC: 1.1.0).
    #[must_use]
    pub const fn introducing(verb: Verb) -> Self {
        match verb {
            Verb::Status | Verb::Gc => Self::V110,
            Verb::Add | Verb::Del | Verb::Check | Verb::Version => Self::V040,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepts the config's `cniVersion` if we speak it.
///
/// # Errors
///
/// Code 1 naming the version and the supported list.
pub fn negotiate(config_version: &str) -> Result<Version, CniError> {
    Version::parse(config_version).ok_or_else(|| {
        CniError::incompatible_version(format!(
            "CNI version {config_version:?} is not supported (supported: {})",
            SUPPORTED.join(", ")
        ))
    })
}

/// Checks that `verb` exists in the negotiated `version` (the spec forbids STATUS and GC below
/// 1.1.0).
///
/// # Errors
///
/// Code 1 naming the verb, the version and the minimum.
pub fn check_verb(version: Version, verb: Verb) -> Result<(), CniError> {
    let min = Version::introducing(verb);
    if version >= min {
        Ok(())
    } else {
        Err(CniError::incompatible_version(format!(
            "{verb} requires cniVersion {min} or later, config has {version}"
        )))
    }
}

/// The VERSION verb's answer: `{"cniVersion": <requested>, "supportedVersions": [...]}`.
///
/// `requested` is echoed when it is a version we speak; otherwise (absent or unknown) the
/// answer is in the format of [`Version::LATEST`].
#[must_use]
pub fn version_info(requested: Option<&str>) -> Value {
    let answer = requested
        .and_then(Version::parse)
        .unwrap_or(Version::LATEST);
    json!({ "cniVersion": answer.as_str(), "supportedVersions": SUPPORTED })
}

/// The `cniVersion` every answer to `stdin` carries, error results included: the config's
/// own `cniVersion` whenever the config has one, also when the rest of it is invalid (and
/// when it is a version we do not speak, so the code-1 error names it in its own version);
/// [`LATEST`] only when there is none to read: stdin is not a JSON object, or its
/// `cniVersion` is absent, not a string, or not of the `major.minor.patch` form.
#[must_use]
pub fn answer_version(stdin: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(stdin).ok();
    let Some(Value::String(v)) = parsed.as_ref().and_then(|c| c.get("cniVersion")) else {
        return LATEST.as_str().to_owned();
    };
    let looks_like_a_version = v.len() <= 32
        && v.split('.').count() == 3
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if looks_like_a_version {
        v.clone()
    } else {
        LATEST.as_str().to_owned()
    }
}

/// The VERSION verb's answer for the raw stdin `{"cniVersion": "x"}`.
///
/// VERSION never fails: empty, malformed or version-less input gets the
/// [`Version::LATEST`] answer, as the reference plugins (which ignore stdin here) do.
#[must_use]
pub fn version_info_from_stdin(stdin: &[u8]) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(stdin).ok();
    let requested = parsed
        .as_ref()
        .and_then(|v| v.get("cniVersion"))
        .and_then(Value::as_str);
    version_info(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_the_configs_version() {
        let cases: [(&[u8], &str); 11] = [
            (br#"{"cniVersion":"0.4.0","type":"smarter-cni"}"#, "0.4.0"),
            (
                br#"{"cniVersion":"1.0.0","subnet":"not a subnet"}"#,
                "1.0.0",
            ),
            (br#"{"cniVersion":"1.1.0","bogus":1}"#, "1.1.0"),
            // A version we do not speak is still the config's version.
            (br#"{"cniVersion":"0.3.1"}"#, "0.3.1"),
            // Nothing to read: the newest.
            (b"", "1.1.0"),
            (b"{\"cniVersion\": ", "1.1.0"),
            (b"[1]", "1.1.0"),
            (br#"{"type":"smarter-cni"}"#, "1.1.0"),
            (br#"{"cniVersion":1}"#, "1.1.0"),
            (br#"{"cniVersion":"latest"}"#, "1.1.0"),
            (br#"{"cniVersion":"1.0"}"#, "1.1.0"),
        ];
        for (stdin, want) in cases {
            assert_eq!(
                answer_version(stdin),
                want,
                "{}",
                String::from_utf8_lossy(stdin)
            );
        }
    }

    #[test]
    fn parse_roundtrip_and_order() {
        for s in SUPPORTED {
            assert_eq!(Version::parse(s).map(Version::as_str), Some(s));
        }
        assert!(Version::V040 < Version::V100 && Version::V100 < Version::V110);
        assert_eq!(Version::LATEST.to_string(), "1.1.0");
        assert_eq!(Version::parse("1.1"), None);
    }

    #[test]
    fn negotiate_accepts_supported() {
        assert_eq!(negotiate("0.4.0"), Ok(Version::V040));
        assert_eq!(negotiate("1.1.0"), Ok(Version::V110));
    }

    #[test]
    fn negotiate_rejects_with_code_1_naming_version_and_list() {
        for bad in ["0.3.1", "2.0.0", ""] {
            let err = negotiate(bad).unwrap_err();
            assert_eq!(err.code, CniError::INCOMPATIBLE_VERSION);
            assert!(err.msg.contains(&format!("{bad:?}")), "{}", err.msg);
            assert!(err.msg.contains("0.4.0, 1.0.0, 1.1.0"), "{}", err.msg);
        }
    }

    #[test]
    fn verbs_need_their_version() {
        assert_eq!(check_verb(Version::V040, Verb::Check), Ok(()));
        assert_eq!(check_verb(Version::V110, Verb::Gc), Ok(()));
        let err = check_verb(Version::V100, Verb::Status).unwrap_err();
        assert_eq!(err.code, 1);
        assert_eq!(
            err.msg,
            "STATUS requires cniVersion 1.1.0 or later, config has 1.0.0"
        );
        assert!(check_verb(Version::V040, Verb::Gc).is_err());
    }

    #[test]
    fn version_answer_echoes_requested() {
        let expected =
            |v: &str| json!({"cniVersion": v, "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]});
        assert_eq!(
            version_info_from_stdin(br#"{"cniVersion":"1.0.0"}"#),
            expected("1.0.0")
        );
        assert_eq!(
            version_info_from_stdin(br#"{"cniVersion":"0.4.0"}"#),
            expected("0.4.0")
        );
        assert_eq!(
            version_info_from_stdin(br#"{"cniVersion":"9.9.9"}"#),
            expected("1.1.0")
        );
        assert_eq!(version_info_from_stdin(b""), expected("1.1.0"));
        assert_eq!(version_info_from_stdin(b"{not json"), expected("1.1.0"));
        assert_eq!(version_info(None), expected("1.1.0"));
    }
}
