//! Applying one manifest object, and deleting one, through the API's own verbs
//! ([`api::handle`]): the same validation, defaults, namespaces check and transactions as a
//! client's request.
//!
//! Guarantees:
//! - apply creates the object when it is missing, else patches it with a JSON merge patch
//!   computed from what the file applied last (kept in the object's
//!   `objectset.rio.cattle.io/applied` annotation, as k3s's deploy controller keeps it): the
//!   fields the file sets are set, the fields the file no longer sets are removed, and fields
//!   others set (a label added with kubectl, server fields) are left alone;
//! - the object carries k3s's owner annotations naming its addon, and delete removes an
//!   object only while they still name that addon, so a file never deletes what another file
//!   or a user took over;
//! - a namespaced object without a namespace goes to `default` (as k3s);
//! - a kind the server does not serve is [`ApplyError::NotServed`], for the caller to retry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::kube::api::{self, Answer, Call};
use crate::kube::resources::{self, Resource};
use crate::kube::router::Target;
use crate::kube::status::ApiError;
use crate::kube::storage::Store;

/// The last configuration applied from a file, as JSON.
pub const APPLIED: &str = "objectset.rio.cattle.io/applied";
/// The addon that owns an object.
pub const OWNER_NAME: &str = "objectset.rio.cattle.io/owner-name";
pub const OWNER_NAMESPACE: &str = "objectset.rio.cattle.io/owner-namespace";
pub const OWNER_GVK: &str = "objectset.rio.cattle.io/owner-gvk";
/// Where addons live (k3s's namespace of them).
pub const ADDON_NAMESPACE: &str = "kube-system";
const ADDON_GVK: &str = "k3s.cattle.io/v1, Kind=Addon";

/// Attempts of an apply that lost a create race.
const ATTEMPTS: usize = 4;

/// One object a file names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {namespace}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// Why an apply or delete did not happen.
#[derive(Debug)]
pub enum ApplyError {
    /// The server does not serve this kind (yet).
    NotServed,
    /// The API refused the request.
    Api(ApiError),
}

impl From<ApiError> for ApplyError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotServed => write!(f, "the server does not serve this kind (retried)"),
            Self::Api(error) => write!(f, "{} ({}): {}", error.reason, error.code, error.message),
        }
    }
}

/// The served resource of `api_version` and `kind`.
fn resource_of(api_version: &str, kind: &str) -> Option<&'static Resource> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    resources::of_group_version(group, version).find(|resource| resource.kind == kind)
}

/// The reference of a file's object: its namespace is `default` when it is namespaced and
/// names none, and none when it is cluster-scoped. Unserved kinds keep what the file says.
pub fn object_ref(object: &Value) -> ObjectRef {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (text("/apiVersion"), text("/kind"));
    let given = Some(text("/metadata/namespace")).filter(|ns| !ns.is_empty());
    let namespace = match resource_of(&api_version, &kind) {
        Some(resource) if resource.namespaced => given.or_else(|| Some("default".into())),
        Some(_) => None,
        None => given,
    };
    ObjectRef {
        api_version,
        kind,
        namespace,
        name: text("/metadata/name"),
    }
}

/// Sends one request through the API and returns the object it answers.
async fn request(
    store: &Store,
    method: hyper::Method,
    target: &Target,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let query = BTreeMap::new();
    let call = Call {
        method: &method,
        target,
        query: &query,
        accept: "application/json",
        content_type,
        body,
    };
    match api::handle(store, &call).await? {
        Answer::Json(_, value) => Ok(value),
        Answer::Watch(_) => Err(ApiError::internal(
            "a manifest request was answered with a watch",
        )),
    }
}

fn target(resource: &'static Resource, reference: &ObjectRef, named: bool) -> Target {
    Target {
        resource,
        namespace: reference.namespace.clone(),
        name: named.then(|| reference.name.clone()),
        subresource: None,
    }
}

fn annotations(object: &Value) -> Option<&Map<String, Value>> {
    object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
}

fn owned_by(object: &Value, addon: &str) -> bool {
    annotations(object).is_some_and(|annotations| {
        annotations.get(OWNER_NAME).and_then(Value::as_str) == Some(addon)
            && annotations.get(OWNER_NAMESPACE).and_then(Value::as_str) == Some(ADDON_NAMESPACE)
    })
}

/// The JSON merge patch taking what was applied last to `desired`: `desired` itself, plus a
/// `null` for every field `last` set that `desired` no longer sets (objects compared field
/// by field, lists replaced whole).
pub fn three_way_patch(last: &Value, desired: &Value) -> Value {
    let mut patch = desired.clone();
    if let (Some(last), Some(patch)) = (last.as_object(), patch.as_object_mut()) {
        for (field, old) in last {
            match patch.get_mut(field) {
                None => {
                    patch.insert(field.clone(), Value::Null);
                }
                Some(new) if old.is_object() && new.is_object() => {
                    *new = three_way_patch(old, new);
                }
                Some(_) => {}
            }
        }
    }
    patch
}

/// Applies `object` of `addon`: creates or patches it.
pub async fn apply(
    store: &Store,
    addon: &str,
    object: &Value,
) -> Result<(ObjectRef, Outcome), ApplyError> {
    let reference = object_ref(object);
    let resource =
        resource_of(&reference.api_version, &reference.kind).ok_or(ApplyError::NotServed)?;
    let mut desired = object.clone();
    if let Some(metadata) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
        // A copy of `kubectl get -o yaml` names a version that is long gone.
        metadata.remove("resourceVersion");
        if let Some(namespace) = &reference.namespace {
            metadata.insert("namespace".into(), json!(namespace));
        }
    }
    let applied = serde_json::to_string(&desired)
        .map_err(|error| ApiError::internal(format!("encoding the applied object: {error}")))?;
    let mut owned = desired.clone();
    if let Some(metadata) = owned.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(APPLIED.into(), json!(applied));
            annotations.insert(OWNER_NAME.into(), json!(addon));
            annotations.insert(OWNER_NAMESPACE.into(), json!(ADDON_NAMESPACE));
            annotations.insert(OWNER_GVK.into(), json!(ADDON_GVK));
        }
    }
    let encode = |value: &Value| {
        serde_json::to_vec(value)
            .map_err(|error| ApiError::internal(format!("encoding a manifest object: {error}")))
    };
    let named = target(resource, &reference, true);
    for _ in 0..ATTEMPTS {
        let current = match request(store, hyper::Method::GET, &named, "", b"").await {
            Ok(current) => current,
            Err(error) if error.code == 404 && error.reason == "NotFound" => {
                let collection = target(resource, &reference, false);
                let body = encode(&owned)?;
                match request(
                    store,
                    hyper::Method::POST,
                    &collection,
                    "application/json",
                    &body,
                )
                .await
                {
                    Ok(_) => return Ok((reference, Outcome::Created)),
                    Err(error) if error.reason == "AlreadyExists" => continue,
                    Err(error) => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        };
        let last = annotations(&current)
            .and_then(|annotations| annotations.get(APPLIED))
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .unwrap_or(Value::Null);
        let patch = encode(&three_way_patch(&last, &owned))?;
        let patched = request(
            store,
            hyper::Method::PATCH,
            &named,
            "application/merge-patch+json",
            &patch,
        )
        .await?;
        let version = |object: &Value| object.pointer("/metadata/resourceVersion").cloned();
        let outcome = if version(&patched) == version(&current) {
            Outcome::Unchanged
        } else {
            Outcome::Updated
        };
        return Ok((reference, outcome));
    }
    Err(ApiError::conflict(resource, &reference.name).into())
}

/// Deletes the object `reference` if it exists and `addon` still owns it; whether it did.
pub async fn delete(store: &Store, addon: &str, reference: &ObjectRef) -> Result<bool, ApplyError> {
    let Some(resource) = resource_of(&reference.api_version, &reference.kind) else {
        // Nothing of an unserved kind can have been created.
        return Ok(false);
    };
    let named = target(resource, reference, true);
    let current = match request(store, hyper::Method::GET, &named, "", b"").await {
        Ok(current) => current,
        Err(error) if error.code == 404 => return Ok(false),
        Err(error) => return Err(error.into()),
    };
    if !owned_by(&current, addon) {
        return Ok(false);
    }
    let precondition = json!({
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "preconditions": { "resourceVersion": current.pointer("/metadata/resourceVersion") },
    });
    let body = serde_json::to_vec(&precondition)
        .map_err(|error| ApiError::internal(format!("encoding delete options: {error}")))?;
    match request(
        store,
        hyper::Method::DELETE,
        &named,
        "application/json",
        &body,
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(error) if error.code == 404 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_sets_what_the_file_sets_and_removes_what_it_dropped() {
        let last = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "data": {"k": "v", "old": "o"}});
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "3"}}, "data": {"k": "v"}, "binaryData": {}});
        assert_eq!(
            three_way_patch(&last, &desired),
            json!({"metadata": {"name": "a", "labels": {"x": "3", "y": null}}, "data": {"k": "v", "old": null}, "binaryData": {}})
        );
        assert_eq!(three_way_patch(&Value::Null, &desired), desired);
        let dropped = json!({"metadata": {"name": "a"}});
        assert_eq!(
            three_way_patch(&last, &dropped),
            json!({"metadata": {"name": "a", "labels": null}, "data": null})
        );
    }

    #[test]
    fn namespaced_objects_default_to_the_default_namespace() {
        let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        assert_eq!(object_ref(&configmap).namespace.as_deref(), Some("default"));
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "namespace": "x"}});
        assert_eq!(object_ref(&namespace).namespace, None);
        let widget =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        assert_eq!(object_ref(&widget).namespace, None);
        assert_eq!(object_ref(&configmap).to_string(), "ConfigMap default/a");
    }
}
