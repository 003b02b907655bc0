//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`) and the custom resources they define.
//!
//! Guarantees:
//! - a CRD is checked and given its status before it is stored ([`prepare_definition`], in
//!   `crd_definition`);
//! - a custom resource is written and read through its version's schema
//!   ([`prepare_custom`], [`serve_as`], with `crd_schema`);
//! - what is served comes from the store only: [`Registry::load`] reads the CRD prefix
//!   linearizably (keys only; values of changed CRDs only) whenever a request names something
//!   the built-in table does not serve, so every server of a cluster serves a custom resource
//!   as soon as the write of its CRD is acknowledged, and none after the CRD's delete (which
//!   deletes its objects);
//! - each served version is one [`Custom`] (a [`Resource`] stored at kube-apiserver's
//!   `/registry/<group>/<plural>/[<ns>/]<name>`, its printer columns, categories and whether
//!   it has a `status` subresource, its schema), built once per distinct definition and kept
//!   for the life of the process, so requests can hold it as `&'static` like the built-ins;
//!   CRDs change rarely, so what is kept stays small.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use raftstore::pb::etcdserverpb::RangeRequest;
use serde_json::{json, Value};

pub use super::crd_definition::{invalid, prepare_definition, Cause};
pub use super::printer_columns::PrinterColumn;

use super::object;
use super::printer_columns::columns_of;
use super::resources::{NameRule, Resource};
use super::status::ApiError;
use super::storage::Store;

/// The group of CRDs.
pub const GROUP: &str = "apiextensions.k8s.io";

/// Where CRDs are stored (kube-apiserver's key), with the trailing `/`.
pub const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// One served version of a CRD as the API serves it.
#[derive(Debug)]
pub struct Custom {
    pub resource: Resource,
    /// The Table columns after NAME (kube's default AGE when the CRD names none).
    pub columns: Vec<PrinterColumn>,
    pub categories: Vec<String>,
    /// Whether `status` is a subresource (then writes of the object leave status alone).
    pub status: bool,
    /// The version's `openAPIV3Schema` (`{}` when absent): what writes are pruned, defaulted
    /// and checked by.
    pub schema: Value,
}

/// A stored CRD, parsed.
#[derive(Debug)]
pub struct Definition {
    pub group: String,
    pub plural: String,
    pub namespaced: bool,
    pub versions: Vec<Version>,
}

/// One version of a [`Definition`].
#[derive(Debug)]
pub struct Version {
    pub served: bool,
    pub custom: &'static Custom,
}

impl Definition {
    /// The key prefix of every object of the CRD, ending in `/`.
    pub fn objects_prefix(&self) -> String {
        format!("/registry/{}/{}/", self.group, self.plural)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every [`Custom`] built so far, by a canonical text of its definition.
static INTERNED: Mutex<Vec<(String, &'static Custom)>> = Mutex::new(Vec::new());

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// The one [`Custom`] of this definition.
fn intern(
    group: &str,
    version: &str,
    names: &Names,
    namespaced: bool,
    columns: Vec<PrinterColumn>,
    status: bool,
    schema: &Value,
) -> &'static Custom {
    let columns_key: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!([
                c.name,
                c.kind,
                c.format,
                c.description,
                c.priority,
                c.json_path
            ])
        })
        .collect();
    let key = json!([
        group,
        version,
        names.plural,
        names.singular,
        names.kind,
        namespaced,
        names.short_names,
        names.categories,
        columns_key,
        status,
        schema
    ])
    .to_string();
    let mut interned = lock(&INTERNED);
    if let Some((_, custom)) = interned.iter().find(|(k, _)| *k == key) {
        return custom;
    }
    let short_names: Vec<&'static str> = names.short_names.iter().map(|s| leak(s)).collect();
    let custom: &'static Custom = Box::leak(Box::new(Custom {
        resource: Resource {
            group: leak(group),
            version: leak(version),
            plural: leak(&names.plural),
            singular: leak(&names.singular),
            kind: leak(&names.kind),
            namespaced,
            short_names: Box::leak(short_names.into_boxed_slice()),
            storage: leak(&format!("/registry/{group}/{}", names.plural)),
            name_rule: NameRule::Subdomain,
            has_spec: true,
            columns: &[],
            fields: &[],
        },
        columns,
        categories: names.categories.clone(),
        status,
        schema: schema.clone(),
    }));
    interned.push((key, custom));
    custom
}

/// The custom resource `resource` is, if it is one.
pub fn custom(resource: &Resource) -> Option<&'static Custom> {
    lock(&INTERNED)
        .iter()
        .find(|(_, custom)| std::ptr::eq(&custom.resource, resource))
        .map(|(_, custom)| *custom)
}

/// The key of the CRD serving `resource`, if it is a custom resource.
pub fn definition_key(resource: &Resource) -> Option<String> {
    custom(resource).map(|c| format!("{PREFIX}{}.{}", c.resource.plural, c.resource.group))
}

/// Whether `resource` is the CRD resource itself.
pub fn is_definitions(resource: &Resource) -> bool {
    resource.group == GROUP && resource.plural == "customresourcedefinitions"
}

/// A CRD's `spec.names`, defaulted as kube defaults them.
#[derive(Debug, Default)]
pub(super) struct Names {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

/// The string at `pointer`, or "".
pub(super) fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The strings of a JSON array (others skipped).
pub(super) fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The names of `crd`.
pub(super) fn names_of(crd: &Value) -> Names {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let kind = text(&names, "/kind").to_string();
    let singular = match text(&names, "/singular") {
        "" => kind.to_lowercase(),
        given => given.to_string(),
    };
    let list_kind = match text(&names, "/listKind") {
        "" if !kind.is_empty() => format!("{kind}List"),
        given => given.to_string(),
    };
    Names {
        plural: text(&names, "/plural").to_string(),
        singular,
        kind,
        list_kind,
        short_names: strings(names.get("shortNames")),
        categories: strings(names.get("categories")),
    }
}

impl Definition {
    /// A stored (hence checked) CRD.
    pub fn parse(crd: &Value) -> Result<Self, String> {
        let group = text(crd, "/spec/group").to_string();
        let names = names_of(crd);
        if group.is_empty() || names.plural.is_empty() || names.kind.is_empty() {
            return Err("the CRD has no group, plural or kind".into());
        }
        let namespaced = text(crd, "/spec/scope") == "Namespaced";
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|version| {
                let name = text(version, "/name").to_string();
                let status = version.pointer("/subresources/status").is_some();
                let schema = version
                    .pointer("/schema/openAPIV3Schema")
                    .cloned()
                    .unwrap_or(json!({}));
                Version {
                    served: version.get("served") == Some(&json!(true)),
                    custom: intern(
                        &group,
                        &name,
                        &names,
                        namespaced,
                        columns_of(version),
                        status,
                        &schema,
                    ),
                }
            })
            .collect();
        Ok(Self {
            group,
            plural: names.plural,
            namespaced,
            versions,
        })
    }
}

/// The CRDs of the store, parsed once per stored version.
#[derive(Default)]
pub struct Registry {
    cache: Mutex<BTreeMap<String, (i64, Arc<Definition>)>>,
}

impl Registry {
    /// Every CRD now in the store, read linearizably: the keys and their revisions first
    /// (no values), then only the CRDs changed since the last read (at the listing's
    /// revision); one that does not parse is skipped with a warning.
    pub async fn load(&self, store: &Store) -> Result<Vec<Arc<Definition>>, ApiError> {
        let listing = store
            .data
            .range(RangeRequest {
                key: PREFIX.as_bytes().to_vec(),
                range_end: raftstore::mvcc::tree_index::prefix_end(PREFIX.as_bytes()),
                keys_only: true,
                ..Default::default()
            })
            .await?;
        let revision = listing.header.as_ref().map_or(0, |header| header.revision);
        let mut known: BTreeMap<String, (i64, Arc<Definition>)> = lock(&self.cache).clone();
        let mut fresh = BTreeMap::new();
        for kv in listing.kvs {
            let name =
                String::from_utf8_lossy(&kv.key[PREFIX.len().min(kv.key.len())..]).into_owned();
            let cached = known
                .remove(&name)
                .filter(|(cached, _)| *cached == kv.mod_revision);
            let definition = match cached {
                Some((_, definition)) => definition,
                None => match Self::read(store, &kv.key, revision).await? {
                    Some(definition) => definition,
                    None => continue,
                },
            };
            fresh.insert(name, (kv.mod_revision, definition));
        }
        let definitions = fresh.values().map(|(_, d)| d.clone()).collect();
        *lock(&self.cache) = fresh;
        Ok(definitions)
    }

    /// The CRD at `key` as of `revision`, parsed (`None`: gone, or it does not parse).
    async fn read(
        store: &Store,
        key: &[u8],
        revision: i64,
    ) -> Result<Option<Arc<Definition>>, ApiError> {
        let response = store
            .data
            .range(RangeRequest {
                key: key.to_vec(),
                revision,
                ..Default::default()
            })
            .await?;
        let Some(kv) = response.kvs.into_iter().next() else {
            return Ok(None);
        };
        let parsed = object::decode_stored(&kv.value, kv.mod_revision)
            .map_err(|error| error.message)
            .and_then(|crd| Definition::parse(&crd));
        match parsed {
            Ok(definition) => Ok(Some(Arc::new(definition))),
            Err(error) => {
                let name = String::from_utf8_lossy(&kv.key).into_owned();
                tracing::warn!(crd = %name, %error, "skipping a CRD that does not parse");
                Ok(None)
            }
        }
    }
}

/// What the CRDs of one read serve.
#[derive(Default, Clone)]
pub struct Served {
    pub definitions: Vec<Arc<Definition>>,
}

impl Served {
    /// Every served version's resource.
    pub fn resources(&self) -> Vec<&'static Resource> {
        self.definitions
            .iter()
            .flat_map(|d| d.versions.iter())
            .filter(|v| v.served)
            .map(|v| &v.custom.resource)
            .collect()
    }

    /// The definition and version serving `resource`.
    pub fn version_of(&self, resource: &Resource) -> Option<(&Definition, &Version)> {
        self.definitions.iter().find_map(|definition| {
            definition
                .versions
                .iter()
                .find(|v| v.served && std::ptr::eq(&v.custom.resource, resource))
                .map(|version| (definition.as_ref(), version))
        })
    }
}

/// A stored custom resource as `resource` serves it, as kube-apiserver reads one: its
/// `apiVersion` that version's (the CRDs' `None` conversion: versions differ in name only),
/// pruned and defaulted by that version's schema; other objects are left alone.
pub fn serve_as(resource: &Resource, object: &mut Value) {
    let Some(custom) = custom(resource) else {
        return;
    };
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(resource.api_version()));
    }
    let _ = super::crd_schema::apply(&custom.schema, object);
}

/// Deletes every object of the CRD `crd` (a deleted CRD's objects go with it).
pub async fn delete_objects(store: &Store, crd: &Value) -> Result<(), ApiError> {
    match Definition::parse(crd) {
        Ok(definition) => store.delete_prefix(&definition.objects_prefix()).await,
        Err(_) => Ok(()),
    }
}

/// Deletes the objects of every namespaced CRD in `namespace`.
pub async fn delete_namespace_objects(store: &Store, namespace: &str) -> Result<(), ApiError> {
    for definition in Registry::default().load(store).await? {
        if definition.namespaced {
            let prefix = format!("{}{namespace}/", definition.objects_prefix());
            store.delete_prefix(&prefix).await?;
        }
    }
    Ok(())
}

/// What a write of a custom resource stores: with a `status` subresource, status is not
/// written through the object itself (dropped at create, kept from `current` at update); then
/// pruned, defaulted and checked by the version's schema (`422 Invalid` with every cause).
/// With `strict` (`fieldValidation=Strict`, kubectl's default) a pruned field is `400
/// BadRequest` instead, as kube-apiserver's strict decoding error.
pub fn prepare_custom(
    custom: &Custom,
    object: &mut Value,
    current: Option<&Value>,
    to_status: bool,
    strict: bool,
) -> Result<(), ApiError> {
    if custom.status && !to_status {
        if let Some(map) = object.as_object_mut() {
            match current.and_then(|current| current.get("status")) {
                Some(status) => map.insert("status".into(), status.clone()),
                None => map.remove("status"),
            };
        }
    }
    let outcome = super::crd_schema::apply(&custom.schema, object);
    let resource = &custom.resource;
    // Fields the stored object already had (a schema that changed since) are pruned quietly:
    // only what this request brings is refused.
    let stored_unknown = current
        .map(|current| super::crd_schema::apply(&custom.schema, &mut current.clone()).pruned)
        .unwrap_or_default();
    let fields: Vec<String> = outcome
        .pruned
        .iter()
        .filter(|path| !stored_unknown.contains(path))
        .map(|path| format!("unknown field {path:?}"))
        .collect();
    if strict && !fields.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding \
             error: {}",
            fields.join(", "),
            kind = resource.kind,
            version = resource.version,
        )));
    }
    if outcome.causes.is_empty() {
        return Ok(());
    }
    Err(invalid(
        resource.kind,
        resource.group,
        object::name(object),
        &outcome.causes,
    ))
}

#[cfg(test)]
mod tests;
