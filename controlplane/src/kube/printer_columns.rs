//! A CRD version's `additionalPrinterColumns` as Table columns and cells.
//!
//! Guarantees: cells are what kube's CRD table convertor gives: the value at the column's
//! simple JSONPath converted to the column's type (`date` as an age such as `5m`, `<invalid>`
//! for a date that does not parse), null when absent; a version naming no column gets kube's
//! AGE.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::crd::text;
use super::resources::Resource;

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// The columns of a CRD version (kube's AGE when it names none).
pub(super) fn columns_of(version: &Value) -> Vec<PrinterColumn> {
    let given: Vec<PrinterColumn> = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|columns| {
            columns
                .iter()
                .map(|column| PrinterColumn {
                    name: text(column, "/name").to_string(),
                    kind: text(column, "/type").to_string(),
                    format: text(column, "/format").to_string(),
                    description: text(column, "/description").to_string(),
                    priority: column.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    json_path: text(column, "/jsonPath").to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if !given.is_empty() {
        return given;
    }
    vec![PrinterColumn {
        name: "Age".into(),
        kind: "date".into(),
        format: String::new(),
        description: "CreationTimestamp is a timestamp representing the server time when this \
                      object was created."
            .into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }]
}

/// The value at a printer column's simple JSONPath (`.a.b`, `.a[0].b`, `.a['x.y']`).
pub fn at_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current = object;
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            current = match inner.parse::<usize>() {
                Ok(index) => current.get(index)?,
                Err(_) => current.get(inner.trim_matches(|c| c == '\'' || c == '"'))?,
            };
            rest = after[end + 1..].trim_start_matches('.');
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            current = current.get(&rest[..end])?;
            rest = rest[end..].trim_start_matches('.');
        }
    }
    Some(current)
}

/// One Table cell of `column` for `object`, as kube's CRD table convertor makes it.
pub fn cell(column: &PrinterColumn, object: &Value, now: OffsetDateTime) -> Value {
    let Some(value) = at_path(object, &column.json_path).filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match column.kind.as_str() {
        "string" => match value {
            Value::String(text) => json!(text),
            other => json!(other.to_string()),
        },
        "integer" => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |n| json!(n)),
        "number" => value.as_f64().map_or(Value::Null, |n| json!(n)),
        "boolean" => value.as_bool().map_or(Value::Null, |b| json!(b)),
        "date" => match value.as_str() {
            Some(text) => match super::table::parse_rfc3339(text) {
                Some(time) => json!(super::table::human_duration((now - time).whole_seconds())),
                None => json!("<invalid>"),
            },
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

/// The Table column definitions of `columns`.
pub fn column_definitions(columns: &[PrinterColumn]) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "type": c.kind, "format": c.format,
                "description": c.description, "priority": c.priority,
            })
        })
        .collect()
}

/// The columns after NAME of a resource served with printer columns: a CRD version's, or
/// kube's CREATED AT for CRDs themselves.
pub fn of_resource(resource: &Resource) -> Option<Vec<PrinterColumn>> {
    if let Some(custom) = super::crd::custom(resource) {
        return Some(custom.columns.clone());
    }
    super::crd::is_definitions(resource).then(|| {
        vec![PrinterColumn {
            name: "Created At".into(),
            kind: "string".into(),
            format: String::new(),
            description: "The time the CRD was created, in RFC 3339.".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }]
    })
}
