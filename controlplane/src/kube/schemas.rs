//! The OpenAPI v3 schemas of served kinds, for `kubectl explain`: every built-in kind's from the
//! field tables of [`kinds`], and each custom resource's from its CRD's `openAPIV3Schema`, with
//! `apiVersion`, `kind` and `metadata` (ObjectMeta) added as kube-apiserver adds them.
//!
//! Guarantees: every schema of a kind carries `x-kubernetes-group-version-kind` naming the
//! group, version and kind it describes (how kubectl finds it); every `$ref` points into the
//! same document; schema names are kube's (`io.k8s.api.core.v1.ConfigMap`, reversed group
//! for custom resources: `com.example.stable.v1.CronTab`). The schemas only describe: nothing
//! validates or patches by them (strict field validation of built-ins is the server's own, and
//! no PATCH operation declares a body, so kubectl's apply does not read them).

use serde_json::{json, Map, Value};

use super::crd::Served;
use super::resources::Resource;

#[rustfmt::skip]
mod kinds;

use kinds::{Field, Type, KINDS, OBJECT_META_FIELDS};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";

fn api_version() -> Value {
    json!({
        "type": "string",
        "description": "APIVersion names the version of the schema this object is written in; \
                        the server converts recognised versions to its own.",
    })
}

fn kind() -> Value {
    json!({
        "type": "string",
        "description": "Kind names the REST resource this object represents, in CamelCase.",
    })
}

fn reference(name: &str) -> Value {
    json!({ "allOf": [{ "$ref": format!("#/components/schemas/{name}") }] })
}

fn metadata() -> Value {
    let mut value = reference(OBJECT_META);
    value["default"] = json!({});
    value["description"] = json!(
        "Standard object's metadata: name, namespace, labels, annotations and the fields the \
         server keeps."
    );
    value
}

fn object(fields: &[Field]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|Field(name, ty, description)| ((*name).to_string(), field(ty, description)))
        .collect();
    json!({ "type": "object", "properties": properties })
}

fn field(ty: &Type, description: &str) -> Value {
    let mut value = match ty {
        Type::Str => json!({ "type": "string" }),
        Type::Int32 => json!({ "type": "integer", "format": "int32" }),
        Type::Int64 => json!({ "type": "integer", "format": "int64" }),
        Type::Bool => json!({ "type": "boolean" }),
        Type::Time => json!({ "type": "string", "format": "date-time" }),
        Type::IntOrString => reference(INT_OR_STRING),
        Type::StrMap(format) => {
            let mut item = json!({ "type": "string", "default": "" });
            if let Some(format) = format {
                item["format"] = json!(format);
            }
            json!({ "type": "object", "additionalProperties": item })
        }
        Type::Strings => json!({ "type": "array", "items": { "type": "string", "default": "" } }),
        Type::Obj(fields) => object(fields),
        Type::Objs(fields) => {
            let mut item = object(fields);
            item["default"] = json!({});
            json!({ "type": "array", "items": item })
        }
    };
    value["description"] = json!(description);
    value
}

fn with_gvk(mut schema: Value, group: &str, version: &str, kind: &str) -> Value {
    schema["x-kubernetes-group-version-kind"] =
        json!([{ "group": group, "version": version, "kind": kind }]);
    schema
}

/// The schema of a built-in kind, if it is one.
fn builtin(resource: &Resource) -> Option<(String, Value)> {
    let found = KINDS
        .iter()
        .find(|k| k.group == resource.group && k.kind == resource.kind)?;
    let mut schema = object(found.fields);
    schema["description"] = json!(found.description);
    let properties = schema["properties"].as_object_mut()?;
    properties.insert("apiVersion".into(), api_version());
    properties.insert("kind".into(), kind());
    properties.insert("metadata".into(), metadata());
    let name = format!("{}.{}.{}", found.package, resource.version, resource.kind);
    Some((
        name,
        with_gvk(schema, resource.group, resource.version, resource.kind),
    ))
}

/// `com.example.stable.v1.CronTab` for group `stable.example.com`.
fn custom_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

fn custom(resource: &Resource, served: &Served) -> Option<(String, Value)> {
    let (_, version) = served.version_of(resource)?;
    let mut schema = version.custom.schema.clone();
    let map = schema.as_object_mut()?;
    let properties = map
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    properties.insert("apiVersion".into(), api_version());
    properties.insert("kind".into(), kind());
    properties.insert("metadata".into(), metadata());
    let name = custom_name(resource.group, resource.version, resource.kind);
    Some((
        name,
        with_gvk(schema, resource.group, resource.version, resource.kind),
    ))
}

/// `components.schemas` of the OpenAPI v3 document of `resources` (one group version).
pub fn components(resources: &[&'static Resource], served: &Served) -> Map<String, Value> {
    let mut schemas = Map::new();
    for resource in resources {
        if let Some((name, schema)) = builtin(resource).or_else(|| custom(resource, served)) {
            schemas.insert(name, schema);
        }
    }
    if !schemas.is_empty() {
        let mut meta = object(OBJECT_META_FIELDS);
        meta["description"] = json!("ObjectMeta is the metadata every persisted resource has.");
        schemas.insert(OBJECT_META.into(), meta);
        schemas.insert(
            INT_OR_STRING.into(),
            json!({
                "oneOf": [{ "type": "integer" }, { "type": "string" }],
                "format": "int-or-string",
                "description": "IntOrString holds either an int32 or a string.",
            }),
        );
    }
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_schema_names_its_kind_and_refers_to_object_meta() {
        let configmaps = crate::kube::resources::find("", "v1", "configmaps").expect("served");
        let schemas = components(&[configmaps], &Served::default());
        let schema = &schemas["io.k8s.api.core.v1.ConfigMap"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"],
            json!([{ "group": "", "version": "v1", "kind": "ConfigMap" }])
        );
        let reference = schema["properties"]["metadata"]["allOf"][0]["$ref"]
            .as_str()
            .expect("a reference");
        let target = reference
            .strip_prefix("#/components/schemas/")
            .expect("local");
        assert!(schemas.contains_key(target));
        assert_eq!(
            custom_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
    }

    /// Every `$ref` under `value`.
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target.clone());
                }
                map.values().for_each(|v| references(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_built_in_resource_has_a_schema_whose_references_resolve() {
        for resource in crate::kube::resources::RESOURCES {
            let schemas = components(&[resource], &Served::default());
            let named = schemas
                .values()
                .filter(|s| s["x-kubernetes-group-version-kind"][0]["kind"] == resource.kind)
                .count();
            assert_eq!(named, 1, "{}", resource.kind);
            let mut found = Vec::new();
            references(&Value::Object(schemas.clone()), &mut found);
            for target in found {
                let name = target.strip_prefix("#/components/schemas/").expect("local");
                assert!(schemas.contains_key(name), "{target}");
            }
        }
    }
}
