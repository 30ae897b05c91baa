//! Typed reads from JSON objects whose errors name the key and the offending value.
//!
//! `Fields` wraps one object together with a path prefix (e.g. `runtimeConfig.`) and the error
//! code to use (7 for the network config, 6 for decoding `prevResult`). JSON `null` counts as
//! absent, as in the reference Go decoding.
//!
//! A reader made with [`Fields::go_style`] matches keys the way Go's `encoding/json` matches
//! object keys to struct fields: a key names a field when it is equal to the field's name or
//! equal under Unicode simple case folding (`HostPort`, `HOSTPORT`, `hostport` and even
//! `hostPort` with a Kelvin sign all name `hostPort`). Keys are taken in document order and a
//! later key naming the same field overwrites an earlier one, as Go's decoder does; nested
//! objects read with [`Fields::merged_object`] merge like Go structs decoded twice. Unknown
//! keys are ignored, as Go ignores them.

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

/// Whether `key` names the field `field` under Go's `encoding/json` rules: equal, or equal
/// after Unicode simple case folding. `field` is one of our (ASCII) names, so the only
/// non-ASCII characters that can match are those folding to ASCII letters: KELVIN SIGN
/// (U+212A, folds with `k`) and LATIN SMALL LETTER LONG S (U+017F, folds with `s`).
pub(super) fn go_key_matches(key: &str, field: &str) -> bool {
    if key == field {
        return true;
    }
    let mut want = field.chars();
    for c in key.chars() {
        let folded = match c {
            '\u{212A}' => 'k',
            '\u{17F}' => 's',
            c if c.is_ascii() => c.to_ascii_lowercase(),
            _ => return false,
        };
        match want.next() {
            Some(w) if w.to_ascii_lowercase() == folded => {}
            _ => return false,
        }
    }
    want.next().is_none()
}

/// One JSON object (or, for a Go-style merge, several read as one) with error context.
pub(super) struct Fields<'a> {
    /// The objects, in document order; a later one's keys win.
    maps: Vec<&'a Map<String, Value>>,
    prefix: String,
    code: u32,
    /// Match keys as Go's `encoding/json` does ([`go_key_matches`]) instead of exactly.
    go_style: bool,
}

impl<'a> Fields<'a> {
    /// Wraps `map`; errors name keys as `{prefix}{key}` and carry `code`. Keys match exactly.
    pub(super) fn new(map: &'a Map<String, Value>, prefix: impl Into<String>, code: u32) -> Self {
        Self {
            maps: vec![map],
            prefix: prefix.into(),
            code,
            go_style: false,
        }
    }

    /// Like [`Self::new`], but keys match as in Go's `encoding/json` (see the module docs);
    /// objects reached through this reader match the same way.
    pub(super) fn go_style(
        map: &'a Map<String, Value>,
        prefix: impl Into<String>,
        code: u32,
    ) -> Self {
        Self {
            go_style: true,
            ..Self::new(map, prefix, code)
        }
    }

    /// Wraps `value`, which must be an object, found at `path` (without trailing dot).
    /// Keys match exactly.
    pub(super) fn object_at(value: &'a Value, path: &str, code: u32) -> Result<Self, CniError> {
        Self::child(value, path, code, false)
    }

    fn child(value: &'a Value, path: &str, code: u32, go_style: bool) -> Result<Self, CniError> {
        match value {
            Value::Object(map) => Ok(Self {
                go_style,
                ..Self::new(map, format!("{path}."), code)
            }),
            other => Err(CniError::new(
                code,
                format!("{path} {} is not an object", render(other)),
                "",
            )),
        }
    }

    /// Every non-null value naming `key`, in document order.
    fn all<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'a Value> + 's {
        self.maps
            .iter()
            .flat_map(move |map| {
                let exact = if self.go_style { None } else { map.get(key) };
                let folded = self
                    .go_style
                    .then(|| {
                        map.iter()
                            .filter(move |(k, _)| go_key_matches(k, key))
                            .map(|(_, v)| v)
                    })
                    .into_iter()
                    .flatten();
                exact.into_iter().chain(folded)
            })
            .filter(|v| !v.is_null())
    }

    /// The object at `key` (absent: `None`). In a Go-style reader every key naming `key`
    /// contributes, in document order, and later fields win, as when Go decodes several
    /// objects into one struct; each must be an object.
    pub(super) fn merged_object(&self, key: &str) -> Result<Option<Self>, CniError> {
        let mut maps = Vec::new();
        for value in self.all(key) {
            match value {
                Value::Object(map) => maps.push(map),
                other => {
                    return Err(self.invalid(
                        key,
                        other,
                        format!("is {}, expected an object", kind(other)),
                    ));
                }
            }
        }
        if maps.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            maps,
            prefix: format!("{}.", self.name(key)),
            code: self.code,
            go_style: self.go_style,
        }))
    }

    /// The full name of `key` for messages.
    pub(super) fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The error code this reader reports.
    pub(super) const fn code(&self) -> u32 {
        self.code
    }

    /// The value at `key`, `None` if absent or null; with several (Go-style matches, merged
    /// objects), the last in document order.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.all(key).last()
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
            .map(|(i, item)| Self::child(item, &format!("{name}[{i}]"), self.code, self.go_style))
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
