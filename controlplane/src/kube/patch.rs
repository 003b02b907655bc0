//! The patch formats of `PATCH`: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and
//! strategic merge patch applied as a merge patch (exact for the map-only kinds served here:
//! their lists are replaced whole) with its `$`-directives honoured where they matter
//! (`$patch: delete` / `replace` on a map, `$retainKeys` and `$setElementOrder` ignored).
//!
//! Guarantees: a patch that does not apply (bad pointer, failed `test`, malformed operation)
//! is an error naming the operation, and the target is left as it was.

use serde_json::{Map, Value};

/// Applies an RFC 7386 merge patch to `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            merge(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Applies a strategic merge patch to `target`, as a merge patch with directives.
pub fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    match patch_map.get("$patch").and_then(Value::as_str) {
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        Some("replace") => {
            let mut replaced = patch.clone();
            strip_directives(&mut replaced);
            *target = replaced;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        let slot = target_map.entry(key.clone()).or_insert(Value::Null);
        strategic(slot, value);
        if slot.is_null() {
            target_map.remove(key);
        }
    }
}

fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| !key.starts_with('$'));
            map.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// The parent container and last token of the JSON pointer `path`.
fn split_pointer(path: &str) -> Result<(String, String), String> {
    if path.is_empty() {
        return Err("the root cannot be the target of this operation".into());
    }
    if !path.starts_with('/') {
        return Err(format!("invalid JSON pointer {path:?}"));
    }
    let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(document: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *document = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match document.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|index| *index <= items.len())
                    .ok_or_else(|| format!("invalid array index {last:?} in {path:?}"))?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!("the parent of {path:?} does not exist")),
    }
}

fn remove(document: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    match document.pointer_mut(&parent) {
        Some(Value::Object(map)) => map
            .remove(&last)
            .ok_or_else(|| format!("{path:?} does not exist")),
        Some(Value::Array(items)) => {
            let index = last
                .parse::<usize>()
                .ok()
                .filter(|index| *index < items.len())
                .ok_or_else(|| format!("invalid array index {last:?} in {path:?}"))?;
            Ok(items.remove(index))
        }
        _ => Err(format!("{path:?} does not exist")),
    }
}

/// Applies an RFC 6902 JSON patch (an array of operations) to `target`.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let operations = patch
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    let mut document = target.clone();
    for operation in operations {
        let op = operation
            .get("op")
            .and_then(Value::as_str)
            .ok_or("an operation without \"op\"")?;
        let path = operation
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{op} without \"path\""))?;
        let value = || {
            operation
                .get("value")
                .cloned()
                .ok_or_else(|| format!("{op} {path} without \"value\""))
        };
        let from = || {
            operation
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{op} {path} without \"from\""))
        };
        match op {
            "add" => add(&mut document, path, value()?)?,
            "remove" => {
                remove(&mut document, path)?;
            }
            "replace" => {
                if document.pointer(path).is_none() {
                    return Err(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ));
                }
                if path.is_empty() {
                    document = value()?;
                } else {
                    remove(&mut document, path)?;
                    add(&mut document, path, value()?)?;
                }
            }
            "move" => {
                let moved = remove(&mut document, from()?)?;
                add(&mut document, path, moved)?;
            }
            "copy" => {
                let copied = document
                    .pointer(from()?)
                    .cloned()
                    .ok_or_else(|| format!("copy from a missing path in {path}"))?;
                add(&mut document, path, copied)?;
            }
            "test" => {
                if document.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    *target = document;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn strategic_patch_skips_directives() {
        let mut target = json!({"metadata": {"labels": {"a": "1"}}, "data": {"x": "1"}});
        strategic(
            &mut target,
            &json!({"$setElementOrder/x": [], "metadata": {"labels": {"b": "2", "a": null}}, "data": {"$patch": "replace", "y": "2"}}),
        );
        assert_eq!(
            target,
            json!({"metadata": {"labels": {"b": "2"}}, "data": {"y": "2"}})
        );
    }

    #[test]
    fn json_patch_applies_every_operation_or_none() {
        let mut target = json!({"data": {"a": "1"}, "list": [1, 2]});
        json_patch(
            &mut target,
            &json!([
                {"op": "add", "path": "/data/b", "value": "2"},
                {"op": "replace", "path": "/data/a", "value": "3"},
                {"op": "add", "path": "/list/-", "value": 3},
                {"op": "remove", "path": "/list/0"},
                {"op": "test", "path": "/data/b", "value": "2"},
                {"op": "copy", "from": "/data/a", "path": "/data/c"},
                {"op": "move", "from": "/data/c", "path": "/data/d"}
            ]),
        )
        .expect("applies");
        assert_eq!(
            target,
            json!({"data": {"a": "3", "b": "2", "d": "3"}, "list": [2, 3]})
        );
        let before = target.clone();
        let failed = json_patch(
            &mut target,
            &json!([{"op": "remove", "path": "/data/a"}, {"op": "test", "path": "/data/b", "value": "x"}]),
        );
        assert!(failed.is_err());
        assert_eq!(target, before);
    }
}
