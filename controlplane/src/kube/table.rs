//! `Table` answers (meta.k8s.io/v1) for clients that ask for them (`Accept: ...;as=Table`, as
//! `kubectl get` does): NAME first, the resource's own columns, AGE (last but for columns
//! kubectl prints after it, as the VERSION of nodes), each row with the
//! object's metadata (`includeObject=Metadata`, the default), the whole object (`Object`) or
//! nothing (`None`).
//!
//! Guarantees: cells are computed by the server as kube-apiserver's printers compute them
//! (AGE in `kubectl`'s short duration format), so `kubectl get` prints the same columns.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::resources::{Column, Resource};

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// What each row carries of its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(text: Option<&str>) -> Self {
        match text {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// `objects` of `resource` as a Table with `list_metadata`.
pub fn table(
    resource: &Resource,
    objects: &[Value],
    list_metadata: Value,
    include: IncludeObject,
    now: OffsetDateTime,
) -> Value {
    let mut columns = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace."
    })];
    if let Some(printed) = super::printer_columns::of_resource(resource) {
        columns.extend(super::printer_columns::column_definitions(&printed));
        let rows: Vec<Value> = objects
            .iter()
            .map(|object| {
                let mut cells = vec![json!(super::object::name(object))];
                cells.extend(
                    printed
                        .iter()
                        .map(|column| super::printer_columns::cell(column, object, now)),
                );
                row_with(cells, object, include)
            })
            .collect();
        return json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_metadata,
            "columnDefinitions": columns,
            "rows": rows,
        });
    }
    let column = |column: &Column| {
        json!({
            "name": column.name, "type": column.kind, "format": "", "priority": 0,
            "description": column.description
        })
    };
    columns.extend(resource.columns.iter().filter(|c| !c.after_age).map(column));
    columns.push(json!({
        "name": "Age", "type": "string", "format": "", "priority": 0,
        "description": "CreationTimestamp is a timestamp representing the server time when this object was created."
    }));
    columns.extend(resource.columns.iter().filter(|c| c.after_age).map(column));
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| row(resource, object, include, now))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn row(resource: &Resource, object: &Value, include: IncludeObject, now: OffsetDateTime) -> Value {
    let mut cells = vec![json!(super::object::name(object))];
    let cell = |column: &Column| (column.cell)(object);
    cells.extend(resource.columns.iter().filter(|c| !c.after_age).map(cell));
    cells.push(json!(age(object, now)));
    cells.extend(resource.columns.iter().filter(|c| c.after_age).map(cell));
    row_with(cells, object, include)
}

/// A row of `cells` carrying what `include` asks of `object`.
fn row_with(cells: Vec<Value>, object: &Value, include: IncludeObject) -> Value {
    let mut row = json!({ "cells": cells });
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => row["object"] = object.clone(),
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
            });
        }
    }
    row
}

/// The AGE cell: time since `creationTimestamp`, or `<unknown>`.
fn age(object: &Value, now: OffsetDateTime) -> String {
    object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .map_or_else(
            || "<unknown>".to_string(),
            |created| human_duration((now - created).whole_seconds()),
        )
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` in UTC.
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u32>().ok();
    if text.len() < 20 || !text.ends_with('Z') {
        return None;
    }
    let year = i32::try_from(number(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(year, month, u8::try_from(number(8..10)?).ok()?).ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(number(11..13)?).ok()?,
        u8::try_from(number(14..16)?).ok()?,
        u8::try_from(number(17..19)?).ok()?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc())
}

/// kubectl's short durations (`k8s.io/apimachinery/pkg/util/duration.HumanDuration`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    let minutes = seconds / 60;
    let hours = seconds / 3600;
    if seconds < 60 * 2 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 60 * 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let years = hours / 24 / 365;
        match (hours / 24) % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_kubectl_prints_them() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(3600 * 30), "30h");
        assert_eq!(human_duration(86_400 * 3), "3d");
    }

    #[test]
    fn configmap_rows_have_name_data_and_age() {
        let configmaps = crate::kube::resources::find("", "v1", "configmaps").expect("served");
        let now = parse_rfc3339("2026-11-28T18:01:00Z").expect("parses");
        let object = json!({"metadata": {"name": "a", "creationTimestamp": "2026-11-28T18:00:00Z"}, "data": {"x": "1", "y": "2"}});
        let table = table(
            configmaps,
            &[object],
            json!({}),
            IncludeObject::Metadata,
            now,
        );
        assert_eq!(table["rows"][0]["cells"], json!(["a", 2, "60s"]));
        let names: Vec<_> = table["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("Name"), json!("Data"), json!("Age")]);
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn node_rows_print_version_after_age() {
        let nodes = crate::kube::resources::find("", "v1", "nodes").expect("served");
        let now = parse_rfc3339("2026-11-28T18:00:05Z").expect("parses");
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2026-11-28T18:00:00Z",
                         "labels": {"node-role.kubernetes.io/etcd": "true", "node-role.kubernetes.io/control-plane": "true"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.32.0+k3rs"}}
        });
        let table = table(nodes, &[node], json!({}), IncludeObject::None, now);
        assert_eq!(
            table["rows"][0]["cells"],
            json!(["n1", "Ready", "control-plane,etcd", "5s", "v1.32.0+k3rs"])
        );
        assert_eq!(table["columnDefinitions"][3]["name"], "Age");
    }
}
