//! The patch formats of `PATCH`: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and
//! strategic merge patch: a merge patch whose lists follow the served kinds' patch strategies
//! ([`MERGE_LISTS`]: Service ports merged by `port`, node addresses and conditions by `type`,
//! owner references by `uid`, finalizers as a set, ...; every other list is replaced whole, as
//! kube-apiserver does for atomic lists), with the directives `kubectl apply` sends: `$patch:
//! delete` / `replace` on a map or a list element, `$setElementOrder/<list>` and
//! `$deleteFromPrimitiveList/<list>` (`$retainKeys` is ignored).
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

/// How a list field merges under a strategic merge patch (kube's `patchStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListMerge {
    /// A list of maps merged element by element on this key (`patchMergeKey`).
    ByKey(&'static str),
    /// A list of strings merged as a set.
    Set,
}

/// The lists of the served kinds that merge rather than being replaced, by their dotted path
/// from the object's root (kube's `patchStrategy:"merge"` fields).
const MERGE_LISTS: &[(&str, ListMerge)] = &[
    ("metadata.finalizers", ListMerge::Set),
    ("metadata.ownerReferences", ListMerge::ByKey("uid")),
    ("spec.ports", ListMerge::ByKey("port")),
    ("status.addresses", ListMerge::ByKey("type")),
    ("status.conditions", ListMerge::ByKey("type")),
    ("secrets", ListMerge::ByKey("name")),
    ("imagePullSecrets", ListMerge::ByKey("name")),
];

fn list_merge(path: &str) -> Option<ListMerge> {
    MERGE_LISTS
        .iter()
        .find(|(list, _)| *list == path)
        .map(|(_, merge)| *merge)
}

/// Applies a strategic merge patch to `target` (see the module doc).
pub fn strategic(target: &mut Value, patch: &Value) {
    strategic_at(target, patch, "");
}

fn strategic_at(target: &mut Value, patch: &Value, path: &str) {
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
        let field = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let slot = target_map.entry(key.clone()).or_insert(Value::Null);
        match (list_merge(&field), value) {
            (Some(merge), Value::Array(items)) => merge_list(slot, items, merge, &field),
            _ => strategic_at(slot, value, &field),
        }
        if slot.is_null() {
            target_map.remove(key);
        }
    }
    for (key, value) in patch_map {
        if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(gone)) =
                (target_map.get_mut(list), value)
            {
                items.retain(|item| !gone.contains(item));
            }
        }
    }
    for (key, order) in patch_map {
        if let (Some(list), Value::Array(order)) = (key.strip_prefix("$setElementOrder/"), order) {
            let merge = list_merge(&if path.is_empty() {
                list.to_string()
            } else {
                format!("{path}.{list}")
            });
            if let (Some(Value::Array(items)), Some(merge)) = (target_map.get_mut(list), merge) {
                set_element_order(items, order, merge);
            }
        }
    }
}

/// Whether list elements `a` and `b` are the same element under `merge`.
fn same_element(a: &Value, b: &Value, merge: ListMerge) -> bool {
    match merge {
        ListMerge::ByKey(key) => a.get(key).is_some() && a.get(key) == b.get(key),
        ListMerge::Set => a == b,
    }
}

/// Merges patch list `items` into the list in `slot`: elements with a known key are patched
/// (or deleted by `$patch: delete`), new ones appended, in the patch's order.
fn merge_list(slot: &mut Value, items: &[Value], merge: ListMerge, path: &str) {
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    let Value::Array(list) = slot else {
        return;
    };
    for item in items {
        let deleting = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match list
            .iter()
            .position(|existing| same_element(existing, item, merge))
        {
            Some(index) if deleting => {
                list.remove(index);
            }
            Some(index) => strategic_at(&mut list[index], item, path),
            None if deleting => {}
            None => {
                let mut added = item.clone();
                strip_directives(&mut added);
                list.push(added);
            }
        }
    }
}

/// Reorders `items` as `order` names them (by merge key); elements it does not name keep
/// their relative order, after those it does.
fn set_element_order(items: &mut [Value], order: &[Value], merge: ListMerge) {
    let rank = |item: &Value| {
        order
            .iter()
            .position(|wanted| same_element(item, wanted, merge))
            .unwrap_or(order.len())
    };
    items.sort_by_key(rank);
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
    fn strategic_patch_merges_keyed_lists_as_kubectl_apply_expects() {
        let mut service = json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "https", "port": 443}
        ]}, "metadata": {"finalizers": ["a", "b"]}});
        // kubectl apply after changing port 443 to 8443 in the file.
        strategic(
            &mut service,
            &json!({"spec": {
                "$setElementOrder/ports": [{"port": 80}, {"port": 8443}],
                "ports": [{"name": "https", "port": 8443}, {"$patch": "delete", "port": 443}]
            }, "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]}}),
        );
        assert_eq!(
            service,
            json!({"spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "https", "port": 8443}
            ]}, "metadata": {"finalizers": ["b", "c"]}})
        );
        // An element named by its key is patched in place; an atomic list is replaced whole.
        let mut node = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]},
            "spec": {"taints": [{"key": "a"}]}});
        strategic(
            &mut node,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
                "spec": {"taints": [{"key": "b"}]}}),
        );
        assert_eq!(
            node,
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
                "spec": {"taints": [{"key": "b"}]}})
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
