//! Typed reads from JSON objects whose errors name the key and the offending value.
//!
//! `Fields` wraps one object together with a path prefix (e.g. `runtimeConfig.`) and the error
//! code to use (7 for the network config, 6 for decoding `prevResult`). JSON `null` counts as
//! absent, as in the reference Go decoding.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::CniError;

/// Longest rendering of an offending value in an error message before it is cut.
const MAX_VALUE_LEN: usize = 120;

/// Renders a value for an error message: JSON syntax (strings quoted), cut when long.
pub(super) fn render(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > MAX_VALUE_LEN {
        let mut cut = MAX_VALUE_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The JSON type of a value, for "expected X" messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One JSON object read with error context.
pub(super) struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
    code: u32,
}

impl<'a> Fields<'a> {
    /// Wraps `map`; errors name keys as `{prefix}{key}` and carry `code`.
    pub(super) fn new(map: &'a Map<String, Value>, prefix: impl Into<String>, code: u32) -> Self {
        Self {
            map,
            prefix: prefix.into(),
            code,
        }
    }

    /// Wraps `value`, which must be an object, found at `path` (without trailing dot).
    pub(super) fn object_at(value: &'a Value, path: &str, code: u32) -> Result<Self, CniError> {
        match value {
            Value::Object(map) => Ok(Self::new(map, format!("{path}."), code)),
            other => Err(CniError::new(
                code,
                format!("{path} {} is not an object", render(other)),
                "",
            )),
        }
    }

    /// The full name of `key` for messages.
    pub(super) fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The error code this reader reports.
    pub(super) const fn code(&self) -> u32 {
        self.code
    }

    /// The value at `key`, `None` if absent or null.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// An error saying that the required `key` is missing.
    pub(super) fn missing(&self, key: &str) -> CniError {
        CniError::new(self.code, format!("{} is missing", self.name(key)), "")
    }

    /// An error naming `key` and its `value`: `{prefix}{key} {value} {why}`.
    pub(super) fn invalid(&self, key: &str, value: &Value, why: impl Display) -> CniError {
        CniError::new(
            self.code,
            format!("{} {} {why}", self.name(key), render(value)),
            "",
        )
    }

    fn expect<T>(
        &self,
        key: &str,
        what: &str,
        pick: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, CniError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => pick(value).map(Some).ok_or_else(|| {
                self.invalid(key, value, format!("is {}, expected {what}", kind(value)))
            }),
        }
    }

    /// A string value.
    pub(super) fn string(&self, key: &str) -> Result<Option<&'a str>, CniError> {
        self.expect(key, "a string", Value::as_str)
    }

    /// A boolean value.
    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>, CniError> {
        self.expect(key, "a boolean", Value::as_bool)
    }

    /// An object value.
    pub(super) fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, CniError> {
        self.expect(key, "an object", Value::as_object)
    }

    /// An array value.
    pub(super) fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, CniError> {
        self.expect(key, "an array", Value::as_array)
    }

    /// An array of objects; absent means empty. Elements are named `key[i]` in errors.
    pub(super) fn objects(&self, key: &str) -> Result<Vec<Fields<'a>>, CniError> {
        let Some(items) = self.array(key)? else {
            return Ok(Vec::new());
        };
        let name = self.name(key);
        items
            .iter()
            .enumerate()
            .map(|(i, item)| Self::object_at(item, &format!("{name}[{i}]"), self.code))
            .collect()
    }

    /// A non-negative integer within `range`.
    pub(super) fn uint<T>(&self, key: &str, range: RangeInclusive<T>) -> Result<Option<T>, CniError>
    where
        T: TryFrom<u64> + PartialOrd + Display,
    {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                self.invalid(
                    key,
                    value,
                    format!("is not an integer in {}..={}", range.start(), range.end()),
                )
            })
    }

    /// A string parsed with [`FromStr`]; on failure the message says it "is not {what}".
    pub(super) fn parsed<T: FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, CniError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| {
            self.invalid(
                key,
                &Value::String(text.to_owned()),
                format!("is not {what}"),
            )
        })
    }

    /// An array of strings; absent means empty. Elements are named `key[i]` in errors.
    pub(super) fn string_list(&self, key: &str) -> Result<Vec<String>, CniError> {
        let Some(items) = self.array(key)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.invalid(&format!("{key}[{i}]"), item, "is not a string"))
            })
            .collect()
    }

    /// An array of strings, each parsed with [`FromStr`]; absent means empty.
    pub(super) fn parsed_list<T: FromStr>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Vec<T>, CniError> {
        self.string_list(key)?
            .into_iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse().map_err(|_| {
                    self.invalid(
                        &format!("{key}[{i}]"),
                        &Value::String(text.clone()),
                        format!("is not {what}"),
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        let Value::Object(map) = value else {
            panic!("test input must be an object")
        };
        map
    }

    #[test]
    fn typed_reads_and_null_as_absent() {
        let m = map(json!({"s": "x", "b": true, "n": 70, "l": ["a", "b"], "z": null}));
        let f = Fields::new(&m, "", 7);
        assert_eq!(f.string("s"), Ok(Some("x")));
        assert_eq!(f.bool("b"), Ok(Some(true)));
        assert_eq!(f.uint::<u32>("n", 68..=100), Ok(Some(70)));
        assert_eq!(f.string_list("l"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(f.string("z"), Ok(None));
        assert_eq!(f.string_list("missing"), Ok(vec![]));
    }

    #[test]
    fn errors_name_key_and_value() {
        let m = map(json!({"s": 1, "n": 67, "neg": -1, "l": ["a", 2], "ip": "x"}));
        let f = Fields::new(&m, "runtimeConfig.", 7);
        assert_eq!(
            f.string("s").unwrap_err().msg,
            "runtimeConfig.s 1 is a number, expected a string"
        );
        assert_eq!(
            f.uint::<u32>("n", 68..=100).unwrap_err().msg,
            "runtimeConfig.n 67 is not an integer in 68..=100"
        );
        assert!(f.uint::<u16>("neg", 0..=1).is_err());
        assert_eq!(
            f.string_list("l").unwrap_err().msg,
            "runtimeConfig.l[1] 2 is not a string"
        );
        let err = f
            .parsed::<std::net::Ipv4Addr>("ip", "an IPv4 address")
            .unwrap_err();
        assert_eq!(
            (err.code, err.msg.as_str()),
            (7, "runtimeConfig.ip \"x\" is not an IPv4 address")
        );
    }

    #[test]
    fn long_values_are_cut() {
        let long = Value::String("é".repeat(200));
        let text = render(&long);
        assert!(text.len() <= MAX_VALUE_LEN + '…'.len_utf8() && text.ends_with('…'));
    }
}
