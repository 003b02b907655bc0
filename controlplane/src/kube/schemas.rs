//! The OpenAPI v3 schemas of served kinds, for `kubectl explain`: ConfigMap, Secret and
//! Namespace written here, and each custom resource's from its CRD's `openAPIV3Schema`, with
//! `apiVersion`, `kind` and `metadata` (ObjectMeta) added as kube-apiserver adds them.
//!
//! Guarantees: every schema of a kind carries `x-kubernetes-group-version-kind` naming the
//! group, version and kind it describes (how kubectl finds it); every `$ref` points into the
//! same document; schema names are kube's (`io.k8s.api.core.v1.ConfigMap`, reversed group
//! for custom resources: `com.example.stable.v1.CronTab`). Kinds without a schema here have
//! none (kubectl explain then says it found none).

use serde_json::{json, Map, Value};

use super::crd::Served;
use super::resources::Resource;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn string_map(description: &str, format: Option<&str>) -> Value {
    let mut item = json!({ "type": "string", "default": "" });
    if let Some(format) = format {
        item["format"] = json!(format);
    }
    json!({ "type": "object", "additionalProperties": item, "description": description })
}

fn api_version() -> Value {
    string(
        "APIVersion names the version of the schema this object is written in; the server \
         converts recognised versions to its own.",
    )
}

fn kind() -> Value {
    string("Kind names the REST resource this object represents, in CamelCase.")
}

fn metadata() -> Value {
    json!({
        "allOf": [{ "$ref": format!("#/components/schemas/{OBJECT_META}") }],
        "default": {},
        "description": "Standard object's metadata: name, namespace, labels, annotations and \
                        the fields the server keeps.",
    })
}

fn object_meta() -> Value {
    json!({
        "type": "object",
        "description": "ObjectMeta is the metadata every persisted resource has.",
        "properties": {
            "name": string("Name is unique within a namespace (or the cluster for cluster-scoped kinds) and cannot be changed."),
            "generateName": string("GenerateName is a prefix the server completes with a random suffix when no name is given."),
            "namespace": string("Namespace is the space the name is unique in; empty for cluster-scoped kinds."),
            "uid": string("UID is the unique identity the server gives the object at creation."),
            "resourceVersion": string("ResourceVersion is the version of the object clients use for optimistic concurrency and watches; opaque to clients."),
            "generation": { "type": "integer", "format": "int64", "description": "Generation counts changes of the desired state; set by the server." },
            "creationTimestamp": { "type": "string", "format": "date-time", "description": "CreationTimestamp is when the server created the object, in UTC." },
            "deletionTimestamp": { "type": "string", "format": "date-time", "description": "DeletionTimestamp is when the object is to be deleted; set by the server." },
            "labels": string_map("Labels are key/value pairs that selectors match on.", None),
            "annotations": string_map("Annotations are key/value pairs tools store with the object; not matched by selectors.", None),
            "finalizers": { "type": "array", "items": { "type": "string", "default": "" }, "description": "Finalizers must be empty before the object is deleted." },
            "ownerReferences": { "type": "array", "items": { "type": "object" }, "description": "OwnerReferences name the objects this one depends on." },
        },
    })
}

fn with_gvk(mut schema: Value, group: &str, version: &str, kind: &str) -> Value {
    schema["x-kubernetes-group-version-kind"] =
        json!([{ "group": group, "version": version, "kind": kind }]);
    schema
}

/// The schemas of the built-in kinds that have one.
fn builtin(resource: &Resource) -> Option<(String, Value)> {
    let schema = match (resource.group, resource.kind) {
        ("", "ConfigMap") => json!({
            "type": "object",
            "description": "ConfigMap holds configuration data for pods to consume.",
            "properties": {
                "apiVersion": api_version(),
                "kind": kind(),
                "metadata": metadata(),
                "data": string_map("Data holds UTF-8 configuration values; keys are made of alphanumerics, '-', '_' and '.', and must not also be keys of binaryData.", None),
                "binaryData": string_map("BinaryData holds binary values, base64 encoded; keys as for data, distinct from them.", Some("byte")),
                "immutable": { "type": "boolean", "description": "Immutable, when true, forbids any later change of data and binaryData." },
            },
        }),
        ("", "Secret") => json!({
            "type": "object",
            "description": "Secret holds secret data of a given type, such as passwords or keys.",
            "properties": {
                "apiVersion": api_version(),
                "kind": kind(),
                "metadata": metadata(),
                "data": string_map("Data holds the secret values, base64 encoded.", Some("byte")),
                "stringData": string_map("StringData takes plain-text values on writes; they are merged into data and never returned.", None),
                "type": string("Type tells how the data is used (Opaque by default)."),
                "immutable": { "type": "boolean", "description": "Immutable, when true, forbids any later change of data." },
            },
        }),
        ("", "Namespace") => json!({
            "type": "object",
            "description": "Namespace gives names a scope of their own.",
            "properties": {
                "apiVersion": api_version(),
                "kind": kind(),
                "metadata": metadata(),
                "spec": { "type": "object", "description": "Spec holds the namespace's finalizers.", "properties": {
                    "finalizers": { "type": "array", "items": { "type": "string", "default": "" }, "description": "Finalizers must be empty before the namespace is removed." },
                } },
                "status": { "type": "object", "description": "Status is the namespace's observed state.", "properties": {
                    "phase": string("Phase is Active or Terminating."),
                } },
            },
        }),
        _ => return None,
    };
    let name = format!("io.k8s.api.core.{}.{}", resource.version, resource.kind);
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
        schemas.insert(OBJECT_META.into(), object_meta());
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
}
