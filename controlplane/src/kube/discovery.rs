//! Discovery, as kubectl reads it: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>`,
//! `/apis/<group>/<version>` (legacy, unaggregated discovery: clients fall back to it when the
//! answer is plain `application/json`), and just enough OpenAPI for `kubectl apply`:
//! `/openapi/v2` is an empty protobuf document (no schemas, so kubectl skips client-side
//! validation and builds strategic merge patches from its built-in types) and `/openapi/v3`
//! lists one document per group version whose PATCH operations declare the `fieldValidation`
//! parameter, so kubectl leaves validation to the server.
//!
//! Guarantees: every served resource appears in discovery with its verbs and short names, and
//! nothing that is not served does.

use serde_json::{json, Value};

use super::resources::{self, Resource};

/// The Kubernetes version k3rs's API answers as (the kubectl it is tested with).
pub const KUBE_VERSION: (&str, &str) = ("1", "32");

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn version() -> Value {
    let (major, minor) = KUBE_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0+k3rs{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// The architecture as Go names it (`amd64`, `arm64`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn group_entry(group: &str, version: &str) -> Value {
    let group_version = json!({ "groupVersion": format!("{group}/{version}"), "version": version });
    json!({
        "name": group,
        "versions": [group_version.clone()],
        "preferredVersion": group_version,
    })
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .map(|(group, version)| group_entry(group, version))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/<group>`, if the group is served.
pub fn group(group: &str) -> Option<Value> {
    let (name, version) = resources::groups()
        .into_iter()
        .find(|(name, _)| *name == group)?;
    let mut entry = group_entry(name, version);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

/// The APIResourceList of a group version, if it is served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Resource> = resources::of_group_version(group, version).collect();
    if served.is_empty() {
        return None;
    }
    let entries: Vec<Value> = served
        .iter()
        .map(|resource| {
            json!({
                "name": resource.plural,
                "singularName": resource.singular,
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": VERBS,
                "shortNames": resource.short_names,
                "storageVersionHash": "",
            })
        })
        .collect();
    let group_version = served[0].api_version();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }))
}

/// The path of a group version's OpenAPI v3 document (`api/v1`, `apis/<group>/<version>`).
fn openapi_v3_name(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each group version's document is.
pub fn openapi_v3_root() -> Value {
    let mut paths = serde_json::Map::new();
    let mut versions = vec![("", "v1")];
    versions.extend(resources::groups());
    for (group, version) in versions {
        let name = openapi_v3_name(group, version);
        paths.insert(
            name.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{name}?hash=k3rs{}", env!("CARGO_PKG_VERSION")) }),
        );
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/<name>`: the group version's paths, each PATCH declaring the query parameters
/// the server takes.
pub fn openapi_v3_document(name: &str) -> Option<Value> {
    let (group, version) = match name.split('/').collect::<Vec<_>>().as_slice() {
        ["api", version] => ("", *version),
        ["apis", group, version] => (*group, *version),
        _ => return None,
    };
    let served: Vec<&Resource> = resources::of_group_version(group, version).collect();
    if served.is_empty() {
        return None;
    }
    let parameters: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
        .iter()
        .map(|name| json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } }))
        .collect();
    let mut paths = serde_json::Map::new();
    for resource in served {
        let root = format!("/{}", openapi_v3_name(group, version));
        let path = if resource.namespaced {
            format!(
                "{root}/namespaces/{{namespace}}/{}/{{name}}",
                resource.plural
            )
        } else {
            format!("{root}/{}/{{name}}", resource.plural)
        };
        let gvk =
            json!({ "group": resource.group, "version": resource.version, "kind": resource.kind });
        let operation = |action: &str| {
            json!({
                "operationId": format!("{action}{}", resource.kind),
                "parameters": parameters,
                "responses": { "200": { "description": "OK" } },
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        paths.insert(
            path,
            json!({ "get": operation("get"), "put": operation("put"), "patch": operation("patch") }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": version },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_discovery_lists_configmaps_with_short_name() {
        let list = resource_list("", "v1").expect("served");
        let configmaps = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == "configmaps")
            .expect("configmaps")
            .clone();
        assert_eq!(configmaps["shortNames"], json!(["cm"]));
        assert_eq!(configmaps["namespaced"], json!(true));
        assert!(resource_list("apps", "v1").is_none());
    }

    #[test]
    fn openapi_v3_declares_field_validation_on_patch() {
        let document = openapi_v3_document("api/v1").expect("served");
        let patch = &document["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "ConfigMap"
        );
        assert!(patch["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
    }
}
