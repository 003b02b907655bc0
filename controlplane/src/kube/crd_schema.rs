//! A custom resource against its version's structural schema, as kube-apiserver treats one on
//! every write: fields the schema does not declare are pruned (kept where
//! `x-kubernetes-preserve-unknown-fields` is set), missing fields with a `default` get it,
//! then the object is validated.
//!
//! Guarantees: `apiVersion`, `kind` and `metadata` are never pruned nor checked here (the
//! object layer owns them); the checks are kube's for `type` (`x-kubernetes-int-or-string`
//! takes either), `nullable`, `required`, `enum`, `minimum`/`maximum` (and their exclusive
//! forms), `minLength`/`maxLength`, `minItems`/`maxItems`, each violation one cause in
//! kube's wording (`spec.replicas: Invalid value: "string": spec.replicas in body must be of
//! type integer: "string"`), all of them reported together. `pattern`, `format` and CEL rules
//! are not checked.

use serde_json::{Map, Value};

use super::crd::Cause;

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name) == Some(&Value::Bool(true))
}

/// Prunes and defaults `value` (at `path`) by `schema`, noting each pruned field's path.
fn prune(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            match (properties, additional) {
                (Some(properties), _) => {
                    if !preserve {
                        map.retain(|name, _| {
                            let known = properties.contains_key(name);
                            if !known {
                                pruned.push(child(path, name));
                            }
                            known
                        });
                    }
                    for (name, field) in map.iter_mut() {
                        if let Some(property) = properties.get(name) {
                            prune(property, field, &child(path, name), pruned);
                        }
                    }
                    fill_defaults(properties, map);
                }
                (None, Some(additional)) => {
                    for (name, field) in map.iter_mut() {
                        prune(additional, field, &child(path, name), pruned);
                    }
                }
                (None, None) if !preserve && schema.get("additionalProperties").is_none() => {
                    pruned.extend(map.keys().map(|name| child(path, name)));
                    map.clear();
                }
                (None, None) => {}
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (index, value) in items.iter_mut().enumerate() {
                    prune(item, value, &format!("{path}[{index}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

fn fill_defaults(properties: &Map<String, Value>, map: &mut Map<String, Value>) {
    for (name, property) in properties {
        if let Some(default) = property.get("default") {
            if !map.contains_key(name) {
                let mut value = default.clone();
                prune(property, &mut value, "", &mut Vec::new());
                map.insert(name.clone(), value);
            }
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    }
}

/// How kube shows a value in an `Invalid value: ...` cause.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    }
}

fn invalid(field: &str, value: &str, detail: &str) -> Cause {
    Cause {
        field: field.to_string(),
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {value}: {detail}"),
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn check(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("");
    if value.is_null() {
        if !kind.is_empty() && !flag(schema, "nullable") {
            let actual = type_name(value);
            causes.push(invalid(
                path,
                &format!("{actual:?}"),
                &format!("{path} in body must be of type {kind}: {actual:?}"),
            ));
        }
        return;
    }
    if !flag(schema, "x-kubernetes-int-or-string") && !kind.is_empty() && !has_type(value, kind) {
        let actual = type_name(value);
        causes.push(invalid(
            path,
            &format!("{actual:?}"),
            &format!("{path} in body must be of type {kind}: {actual:?}"),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let listed: Vec<String> = allowed.iter().map(shown).collect();
            causes.push(Cause {
                field: path.to_string(),
                reason: "FieldValueNotSupported",
                message: format!(
                    "Unsupported value: {}: supported values: {}",
                    shown(value),
                    listed.join(", ")
                ),
            });
        }
    }
    if let Some(number) = value.as_f64() {
        check_bounds(schema, value, number, path, causes);
    }
    let limit = |name: &str| schema.get(name).and_then(Value::as_u64);
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if let Some(max) = limit("maxLength").filter(|max| length > *max) {
            causes.push(Cause {
                field: path.to_string(),
                reason: "FieldValueTooLong",
                message: format!("Too long: may not be more than {max} bytes"),
            });
        }
        if let Some(min) = limit("minLength").filter(|min| length < *min) {
            causes.push(invalid(
                path,
                &shown(value),
                &format!("{path} in body should be at least {min} chars long"),
            ));
        }
    }
    match value {
        Value::Object(map) => {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(name) {
                    causes.push(Cause::required(child(path, name), ""));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (name, field) in map {
                if let Some(property) = properties.and_then(|p| p.get(name)).or(additional) {
                    check(property, field, &child(path, name), causes);
                }
            }
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            if let Some(max) = limit("maxItems").filter(|max| count > *max) {
                causes.push(Cause {
                    field: path.to_string(),
                    reason: "FieldValueTooMany",
                    message: format!("Too many: {count}: must have at most {max} items"),
                });
            }
            if let Some(min) = limit("minItems").filter(|min| count < *min) {
                causes.push(invalid(
                    path,
                    &count.to_string(),
                    &format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(item) = schema.get("items") {
                for (index, value) in items.iter().enumerate() {
                    check(item, value, &format!("{path}[{index}]"), causes);
                }
            }
        }
        _ => {}
    }
}

fn check_bounds(schema: &Value, value: &Value, number: f64, path: &str, causes: &mut Vec<Cause>) {
    let bound = |name: &str| schema.get(name).and_then(Value::as_f64);
    let shown_bound = |name: &str| schema.get(name).map(Value::to_string).unwrap_or_default();
    if let Some(min) = bound("minimum") {
        let exclusive = flag(schema, "exclusiveMinimum");
        if number < min || (exclusive && number == min) {
            let relation = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            causes.push(invalid(
                path,
                &shown(value),
                &format!(
                    "{path} in body should be {relation} {}",
                    shown_bound("minimum")
                ),
            ));
        }
    }
    if let Some(max) = bound("maximum") {
        let exclusive = flag(schema, "exclusiveMaximum");
        if number > max || (exclusive && number == max) {
            let relation = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            causes.push(invalid(
                path,
                &shown(value),
                &format!(
                    "{path} in body should be {relation} {}",
                    shown_bound("maximum")
                ),
            ));
        }
    }
}

/// What [`apply`] found.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// The paths of the fields pruned (`spec.unknown`).
    pub pruned: Vec<String>,
    /// Why the object is invalid; empty when it is valid.
    pub causes: Vec<Cause>,
}

/// Prunes, defaults and validates `object` by its version's `schema` (the root
/// `openAPIV3Schema`).
pub fn apply(schema: &Value, object: &mut Value) -> Outcome {
    let Some(map) = object.as_object_mut() else {
        return Outcome::default();
    };
    let mut owned = Map::new();
    for name in ["apiVersion", "kind", "metadata"] {
        if let Some(value) = map.remove(name) {
            owned.insert(name.to_string(), value);
        }
    }
    let mut rest = Value::Object(std::mem::take(map));
    let mut pruned = Vec::new();
    prune(schema, &mut rest, "", &mut pruned);
    pruned.sort();
    let mut causes = Vec::new();
    check(schema, &rest, "", &mut causes);
    if let (Some(map), Value::Object(rest)) = (object.as_object_mut(), rest) {
        map.extend(rest);
        map.extend(owned);
    }
    Outcome { pruned, causes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["cronSpec"],
                    "properties": {
                        "cronSpec": { "type": "string", "minLength": 1 },
                        "replicas": { "type": "integer", "minimum": 1, "maximum": 10, "default": 1 },
                        "mode": { "type": "string", "enum": ["a", "b"] },
                        "extra": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                        "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                    },
                },
            },
        })
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_filled() {
        let mut object = json!({
            "apiVersion": "x/v1", "kind": "X", "metadata": { "name": "a" },
            "spec": { "cronSpec": "* * * * *", "unknown": 1, "extra": { "anything": [1] },
                      "labels": { "k": "v" } },
            "top": true,
        });
        let outcome = apply(&schema(), &mut object);
        assert_eq!(outcome.causes, Vec::new());
        assert_eq!(outcome.pruned, ["spec.unknown", "top"]);
        assert_eq!(
            object,
            json!({
                "apiVersion": "x/v1", "kind": "X", "metadata": { "name": "a" },
                "spec": { "cronSpec": "* * * * *", "replicas": 1, "extra": { "anything": [1] },
                          "labels": { "k": "v" } },
            })
        );
    }

    #[test]
    fn violations_are_reported_in_kube_s_words() {
        let mut object = json!({ "spec": { "replicas": "three", "mode": "c" } });
        let messages: Vec<String> = apply(&schema(), &mut object)
            .causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            messages,
            [
                "spec.cronSpec: Required value",
                "spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\"",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            ]
        );
        let mut object = json!({ "spec": { "cronSpec": "", "replicas": 11 } });
        let messages: Vec<String> = apply(&schema(), &mut object)
            .causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            messages,
            [
                "spec.cronSpec: Invalid value: \"\": spec.cronSpec in body should be at least 1 chars long",
                "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            ]
        );
    }
}
