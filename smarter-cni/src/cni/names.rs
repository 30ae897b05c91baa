//! Validation of the identifiers the protocol carries: interface names, container ids and
//! network names.
//!
//! The validators return a [`NameError`] saying what is wrong; callers turn it into a
//! [`CniError`](super::CniError) with the code of their context (4 for the environment,
//! 7 for the network config).

/// Longest Linux interface name in bytes (`IFNAMSIZ` − 1 for the terminating NUL).
pub const MAX_IFNAME_LEN: usize = 15;

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("is empty")]
    Empty,
    /// The name is longer than the limit.
    #[error("is {len} bytes long (at most {max} allowed)")]
    TooLong {
        /// Length of the name in bytes.
        len: usize,
        /// Largest accepted length in bytes.
        max: usize,
    },
    /// The name is `.` or `..`.
    #[error("must not be \".\" or \"..\"")]
    DotName,
    /// The name contains a character that is not allowed at that position.
    #[error("contains {ch:?} at byte {at}, {rule}")]
    BadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the name.
        at: usize,
        /// The rule the name must follow.
        rule: &'static str,
    },
}

/// Checks a Linux interface name: 1..=15 bytes, not `.`/`..`, and no `/`, `:` or whitespace.
///
/// # Errors
///
/// Returns the first rule the name breaks.
pub fn validate_ifname(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(NameError::TooLong {
            len: name.len(),
            max: MAX_IFNAME_LEN,
        });
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName);
    }
    match name
        .char_indices()
        .find(|&(_, c)| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        Some((at, ch)) => Err(NameError::BadChar {
            ch,
            at,
            rule: "interface names must not contain '/', ':', NUL or whitespace",
        }),
        None => Ok(()),
    }
}

/// Checks a name against the spec's pattern `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, which applies to
/// both container ids and network names.
fn validate_spec_name(name: &str) -> Result<(), NameError> {
    const RULE: &str =
        "must start with an ASCII letter or digit followed by letters, digits, '_', '.' or '-'";
    let mut chars = name.char_indices();
    match chars.next() {
        None => return Err(NameError::Empty),
        Some((at, ch)) if !ch.is_ascii_alphanumeric() => {
            return Err(NameError::BadChar { ch, at, rule: RULE });
        }
        Some(_) => {}
    }
    match chars.find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        Some((at, ch)) => Err(NameError::BadChar { ch, at, rule: RULE }),
        None => Ok(()),
    }
}

/// Checks a container id (`CNI_CONTAINERID`) against the spec's rule.
///
/// # Errors
///
/// Returns [`NameError::Empty`] or [`NameError::BadChar`].
pub fn validate_container_id(id: &str) -> Result<(), NameError> {
    validate_spec_name(id)
}

/// Checks a network name (`name` in the config) against the spec's rule.
///
/// # Errors
///
/// Returns [`NameError::Empty`] or [`NameError::BadChar`].
pub fn validate_network_name(name: &str) -> Result<(), NameError> {
    validate_spec_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifnames() {
        for ok in ["eth0", "a", "smartnet0", "123456789012345", "veth-x_y.z"] {
            assert_eq!(validate_ifname(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_ifname(""), Err(NameError::Empty));
        assert_eq!(
            validate_ifname("1234567890123456"),
            Err(NameError::TooLong { len: 16, max: 15 })
        );
        assert_eq!(validate_ifname("."), Err(NameError::DotName));
        assert_eq!(validate_ifname(".."), Err(NameError::DotName));
        for bad in ["a/b", "a:b", "a b", "a\tb", "a\nb"] {
            assert!(
                matches!(validate_ifname(bad), Err(NameError::BadChar { at: 1, .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn spec_names() {
        for ok in ["a", "0abc", "abc_def.ghi-jkl", "K8s"] {
            assert_eq!(validate_container_id(ok), Ok(()), "{ok}");
            assert_eq!(validate_network_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_container_id(""), Err(NameError::Empty));
        assert!(matches!(
            validate_container_id("-abc"),
            Err(NameError::BadChar { ch: '-', at: 0, .. })
        ));
        assert!(matches!(
            validate_network_name("ab/c"),
            Err(NameError::BadChar { ch: '/', at: 2, .. })
        ));
        assert!(matches!(
            validate_network_name("é"),
            Err(NameError::BadChar { at: 0, .. })
        ));
    }

    #[test]
    fn messages_name_the_problem() {
        let err = validate_ifname("a/b").unwrap_err().to_string();
        assert!(err.contains("'/'") && err.contains("byte 1"), "{err}");
        let err = validate_ifname("0123456789abcdefg")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "is 17 bytes long (at most 15 allowed)");
    }
}
