//! The verbs on resources: get, list, watch, create, update, patch, delete and
//! deletecollection, over [`Store`] with kube-apiserver's semantics.
//!
//! Guarantees:
//! - create writes only if the key does not exist (`409 AlreadyExists` otherwise), in a
//!   namespace that exists (`404` otherwise);
//! - update, patch and delete act on the version they read: a stale `resourceVersion` from
//!   the client is `409 Conflict`; without one, a concurrent writer makes them read again
//!   (at most [`RETRIES`] times) rather than overwrite;
//! - an update or patch that changes nothing writes nothing (the resourceVersion stays);
//! - a list with `limit` returns pages read at one revision, chained by a `continue` token
//!   that holds that revision (`410 Expired` once it is compacted);
//! - deleting a namespace deletes the objects in it; `default`, `kube-system` and
//!   `kube-public` cannot be deleted; deleting a node removes its server's etcd member first.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::crd;
use super::object;
use super::patch;
use super::resources::{self, Resource, RESOURCES};
use super::router::Target;
use super::selector::{FieldSelector, LabelSelector, Selectors};
use super::status::ApiError;
use super::storage::{Store, Written};
use super::table::{self, IncludeObject};
use super::watch::{self, Start, WatchSpec};

/// Writes retried after losing a race to another writer.
pub const RETRIES: usize = 8;

/// Namespaces that always exist.
pub const DEFAULT_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Namespaces that cannot be deleted (kube-apiserver's list).
const UNDELETABLE_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// A decoded request on a resource.
pub struct Call<'a> {
    pub method: &'a hyper::Method,
    pub target: &'a Target,
    pub query: &'a BTreeMap<String, String>,
    pub accept: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// What a call answers.
pub enum Answer {
    Json(u16, Value),
    Watch(watch::ChannelBody),
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    fn namespace(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun").is_some_and(|v| !v.is_empty())
    }

    fn table(&self) -> Option<IncludeObject> {
        table::wants_table(self.accept).then(|| IncludeObject::parse(self.param("includeObject")))
    }

    fn selectors(&self) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            labels: LabelSelector::parse(self.param("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(
                self.param("fieldSelector").unwrap_or(""),
                self.target.resource,
            )?,
        })
    }
}

/// Answers `call`.
pub async fn handle(store: &Store, call: &Call<'_>) -> Result<Answer, ApiError> {
    use hyper::Method;
    let resource = call.target.resource;
    if let Some(sub) = call.target.subresource.as_deref() {
        let without_status = crd::custom(resource).is_some_and(|custom| !custom.status);
        if sub != "status" || without_status {
            return Err(ApiError::not_found_path());
        }
    }
    match (call.method, call.target.name.as_deref()) {
        (&Method::GET, None) if call.flag("watch") => watch(store, call).await,
        (&Method::GET, None) => list(store, call).await,
        (&Method::GET, Some(name)) => {
            let object = get(store, call, name).await?;
            match call.table() {
                Some(include) => {
                    let metadata =
                        json!({ "resourceVersion": object["metadata"]["resourceVersion"].clone() });
                    Ok(Answer::Json(
                        200,
                        table::table(
                            resource,
                            &[object],
                            metadata,
                            include,
                            OffsetDateTime::now_utc(),
                        ),
                    ))
                }
                None => Ok(Answer::Json(200, object)),
            }
        }
        (&Method::POST, None) => create(store, call).await,
        (&Method::PUT, Some(name)) => update(store, call, name).await,
        (&Method::PATCH, Some(name)) => patch(store, call, name).await,
        (&Method::DELETE, Some(name)) => delete(store, call, name).await,
        (&Method::DELETE, None) => delete_collection(store, call).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Parses a request body as JSON, or YAML when the content type says so.
pub fn parse_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    if content_type.contains("protobuf") {
        return super::protobuf::decode(body, content_type);
    }
    if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if content_type.contains("yaml") {
        let value: serde_yaml::Value = serde_yaml::from_slice(body).map_err(|error| {
            ApiError::bad_request(format!("the request body is not valid YAML: {error}"))
        })?;
        serde_json::to_value(value).map_err(|error| {
            ApiError::bad_request(format!(
                "the request body is not a JSON-compatible YAML document: {error}"
            ))
        })
    } else {
        serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(format!(
                "couldn't get version/kind; json parse error: {error}"
            ))
        })
    }
}

/// A stored object as the request's version serves it (a custom resource written through
/// another version of its CRD reads as this one: kube's `None` conversion).
fn decode(call: &Call<'_>, value: &[u8], mod_revision: i64) -> Result<Value, ApiError> {
    let mut object = object::decode_stored(value, mod_revision)?;
    crd::serve_as(call.target.resource, &mut object);
    Ok(object)
}

fn key(call: &Call<'_>, name: &str) -> String {
    call.target.resource.key(call.namespace(), name)
}

/// The stored object `name` (linearizable read) and its mod revision; NotFound when there is
/// none, Conflict when `precondition` names another revision.
async fn read_current(
    store: &Store,
    call: &Call<'_>,
    name: &str,
    precondition: Option<i64>,
) -> Result<(i64, Value), ApiError> {
    let resource = call.target.resource;
    let kv = store
        .get(&key(call, name), false)
        .await?
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    if precondition.is_some_and(|rv| rv != kv.mod_revision) {
        return Err(ApiError::conflict(resource, name));
    }
    let object = decode(call, &kv.value, kv.mod_revision)?;
    Ok((kv.mod_revision, object))
}

async fn get(store: &Store, call: &Call<'_>, name: &str) -> Result<Value, ApiError> {
    let serializable = call.param("resourceVersion") == Some("0");
    let kv = store
        .get(&key(call, name), serializable)
        .await?
        .ok_or_else(|| ApiError::not_found(call.target.resource, name))?;
    decode(call, &kv.value, kv.mod_revision)
}

/// A `continue` token: the revision of the first page and the next key, as kube encodes it.
fn encode_continue(revision: i64, next_key: &str) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": revision, "start": next_key });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let revision = value
        .get("rv")
        .and_then(Value::as_i64)
        .ok_or_else(invalid)?;
    let start = value
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    Ok((revision, start.to_string()))
}

/// Reads the matching objects of a collection: at most `limit` (0: all), from a continue
/// token when given; returns them with the list's metadata.
pub async fn read_collection(
    store: &Store,
    call: &Call<'_>,
    selectors: &Selectors,
) -> Result<(Vec<Value>, Value), ApiError> {
    let prefix = call.target.resource.collection_prefix(call.namespace());
    let limit: i64 = match call.param("limit") {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {text:?}")))?
            .max(0),
    };
    let resource_version = call.param("resourceVersion").unwrap_or("");
    let (mut revision, mut start) = match call.param("continue").filter(|t| !t.is_empty()) {
        Some(token) => {
            let (revision, start) = decode_continue(token)?;
            (revision, format!("{prefix}{start}"))
        }
        None if call.param("resourceVersionMatch") == Some("Exact") => {
            let revision = resource_version.parse::<i64>().map_err(|_| {
                ApiError::bad_request("resourceVersionMatch=Exact needs a resourceVersion")
            })?;
            (revision, prefix.clone())
        }
        None => (0, prefix.clone()),
    };
    let continued = call.param("continue").is_some_and(|t| !t.is_empty());
    let serializable = resource_version == "0" && !continued;
    let mut items = Vec::new();
    let mut next = None;
    loop {
        let page = match store
            .page(&prefix, &start, revision, limit, serializable)
            .await
        {
            Err(error) if error.code == 410 && continued => {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter, or use \
                     the continue token in this response to retrieve the remainder of the \
                     results. Continuing with the provided token results in an inconsistent \
                     list - objects that were created, modified, or deleted between the time \
                     the first chunk was returned and now may show up in the list.",
                ));
            }
            other => other?,
        };
        revision = page.revision;
        let count = page.kvs.len();
        for (index, kv) in page.kvs.iter().enumerate() {
            let object = decode(call, &kv.value, kv.mod_revision)?;
            if selectors.matches(&object) {
                items.push(object);
            }
            if limit > 0 && items.len() as i64 >= limit {
                let last = String::from_utf8_lossy(&kv.key).into_owned();
                if index + 1 < count || page.more {
                    next = Some(format!("{}\0", &last[prefix.len()..]));
                }
                break;
            }
        }
        if next.is_some() || !page.more || limit == 0 || items.len() as i64 >= limit {
            break;
        }
        let last = page.kvs.last().map(|kv| kv.key.clone()).unwrap_or_default();
        start = format!("{}\0", String::from_utf8_lossy(&last));
    }
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if let Some(next) = next {
        metadata["continue"] = json!(encode_continue(revision, &next));
    }
    Ok((items, metadata))
}

async fn list(store: &Store, call: &Call<'_>) -> Result<Answer, ApiError> {
    let resource = call.target.resource;
    let selectors = call.selectors()?;
    let (items, metadata) = read_collection(store, call, &selectors).await?;
    if let Some(include) = call.table() {
        let table = table::table(
            resource,
            &items,
            metadata,
            include,
            OffsetDateTime::now_utc(),
        );
        return Ok(Answer::Json(200, table));
    }
    Ok(Answer::Json(
        200,
        json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    ))
}

async fn watch(store: &Store, call: &Call<'_>) -> Result<Answer, ApiError> {
    let selectors = call.selectors()?;
    let start = match call.param("resourceVersion").unwrap_or("") {
        "" | "0" => Start::InitialState,
        text => Start::After(
            text.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {text:?}")))?,
        ),
    };
    let timeout = call
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(watch::MAX_WATCH, std::time::Duration::from_secs);
    Ok(Answer::Watch(watch::start(
        store.clone(),
        WatchSpec {
            resource: call.target.resource,
            namespace: call.target.namespace.clone(),
            selectors,
            start,
            bookmarks: call.flag("allowWatchBookmarks"),
            timeout,
            table: call.table(),
        },
    )))
}

/// Refuses a namespaced write into a namespace that does not exist.
async fn check_namespace(store: &Store, call: &Call<'_>) -> Result<(), ApiError> {
    let Some(namespace) = call.namespace().filter(|_| call.target.resource.namespaced) else {
        return Ok(());
    };
    let namespaces = resources::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
    match store.get(&namespaces.key(None, namespace), false).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(namespaces, namespace)),
    }
}

async fn create(store: &Store, call: &Call<'_>) -> Result<Answer, ApiError> {
    let resource = call.target.resource;
    let body = parse_body(call.content_type, call.body)?;
    if resource.namespaced && call.namespace().is_none() {
        return Err(ApiError::method_not_allowed());
    }
    check_namespace(store, call).await?;
    let object =
        object::prepare_create(resource, call.namespace(), body, OffsetDateTime::now_utc())?;
    insert(store, call, finish(call, object, None)?).await
}

/// Stores a prepared new object: `201` with it, or `409 AlreadyExists`.
async fn insert(store: &Store, call: &Call<'_>, mut object: Value) -> Result<Answer, ApiError> {
    let name = object::name(&object).to_string();
    if call.dry_run() {
        return Ok(Answer::Json(201, object));
    }
    let value = object::encode_for_storage(&object)?;
    match store.put_if(&key(call, &name), value, 0).await? {
        Written::At(revision) => {
            object::set_resource_version(&mut object, revision);
            Ok(Answer::Json(201, object))
        }
        Written::Refused(_) => Err(ApiError::already_exists(call.target.resource, &name)),
    }
}

/// Writes `new` over `current` (read at `mod_revision`) unless nothing changed. `None` when
/// another writer got there first.
async fn replace(
    store: &Store,
    call: &Call<'_>,
    name: &str,
    current: &Value,
    mod_revision: i64,
    mut new: Value,
) -> Result<Option<Value>, ApiError> {
    object::set_resource_version(&mut new, mod_revision);
    if &new == current || call.dry_run() {
        return Ok(Some(new));
    }
    let value = object::encode_for_storage(&new)?;
    match store.put_if(&key(call, name), value, mod_revision).await? {
        Written::At(revision) => {
            object::set_resource_version(&mut new, revision);
            Ok(Some(new))
        }
        Written::Refused(None) => Err(ApiError::not_found(call.target.resource, name)),
        Written::Refused(Some(_)) => Ok(None),
    }
}

/// The new object of an update: the whole object, or only its status for `/status`.
fn updated(call: &Call<'_>, name: &str, current: &Value, given: Value) -> Result<Value, ApiError> {
    let resource = call.target.resource;
    if call.target.subresource.is_some() {
        let mut new = current.clone();
        new["status"] = given.get("status").cloned().unwrap_or(Value::Null);
        let new = object::prepare_update(resource, call.namespace(), name, current, new)?;
        return finish(call, new, Some(current));
    }
    let new = object::prepare_update(resource, call.namespace(), name, current, given)?;
    finish(call, new, Some(current))
}

/// What CRDs and custom resources add to a prepared object: a CRD checked and given its
/// status; a custom resource's status left to its `status` subresource when it has one.
fn finish(call: &Call<'_>, mut object: Value, current: Option<&Value>) -> Result<Value, ApiError> {
    let resource = call.target.resource;
    if crd::is_definitions(resource) {
        let builtin: Vec<&str> = resources::groups().iter().map(|(g, _)| *g).collect();
        crd::prepare_definition(&mut object, current, &builtin, OffsetDateTime::now_utc())?;
    } else if let Some(custom) = crd::custom(resource) {
        let to_status = call.target.subresource.is_some();
        let strict = call.param("fieldValidation") == Some("Strict");
        crd::prepare_custom(custom, &mut object, current, to_status, strict)?;
    }
    Ok(object)
}

async fn update(store: &Store, call: &Call<'_>, name: &str) -> Result<Answer, ApiError> {
    let resource = call.target.resource;
    let given = parse_body(call.content_type, call.body)?;
    let precondition = object::resource_version(&given)?;
    for _ in 0..RETRIES {
        let (revision, current) = read_current(store, call, name, precondition).await?;
        let new = updated(call, name, &current, given.clone())?;
        match replace(store, call, name, &current, revision, new).await? {
            Some(object) => return Ok(Answer::Json(200, object)),
            None if precondition.is_some() => return Err(ApiError::conflict(resource, name)),
            None => continue,
        }
    }
    Err(ApiError::conflict(resource, name))
}

/// The patch formats, by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

fn patch_kind(content_type: &str) -> Result<PatchKind, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

async fn patch(store: &Store, call: &Call<'_>, name: &str) -> Result<Answer, ApiError> {
    let resource = call.target.resource;
    let kind = patch_kind(call.content_type)?;
    let body = parse_body(
        if kind == PatchKind::Apply {
            "yaml"
        } else {
            "json"
        },
        call.body,
    )?;
    for _ in 0..RETRIES {
        let Some(kv) = store.get(&key(call, name), false).await? else {
            if kind != PatchKind::Apply {
                return Err(ApiError::not_found(resource, name));
            }
            check_namespace(store, call).await?;
            let mut object = body.clone();
            match object::name(&object) {
                "" => {
                    if let Some(metadata) =
                        object.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        metadata.insert("name".into(), json!(name));
                    }
                }
                given if given != name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({given}) does not match the name on the URL ({name})"
                    )));
                }
                _ => {}
            }
            let object = object::prepare_create(
                resource,
                call.namespace(),
                object,
                OffsetDateTime::now_utc(),
            )?;
            match insert(store, call, finish(call, object, None)?).await {
                Err(error) if error.reason == "AlreadyExists" => continue,
                other => return other,
            }
        };
        let current = decode(call, &kv.value, kv.mod_revision)?;
        let mut document = current.clone();
        match kind {
            PatchKind::Json => patch::json_patch(&mut document, &body)
                .map_err(|message| ApiError::new(422, "Invalid", message))?,
            PatchKind::Merge | PatchKind::Apply => patch::merge(&mut document, &body),
            PatchKind::Strategic => patch::strategic(&mut document, &body),
        }
        if !document.is_object() {
            return Err(ApiError::bad_request("the patch leaves no object"));
        }
        let precondition = object::resource_version(&document)?;
        if precondition.is_some_and(|rv| rv != kv.mod_revision) {
            return Err(ApiError::conflict(resource, name));
        }
        let new = updated(call, name, &current, document)?;
        match replace(store, call, name, &current, kv.mod_revision, new).await? {
            Some(object) => return Ok(Answer::Json(200, object)),
            None => continue,
        }
    }
    Err(ApiError::conflict(resource, name))
}

async fn delete(store: &Store, call: &Call<'_>, name: &str) -> Result<Answer, ApiError> {
    let resource = call.target.resource;
    if resource.group.is_empty()
        && resource.kind == "Namespace"
        && UNDELETABLE_NAMESPACES.contains(&name)
    {
        let mut error = ApiError::new(
            403,
            "Forbidden",
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
        );
        error.details = Some(json!({ "name": name, "kind": "namespaces" }));
        return Err(error);
    }
    let options = if call.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        parse_body(call.content_type, call.body)?
    };
    let precondition = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(|rv| {
            rv.parse::<i64>()
                .map_err(|_| ApiError::bad_request("invalid precondition"))
        })
        .transpose()?;
    for _ in 0..RETRIES {
        let (revision, object) = read_current(store, call, name, precondition).await?;
        if call.dry_run() {
            return Ok(Answer::Json(200, object));
        }
        if resource.group.is_empty() && resource.kind == "Node" {
            super::node::remove_member(store, name).await?;
        }
        match store.delete_if(&key(call, name), revision).await? {
            Written::At(_) => {
                if resource.group.is_empty() && resource.kind == "Namespace" {
                    delete_namespace_contents(store, name).await?;
                }
                if crd::is_definitions(resource) {
                    crd::delete_objects(store, &object).await?;
                }
                return Ok(Answer::Json(200, object));
            }
            Written::Refused(None) => return Err(ApiError::not_found(resource, name)),
            Written::Refused(Some(_)) => continue,
        }
    }
    Err(ApiError::conflict(resource, name))
}

/// Deletes every namespaced object of `namespace`.
async fn delete_namespace_contents(store: &Store, namespace: &str) -> Result<(), ApiError> {
    for resource in RESOURCES.iter().filter(|r| r.namespaced) {
        let prefix = resource.collection_prefix(Some(namespace));
        store.delete_prefix(&prefix).await?;
    }
    crd::delete_namespace_objects(store, namespace).await
}

async fn delete_collection(store: &Store, call: &Call<'_>) -> Result<Answer, ApiError> {
    let resource: &Resource = call.target.resource;
    if resource.group.is_empty() && resource.kind == "Namespace" {
        return Err(ApiError::method_not_allowed());
    }
    let selectors = call.selectors()?;
    let (items, metadata) = read_collection(store, call, &selectors).await?;
    let mut deleted = Vec::new();
    for item in items {
        let name = object::name(&item).to_string();
        let namespace = object::namespace(&item).map(str::to_string);
        let revision = object::resource_version(&item)?.unwrap_or(0);
        if call.dry_run() {
            deleted.push(item);
            continue;
        }
        let key = resource.key(namespace.as_deref(), &name);
        if let Written::At(_) = store.delete_if(&key, revision).await? {
            if crd::is_definitions(resource) {
                crd::delete_objects(store, &item).await?;
            }
            deleted.push(item);
        }
    }
    Ok(Answer::Json(
        200,
        json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
            "items": deleted,
        }),
    ))
}

/// Creates the namespaces every cluster has, leaving existing ones alone.
pub async fn create_default_namespaces(store: &Store) -> Result<(), ApiError> {
    let namespaces = resources::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
    for name in DEFAULT_NAMESPACES {
        let object = object::prepare_create(
            namespaces,
            None,
            json!({ "metadata": { "name": name } }),
            OffsetDateTime::now_utc(),
        )?;
        let value = object::encode_for_storage(&object)?;
        if let Written::At(_) = store.put_if(&namespaces.key(None, name), value, 0).await? {
            tracing::info!(namespace = name, "created a default namespace");
        }
    }
    Ok(())
}
