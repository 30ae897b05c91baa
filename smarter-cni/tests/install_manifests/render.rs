//! A renderer for the subset of Helm's template language the chart uses, so the plain
//! manifest can be produced from the chart offline (no `helm` binary is installable here).
//!
//! Supported, with Helm's semantics: `{{ .Values.a.b }}`, `{{ .Release.Namespace }}`, the
//! pipeline functions `quote` and `nindent N`, `toYaml X` (maps with sorted keys, lists,
//! plain or double-quoted strings, as sigs.k8s.io/yaml writes such simple data) and the
//! left trim `{{-`. Anything else is refused, so the chart cannot drift into constructs this
//! renderer would get wrong.

use serde_json::Value;

/// Renders `template` with `values` for a release in `namespace`.
pub fn render(template: &str, values: &Value, namespace: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("unclosed {{")?;
        let mut expr = &after[..end];
        if let Some(e) = expr.strip_prefix('-') {
            expr = e;
            let kept = out.trim_end_matches([' ', '\t', '\n', '\r']).len();
            out.truncate(kept);
        }
        if expr.ends_with('-') {
            return Err(format!("right trim `-}}}}` is not supported: {expr}"));
        }
        out.push_str(&eval(expr.trim(), values, namespace)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn eval(expr: &str, values: &Value, namespace: &str) -> Result<String, String> {
    let mut stages = expr.split('|').map(str::trim);
    let first = stages.next().unwrap_or_default();
    let mut text = match first.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["toYaml", path] => to_yaml(lookup(path, values)?, 0)
            .trim_end_matches('\n')
            .to_owned(),
        [".Release.Namespace"] => namespace.to_owned(),
        [path] => match lookup(path, values)? {
            Value::String(s) => s.clone(),
            v @ (Value::Bool(_) | Value::Number(_)) => v.to_string(),
            other => return Err(format!("{path} is not a scalar: {other}")),
        },
        _ => return Err(format!("unsupported expression `{first}`")),
    };
    for stage in stages {
        text = match stage.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["quote"] => serde_json::to_string(&text).expect("a string serializes"),
            ["nindent", n] => {
                let pad = " ".repeat(n.parse::<usize>().map_err(|_| format!("nindent {n}"))?);
                let lines: Vec<String> = text.lines().map(|l| format!("{pad}{l}")).collect();
                format!("\n{}", lines.join("\n"))
            }
            _ => return Err(format!("unsupported function `{stage}`")),
        };
    }
    Ok(text)
}

fn lookup<'v>(path: &str, values: &'v Value) -> Result<&'v Value, String> {
    let keys = path
        .strip_prefix(".Values.")
        .ok_or_else(|| format!("unsupported reference `{path}`"))?;
    keys.split('.').try_fold(values, |v, k| {
        v.get(k).ok_or_else(|| format!("{path}: no value `{k}`"))
    })
}

fn to_yaml(v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            keys.iter()
                .map(|k| match &map[k.as_str()] {
                    child @ Value::Object(_) => {
                        format!("{pad}{}:\n{}", scalar(k), to_yaml(child, indent + 2))
                    }
                    child @ Value::Array(_) => {
                        format!("{pad}{}:\n{}", scalar(k), to_yaml(child, indent))
                    }
                    child => format!("{pad}{}: {}\n", scalar(k), yaml_scalar(child)),
                })
                .collect()
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(_) => {
                    let body = to_yaml(item, indent + 2);
                    format!("{pad}- {}", &body[indent + 2..])
                }
                other => format!("{pad}- {}\n", yaml_scalar(other)),
            })
            .collect(),
        other => format!("{pad}{}\n", yaml_scalar(other)),
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => scalar(s),
        other => other.to_string(),
    }
}

/// A string as go-yaml writes it: plain when unambiguous, else double-quoted.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !s.starts_with(['-', '.'])
        && s.parse::<f64>().is_err()
        && !["true", "false", "null", "yes", "no", "on", "off", "~"]
            .contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
}
