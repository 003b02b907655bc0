//! Which part of the API a path names: discovery, OpenAPI, or a resource (a collection, an
//! object, or an object's subresource), with its namespace — as kube-apiserver lays out
//! `/api/v1/...` and `/apis/<group>/<version>/...`.
//!
//! Guarantees: a path is either one route or none (`404` with a `Status`); a resource route
//! always names a served resource.

use std::collections::BTreeMap;

use super::resources::{self, Resource};

/// The paths the Kubernetes API owns on the shared port; the supervisor keeps the others.
pub fn is_api_path(path: &str) -> bool {
    [
        "/api", "/apis", "/version", "/openapi", "/healthz", "/livez",
    ]
    .iter()
    .any(|root| path == *root || path.starts_with(&format!("{root}/")))
}

/// A resource request's target.
#[derive(Debug, Clone)]
pub struct Target {
    pub resource: &'static Resource,
    /// The request's namespace (`None`: cluster-scoped, or every namespace).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Route {
    Version,
    Health,
    CoreVersions,
    GroupList,
    Group(String),
    ResourceList { group: String, version: String },
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3(String),
    Resource(Target),
}

#[cfg(test)]
pub fn route(path: &str) -> Option<Route> {
    route_in(path, &[])
}

/// The route of `path` when `extra` (the custom resources) is served beside the built-ins.
pub fn route_in(path: &str, extra: &[&'static Resource]) -> Option<Route> {
    let segments: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["version"] => Some(Route::Version),
        ["healthz"] | ["livez"] => Some(Route::Health),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::GroupList),
        ["apis", group] => Some(Route::Group(group.to_string())),
        ["openapi", "v2"] => Some(Route::OpenApiV2),
        ["openapi", "v3"] => Some(Route::OpenApiV3Root),
        ["openapi", "v3", rest @ ..] => Some(Route::OpenApiV3(rest.join("/"))),
        ["api", version, rest @ ..] => resource_route("", version, rest, extra),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest, extra),
        _ => None,
    }
}

fn resource_route(
    group: &str,
    version: &str,
    rest: &[&str],
    extra: &[&'static Resource],
) -> Option<Route> {
    let find = |plural: &str| {
        resources::find(group, version, plural).or_else(|| {
            extra
                .iter()
                .copied()
                .find(|r| r.group == group && r.version == version && r.plural == plural)
        })
    };
    let target = |resource, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Some(Route::Resource(Target {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        }))
    };
    match rest {
        [] => Some(Route::ResourceList {
            group: group.to_string(),
            version: version.to_string(),
        }),
        [plural] => target(find(plural)?, None, None, None),
        ["namespaces", namespace, plural] if find(plural).is_some_and(|r| r.namespaced) => {
            target(find(plural)?, Some(namespace), None, None)
        }
        ["namespaces", namespace, plural, name] => {
            let resource = find(plural).filter(|r| r.namespaced)?;
            target(resource, Some(namespace), Some(name), None)
        }
        ["namespaces", namespace, plural, name, sub] => {
            let resource = find(plural).filter(|r| r.namespaced)?;
            target(resource, Some(namespace), Some(name), Some(sub))
        }
        [plural, name] => {
            let resource = find(plural).filter(|r| !r.namespaced)?;
            target(resource, None, Some(name), None)
        }
        [plural, name, sub] => {
            let resource = find(plural).filter(|r| !r.namespaced)?;
            target(resource, None, Some(name), Some(sub))
        }
        _ => None,
    }
}

/// The query parameters of a request (the last value of each name wins).
pub fn query(text: Option<&str>) -> BTreeMap<String, String> {
    text.unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (hex(bytes[index + 1]), hex(bytes[index + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        index += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match route(path) {
            Some(Route::Resource(target)) => target,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_name_collections_objects_and_namespaces() {
        let t = target("/api/v1/namespaces/default/configmaps/a");
        assert_eq!(
            (t.resource.plural, t.namespace.as_deref(), t.name.as_deref()),
            ("configmaps", Some("default"), Some("a"))
        );
        let t = target("/api/v1/namespaces/default/configmaps");
        assert_eq!((t.resource.plural, t.name), ("configmaps", None));
        let t = target("/api/v1/namespaces/default");
        assert_eq!(
            (t.resource.plural, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = target("/api/v1/namespaces/default/status");
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = target("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1");
        assert_eq!(t.resource.kind, "Lease");
        assert!(route("/api/v1/widgets").is_none());
        assert!(route("/api/v1/configmaps/a").is_none());
    }

    #[test]
    fn queries_are_percent_decoded() {
        let q = query(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
        assert!(is_api_path("/api/v1/namespaces"));
        assert!(!is_api_path("/cacerts"));
        assert!(!is_api_path("/apisx"));
    }
}
