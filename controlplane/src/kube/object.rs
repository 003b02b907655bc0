//! Objects as the API stores and returns them: checks of what a client sends (an object of
//! the resource's kind and API version, in the request's namespace, with a valid name), the
//! fields the server owns (`uid`, `creationTimestamp`, `generation`, `resourceVersion`) and
//! each kind's defaults.
//!
//! Guarantees: a stored value never carries `resourceVersion` (it is the key's mod_revision,
//! filled in on the way out, as kube-apiserver does); `uid` and `creationTimestamp` are set at
//! create and kept by every update whatever the client sends; `generation` starts at 1 for
//! resources with a spec and grows by one exactly when the spec changes; a name that breaks
//! the resource's RFC 1123 rule is refused with `422 Invalid` before anything is written.

use base64::Engine as _;
use rand::RngCore;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::resources::{NameRule, Resource};
use super::status::ApiError;

const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
(e.g. 'example.com', regex used for validation is \
'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or \
'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// Why `name` breaks `rule`, if it does (kube-apiserver's wording).
pub fn name_problem(rule: NameRule, name: &str) -> Option<String> {
    match rule {
        NameRule::Label if name.len() > 63 => Some("must be no more than 63 characters".into()),
        NameRule::Label if !is_label(name) => Some(LABEL_RULE.into()),
        NameRule::Subdomain if name.len() > 253 => {
            Some("must be no more than 253 characters".into())
        }
        NameRule::Subdomain if !name.split('.').all(is_label) => Some(SUBDOMAIN_RULE.into()),
        _ => None,
    }
}

fn is_label(part: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = part.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|&c| alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// `metadata.name`, or "".
pub fn name(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.namespace`, if any.
pub fn namespace(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
}

/// `metadata.labels` (empty when absent).
pub fn labels(object: &Value) -> Map<String, Value> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The object stored at a key, with `resourceVersion` set to the key's mod_revision.
pub fn decode_stored(value: &[u8], mod_revision: i64) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(value)
        .map_err(|error| ApiError::internal(format!("a stored object does not decode: {error}")))?;
    set_resource_version(&mut object, mod_revision);
    Ok(object)
}

/// The bytes to store for `object` (without `resourceVersion`).
pub fn encode_for_storage(object: &Value) -> Result<Vec<u8>, ApiError> {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    serde_json::to_vec(&object)
        .map_err(|error| ApiError::internal(format!("encoding the object: {error}")))
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), json!(revision.to_string()));
    }
}

/// `metadata.resourceVersion` as a revision: `None` when absent or empty.
pub fn resource_version(object: &Value) -> Result<Option<i64>, ApiError> {
    match object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!("invalid resourceVersion {text:?}: not a number"))
        }),
    }
}

/// A fresh random (version 4) UID.
fn new_uid() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// kube-apiserver's generateName suffix: 5 characters without vowels or look-alikes.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// RFC 3339 in UTC to the second, as Kubernetes timestamps are.
pub fn timestamp(now: OffsetDateTime) -> String {
    crate::etcd_snapshot::names::rfc3339(now)
}

/// Checks that `object` is a JSON object of `resource`'s kind and API version (filling them in
/// when absent), in `namespace` (the request's), and returns its metadata.
fn check_shape<'a>(
    resource: &Resource,
    namespace: Option<&str>,
    object: &'a mut Value,
) -> Result<&'a mut Map<String, Value>, ApiError> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body is not a JSON object"))?;
    match map.get("kind").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() && kind != resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): kind is {kind:?}",
                resource.kind
            )));
        }
        _ => {}
    }
    let api_version = resource.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != api_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({given}) does not match the expected API version \
                 ({api_version})"
            )));
        }
        _ => {}
    }
    map.insert("kind".into(), json!(resource.kind));
    map.insert("apiVersion".into(), json!(api_version));
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata is not an object"))?;
    match (resource.namespaced, namespace) {
        (true, Some(namespace)) => {
            if let Some(given) = metadata.get("namespace").and_then(Value::as_str) {
                if !given.is_empty() && given != namespace {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent \
                         on the request",
                    ));
                }
            }
            metadata.insert("namespace".into(), json!(namespace));
        }
        (true, None) => {
            return Err(ApiError::bad_request(
                "a namespaced object needs a namespace in the request path",
            ));
        }
        (false, _) => {
            metadata.remove("namespace");
        }
    }
    metadata.remove("resourceVersion");
    metadata.remove("selfLink");
    metadata.remove("managedFields");
    Ok(metadata)
}

/// What a create stores: the checked object with its name (or one made from
/// `generateName`), a new `uid`, `creationTimestamp`, `generation` and the kind's defaults.
pub fn prepare_create(
    resource: &Resource,
    namespace: Option<&str>,
    mut object: Value,
    now: OffsetDateTime,
) -> Result<Value, ApiError> {
    let metadata = check_shape(resource, namespace, &mut object)?;
    let mut name = metadata
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        let prefix = metadata
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if prefix.is_empty() {
            return Err(ApiError::required(resource, "metadata.name"));
        }
        name = format!("{prefix}{}", random_suffix());
        metadata.insert("name".into(), json!(name));
    }
    if let Some(problem) = name_problem(resource.name_rule, &name) {
        return Err(ApiError::invalid(
            resource,
            &name,
            "metadata.name",
            &name,
            &problem,
        ));
    }
    metadata.insert("uid".into(), json!(new_uid()));
    metadata.insert("creationTimestamp".into(), json!(timestamp(now)));
    if resource.has_spec {
        metadata.insert("generation".into(), json!(1));
    } else {
        metadata.remove("generation");
    }
    apply_defaults(resource, &mut object)?;
    Ok(object)
}

/// What an update of `current` to `object` stores: the checked object named `name`, keeping
/// `current`'s `uid` and `creationTimestamp`, `generation` bumped when the spec changed.
pub fn prepare_update(
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
    current: &Value,
    mut object: Value,
) -> Result<Value, ApiError> {
    let spec_changed = current.get("spec") != object.get("spec");
    let metadata = check_shape(resource, namespace, &mut object)?;
    match metadata.get("name").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    metadata.insert("name".into(), json!(name));
    for kept in ["uid", "creationTimestamp"] {
        match current.pointer(&format!("/metadata/{kept}")) {
            Some(value) => metadata.insert(kept.into(), value.clone()),
            None => metadata.remove(kept),
        };
    }
    if resource.has_spec {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = if spec_changed {
            generation + 1
        } else {
            generation
        };
        metadata.insert("generation".into(), json!(generation));
    } else {
        metadata.remove("generation");
    }
    apply_defaults(resource, &mut object)?;
    Ok(object)
}

/// Each kind's defaults and conversions, as kube-apiserver applies them.
fn apply_defaults(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    let Some(map) = object.as_object_mut() else {
        return Ok(());
    };
    // Custom resources may reuse a built-in kind's name: only the core group's kinds match.
    let kind = if resource.group.is_empty() {
        resource.kind
    } else {
        ""
    };
    match kind {
        "Secret" => {
            let engine = base64::engine::general_purpose::STANDARD;
            let mut data = match map.remove("data") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(data)) => data,
                Some(_) => return Err(ApiError::bad_request("Secret.data is not an object")),
            };
            for (key, value) in &data {
                let decodes = value
                    .as_str()
                    .is_some_and(|text| engine.decode(text).is_ok());
                if !decodes {
                    return Err(ApiError::bad_request(format!(
                        "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 \
                         data in data[{key:?}]"
                    )));
                }
            }
            if let Some(Value::Object(strings)) = map.remove("stringData") {
                for (key, value) in strings {
                    let text = value.as_str().unwrap_or("");
                    data.insert(key, json!(engine.encode(text)));
                }
            }
            if !data.is_empty() {
                map.insert("data".into(), Value::Object(data));
            }
            if map
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                map.insert("type".into(), json!("Opaque"));
            }
        }
        "Namespace" => {
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if spec.get("finalizers").is_none() {
                spec["finalizers"] = json!(["kubernetes"]);
            }
            let status = map.entry("status").or_insert_with(|| json!({}));
            if status.get("phase").is_none() {
                status["phase"] = json!("Active");
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::resources::find;

    fn configmaps() -> &'static Resource {
        find("", "v1", "configmaps").expect("served")
    }

    #[test]
    fn names_follow_rfc_1123() {
        assert_eq!(name_problem(NameRule::Subdomain, "a.b-c"), None);
        assert!(name_problem(NameRule::Subdomain, "Bad_Name").is_some());
        assert!(name_problem(NameRule::Subdomain, "-a").is_some());
        assert!(name_problem(NameRule::Label, "a.b").is_some());
        assert!(name_problem(NameRule::Label, &"a".repeat(64)).is_some());
        assert_eq!(name_problem(NameRule::Label, "kube-system"), None);
    }

    #[test]
    fn create_sets_the_server_fields_and_update_keeps_them() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let created = prepare_create(
            configmaps(),
            Some("default"),
            json!({"metadata": {"name": "a", "resourceVersion": "9"}, "data": {"k": "v"}}),
            now,
        )
        .expect("valid");
        assert_eq!(created["kind"], "ConfigMap");
        assert_eq!(created["metadata"]["namespace"], "default");
        assert_eq!(
            created["metadata"]["creationTimestamp"],
            "2027-01-15T08:00:00Z"
        );
        assert!(created["metadata"].get("resourceVersion").is_none());
        let uid = created["metadata"]["uid"].clone();
        let updated = prepare_update(
            configmaps(),
            Some("default"),
            "a",
            &created,
            json!({"metadata": {"uid": "other"}, "data": {"k": "w"}}),
        )
        .expect("valid");
        assert_eq!(updated["metadata"]["uid"], uid);
        assert_eq!(updated["metadata"]["name"], "a");
    }

    #[test]
    fn an_invalid_name_is_refused_as_invalid() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let error = prepare_create(
            configmaps(),
            Some("default"),
            json!({"metadata": {"name": "Bad_Name"}}),
            now,
        )
        .expect_err("invalid");
        assert_eq!((error.code, error.reason), (422, "Invalid"));
        assert!(error
            .message
            .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value"));
    }

    #[test]
    fn secret_string_data_becomes_base64_data() {
        let secrets = find("", "v1", "secrets").expect("served");
        let created = prepare_create(
            secrets,
            Some("default"),
            json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
            OffsetDateTime::UNIX_EPOCH,
        )
        .expect("valid");
        assert_eq!(created["data"]["k"], "dg==");
        for bad in [json!("not base64!"), json!(5)] {
            let error = prepare_create(
                secrets,
                Some("default"),
                json!({"metadata": {"name": "s"}, "data": {"k": bad}}),
                OffsetDateTime::UNIX_EPOCH,
            )
            .expect_err("not base64");
            assert_eq!(error.code, 400);
        }
        assert_eq!(created["type"], "Opaque");
        assert!(created.get("stringData").is_none());
    }
}
