//! Printing rows: a JSON array, or a table built from the rows' JSON fields.

use serde::Serialize;

use super::Failure;
use super::args::Format;

/// Prints rows as JSON or as a table built from their JSON fields (nested lists are shown as
/// compact JSON).
pub(super) fn print<T: Serialize>(fmt: Format, rows: &[T]) -> Result<(), Failure> {
    println!("{}", render(fmt, rows)?);
    Ok(())
}

/// The text [`print`] prints (without the final newline): a JSON array, `(none)` for no rows,
/// or a table whose header is the first row's field names in capitals.
pub(super) fn render<T: Serialize>(fmt: Format, rows: &[T]) -> Result<String, Failure> {
    let value = serde_json::to_value(rows).map_err(|e| Failure::new(1, e.to_string()))?;
    if fmt == Format::Json {
        return Ok(value.to_string());
    }
    let Some(items) = value.as_array() else {
        return Ok(String::new());
    };
    let Some(first) = items.first().and_then(|v| v.as_object()) else {
        return Ok("(none)".to_string());
    };
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(first.keys().map(|k| k.to_uppercase()));
    for item in items {
        let Some(obj) = item.as_object() else {
            continue;
        };
        table.add_row(obj.values().map(cell));
    }
    Ok(table.to_string())
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::Object(o) => o.values().map(cell).collect::<Vec<_>>().join("/"),
                other => cell(other),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}
