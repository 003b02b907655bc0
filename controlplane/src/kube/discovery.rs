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
use sha2::{Digest, Sha256};

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

fn group_entry(group: &str, versions: &[&str]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|version| json!({ "groupVersion": format!("{group}/{version}"), "version": version }))
        .collect();
    json!({
        "name": group,
        "preferredVersion": entries.first().cloned().unwrap_or(json!({})),
        "versions": entries,
    })
}

/// kube's version priority: GA before beta before alpha, higher numbers first, then other
/// names alphabetically.
fn version_rank(version: &str) -> (u8, std::cmp::Reverse<u64>, std::cmp::Reverse<u64>, String) {
    let parsed = version.strip_prefix('v').and_then(|rest| {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major = rest[..digits].parse::<u64>().ok()?;
        let tail = &rest[digits..];
        let (level, minor) = if tail.is_empty() {
            (0, "0")
        } else if let Some(minor) = tail.strip_prefix("beta") {
            (1, minor)
        } else {
            (2, tail.strip_prefix("alpha")?)
        };
        Some((level, major, minor.parse::<u64>().ok()?))
    });
    match parsed {
        Some((level, major, minor)) => (
            level,
            std::cmp::Reverse(major),
            std::cmp::Reverse(minor),
            String::new(),
        ),
        None => (
            3,
            std::cmp::Reverse(0),
            std::cmp::Reverse(0),
            version.to_string(),
        ),
    }
}

/// Every group other than the core group with its versions, preferred first: the built-in
/// table's, then those of `extra` (custom resources).
fn groups(extra: &[&'static Resource]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = resources::groups()
        .into_iter()
        .map(|(group, version)| (group, vec![version]))
        .collect();
    for resource in extra {
        match groups.iter_mut().find(|(name, _)| *name == resource.group) {
            Some((_, versions)) if !versions.contains(&resource.version) => {
                versions.push(resource.version);
            }
            Some(_) => {}
            None => groups.push((resource.group, vec![resource.version])),
        }
    }
    for (_, versions) in &mut groups {
        versions.sort_by_key(|version| version_rank(version));
    }
    groups
}

fn of_group_version<'a>(
    group: &'a str,
    version: &'a str,
    extra: &'a [&'static Resource],
) -> Vec<&'static Resource> {
    resources::of_group_version(group, version)
        .chain(
            extra
                .iter()
                .copied()
                .filter(move |r| r.group == group && r.version == version),
        )
        .collect()
}

/// `/apis`: the built-in groups and those of `extra`.
pub fn group_list(extra: &[&'static Resource]) -> Value {
    let groups: Vec<Value> = groups(extra)
        .into_iter()
        .map(|(group, versions)| group_entry(group, &versions))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/<group>`, if the group is served.
pub fn group(group: &str, extra: &[&'static Resource]) -> Option<Value> {
    let (name, versions) = groups(extra).into_iter().find(|(name, _)| *name == group)?;
    let mut entry = group_entry(name, &versions);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

/// The APIResourceList of a group version, if it is served.
pub fn resource_list(group: &str, version: &str, extra: &[&'static Resource]) -> Option<Value> {
    let served = of_group_version(group, version, extra);
    if served.is_empty() {
        return None;
    }
    let mut entries = Vec::new();
    for resource in &served {
        let mut entry = json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": VERBS,
            "shortNames": resource.short_names,
            "storageVersionHash": "",
        });
        let custom = super::crd::custom(resource);
        if let Some(custom) = custom.filter(|c| !c.categories.is_empty()) {
            entry["categories"] = json!(custom.categories);
        }
        entries.push(entry);
        if custom.is_some_and(|c| c.status) {
            entries.push(json!({
                "name": format!("{}/status", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
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
pub fn openapi_v3_root(custom: &super::crd::Served) -> Value {
    let mut paths = serde_json::Map::new();
    let mut versions = vec![("", "v1")];
    for (group, group_versions) in groups(&custom.resources()) {
        versions.extend(group_versions.into_iter().map(|version| (group, version)));
    }
    for (group, version) in versions {
        let name = openapi_v3_name(group, version);
        // kubectl caches each document by this URL: the hash changes with the document.
        let document = openapi_v3_document(&name, custom).unwrap_or_default();
        let digest = Sha256::digest(document.to_string().as_bytes());
        let hash: String = digest.iter().take(8).map(|b| format!("{b:02X}")).collect();
        paths.insert(
            name.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{name}?hash={hash}") }),
        );
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/<name>`: the group version's paths, each PATCH declaring the query parameters
/// the server takes.
pub fn openapi_v3_document(name: &str, custom: &super::crd::Served) -> Option<Value> {
    let (group, version) = match name.split('/').collect::<Vec<_>>().as_slice() {
        ["api", version] => ("", *version),
        ["apis", group, version] => (*group, *version),
        _ => return None,
    };
    let extra = custom.resources();
    let served = of_group_version(group, version, &extra);
    if served.is_empty() {
        return None;
    }
    let parameters: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
        .iter()
        .map(|name| json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } }))
        .collect();
    let mut paths = serde_json::Map::new();
    for resource in served.iter().copied() {
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
        "components": { "schemas": super::schemas::components(&served, custom) },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_discovery_lists_configmaps_with_short_name() {
        let list = resource_list("", "v1", &[]).expect("served");
        let configmaps = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == "configmaps")
            .expect("configmaps")
            .clone();
        assert_eq!(configmaps["shortNames"], json!(["cm"]));
        assert_eq!(configmaps["namespaced"], json!(true));
        assert!(resource_list("apps", "v1", &[]).is_none());
    }

    #[test]
    fn openapi_v3_declares_field_validation_on_patch() {
        let document = openapi_v3_document("api/v1", &Default::default()).expect("served");
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
