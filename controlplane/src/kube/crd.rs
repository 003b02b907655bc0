//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`) and the custom resources they define.
//!
//! Guarantees:
//! - a CRD is checked as kube-apiserver checks one (name `<plural>.<group>`, a group with a
//!   dot that no built-in resource uses, approval for `*.k8s.io` groups, DNS-1035 names, a
//!   scope, exactly one storage version, a structural schema per version, printer columns of
//!   known types): a bad one is `422 Invalid` naming every cause, in kube's wording;
//! - a stored CRD carries the status kube-apiserver's controllers give it: `acceptedNames`,
//!   `NamesAccepted` and `Established` True (transition times kept across updates),
//!   `storedVersions` (never shrinking);
//! - what is served comes from the store only: [`Registry::load`] reads the CRD prefix
//!   linearizably whenever a request names something the built-in table does not serve, so
//!   every server of a cluster serves a custom resource as soon as the write of its CRD is
//!   acknowledged, and none after the CRD's delete (which deletes its objects);
//! - each served version is one [`Custom`] (a [`Resource`] stored at kube-apiserver's
//!   `/registry/<group>/<plural>/[<ns>/]<name>`, its printer columns, categories and whether
//!   it has a `status` subresource, its schema), built once per distinct definition and kept
//!   for the life of the process, so requests can hold it as `&'static` like the built-ins;
//!   CRDs change rarely, so what is kept stays small.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::object;
use super::resources::{NameRule, Resource};
use super::status::ApiError;
use super::storage::Store;

/// The group of CRDs.
pub const GROUP: &str = "apiextensions.k8s.io";

/// Where CRDs are stored (kube-apiserver's key), with the trailing `/`.
pub const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// kube's annotation that lets a CRD use a `*.k8s.io` or `*.kubernetes.io` group.
const APPROVAL: &str = "api-approved.kubernetes.io";

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

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

/// Whether `resource` is the CRD resource itself.
pub fn is_definitions(resource: &Resource) -> bool {
    resource.group == GROUP && resource.plural == "customresourcedefinitions"
}

#[derive(Debug, Default)]
struct Names {
    plural: String,
    singular: String,
    kind: String,
    list_kind: String,
    short_names: Vec<String>,
    categories: Vec<String>,
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn strings(value: Option<&Value>) -> Vec<String> {
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

fn names_of(crd: &Value) -> Names {
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

fn columns_of(version: &Value) -> Vec<PrinterColumn> {
    let given: Vec<PrinterColumn> = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|columns| {
            columns
                .iter()
                .map(|column| PrinterColumn {
                    name: text(column, "/name").to_string(),
                    kind: text(column, "/type").to_string(),
                    format: text(column, "/format").to_string(),
                    description: text(column, "/description").to_string(),
                    priority: column.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    json_path: text(column, "/jsonPath").to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if !given.is_empty() {
        return given;
    }
    vec![PrinterColumn {
        name: "Age".into(),
        kind: "date".into(),
        format: String::new(),
        description: "CreationTimestamp is a timestamp representing the server time when this \
                      object was created."
            .into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }]
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
    /// Every CRD now in the store (a linearizable read); one that does not parse is skipped
    /// with a warning.
    pub async fn load(&self, store: &Store) -> Result<Vec<Arc<Definition>>, ApiError> {
        let page = store.page(PREFIX, PREFIX, 0, 0, false).await?;
        let mut cache = lock(&self.cache);
        let mut fresh = BTreeMap::new();
        for kv in page.kvs {
            let name =
                String::from_utf8_lossy(&kv.key[PREFIX.len().min(kv.key.len())..]).into_owned();
            let cached = cache
                .remove(&name)
                .filter(|(revision, _)| *revision == kv.mod_revision);
            let definition = match cached {
                Some((_, definition)) => definition,
                None => {
                    let parsed = object::decode_stored(&kv.value, kv.mod_revision)
                        .map_err(|error| error.message)
                        .and_then(|crd| Definition::parse(&crd));
                    match parsed {
                        Ok(definition) => Arc::new(definition),
                        Err(error) => {
                            tracing::warn!(crd = %name, %error, "skipping a CRD that does not parse");
                            continue;
                        }
                    }
                }
            };
            fresh.insert(name, (kv.mod_revision, definition));
        }
        let definitions = fresh.values().map(|(_, d)| d.clone()).collect();
        *cache = fresh;
        Ok(definitions)
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

/// Sets a custom resource's `apiVersion` to the version `resource` serves (the CRDs' `None`
/// conversion: versions differ in name only); other objects are left alone.
pub fn serve_as(resource: &Resource, object: &mut Value) {
    if custom(resource).is_some() {
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), json!(resource.api_version()));
        }
    }
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
    if strict && !outcome.pruned.is_empty() {
        let fields: Vec<String> = outcome
            .pruned
            .iter()
            .map(|path| format!("unknown field {path:?}"))
            .collect();
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

/// One refusal cause of a `422 Invalid`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Self {
            field: field.into(),
            reason: "FieldValueRequired",
            message,
        }
    }

    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value:?}: {detail}"),
        }
    }

    fn unsupported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            field: field.into(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {value:?}: supported values: {}",
                supported.join(", ")
            ),
        }
    }

    fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {value:?}"),
        }
    }
}

/// `422 Invalid` for the object `name` of `kind` (qualified: `Kind.group`), as kube words it:
/// one cause inline, several in brackets.
pub fn invalid(kind: &str, group: &str, name: &str, causes: &[Cause]) -> ApiError {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let texts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let listed = match texts.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let mut error = ApiError::new(
        422,
        "Invalid",
        format!("{qualified} {name:?} is invalid: {listed}"),
    );
    let causes: Vec<Value> = causes
        .iter()
        .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
        .collect();
    let mut details = json!({ "name": name, "kind": kind, "causes": causes });
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    error.details = Some(details);
    error
}

const DNS1035_RULE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters \
or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. \
'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_dns1035(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bytes
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn check_name(causes: &mut Vec<Cause>, field: &str, value: &str, required: bool) {
    if value.is_empty() {
        if required {
            causes.push(Cause::required(field, ""));
        }
    } else if !is_dns1035(value) {
        causes.push(Cause::invalid(field, value, DNS1035_RULE));
    }
}

const COLUMN_TYPES: [&str; 5] = ["integer", "number", "string", "boolean", "date"];

/// The causes that make `schema` (at `field`) not structural: every specified field has a
/// type, unless it preserves unknown fields or is int-or-string.
fn check_schema(causes: &mut Vec<Cause>, field: &str, schema: &Value) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        if let Some(items) = schema.get("items") {
            check_typed(causes, &format!("{field}.items"), items);
        }
        return;
    };
    for (name, property) in properties {
        check_typed(causes, &format!("{field}.properties[{name}]"), property);
    }
}

fn check_typed(causes: &mut Vec<Cause>, field: &str, schema: &Value) {
    let exempt = schema.get("x-kubernetes-int-or-string") == Some(&json!(true))
        || schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if text(schema, "/type").is_empty() && !exempt {
        causes.push(Cause::required(
            format!("{field}.type"),
            "must not be empty for specified object fields",
        ));
    }
    check_schema(causes, field, schema);
}

/// The causes that make `crd` invalid; `current` is the stored CRD of an update.
fn validate(crd: &Value, current: Option<&Value>, builtin_groups: &[&str]) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = object::name(crd);
    let group = text(crd, "/spec/group");
    let names = names_of(crd);
    if !names.plural.is_empty() && !group.is_empty() && name != format!("{}.{group}", names.plural)
    {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        causes.push(Cause::required("spec.group", ""));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    } else if builtin_groups.contains(&group) {
        causes.push(Cause::invalid(
            "spec.group",
            group,
            "is served by the server itself",
        ));
    } else if (group == "k8s.io"
        || group.ends_with(".k8s.io")
        || group == "kubernetes.io"
        || group.ends_with(".kubernetes.io"))
        && crd
            .pointer(&format!("/metadata/annotations/{APPROVAL}"))
            .is_none()
    {
        causes.push(Cause::required(
            format!("metadata.annotations[{APPROVAL}]"),
            &format!(
                "protected groups must have approval annotation {APPROVAL:?}, see \
                 https://github.com/kubernetes/enhancements/pull/1111"
            ),
        ));
    }
    check_name(&mut causes, "spec.names.plural", &names.plural, true);
    check_name(&mut causes, "spec.names.singular", &names.singular, true);
    if names.kind.is_empty() {
        causes.push(Cause::required("spec.names.kind", ""));
    } else if !is_dns1035(&names.kind.to_lowercase()) {
        causes.push(Cause::invalid(
            "spec.names.kind",
            &names.kind,
            "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
        ));
    }
    for (index, short) in names.short_names.iter().enumerate() {
        check_name(
            &mut causes,
            &format!("spec.names.shortNames[{index}]"),
            short,
            true,
        );
    }
    match text(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => causes.push(Cause::required("spec.scope", "")),
        other => causes.push(Cause::unsupported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    if let Some(current) = current {
        let (was, is) = (text(current, "/spec/scope"), text(crd, "/spec/scope"));
        if was != is {
            causes.push(Cause::invalid("spec.scope", is, "field is immutable"));
        }
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage") == Some(&json!(true)))
            .count();
        if storage != 1 {
            let listed: Vec<&str> = versions.iter().map(|v| text(v, "/name")).collect();
            causes.push(Cause::invalid(
                "spec.versions",
                &listed.join(","),
                "must have exactly one version marked as storage version",
            ));
        }
    }
    let mut seen = Vec::new();
    for (index, version) in versions.iter().enumerate() {
        let field = format!("spec.versions[{index}]");
        let name = text(version, "/name");
        check_name(&mut causes, &format!("{field}.name"), name, true);
        if !name.is_empty() {
            if seen.contains(&name) {
                causes.push(Cause::duplicate(format!("{field}.name"), name));
            }
            seen.push(name);
        }
        let schema_field = format!("{field}.schema.openAPIV3Schema");
        match version.pointer("/schema/openAPIV3Schema") {
            None => causes.push(Cause::required(&schema_field, "schemas are required")),
            Some(schema) => {
                let kind = text(schema, "/type");
                if kind != "object" {
                    causes.push(Cause::invalid(
                        format!("{schema_field}.type"),
                        kind,
                        "must be object at the root",
                    ));
                }
                check_schema(&mut causes, &schema_field, schema);
            }
        }
        let columns = version
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (column_index, column) in columns.iter().enumerate() {
            let column_field = format!("{field}.additionalPrinterColumns[{column_index}]");
            if text(column, "/name").is_empty() {
                causes.push(Cause::required(format!("{column_field}.name"), ""));
            }
            let kind = text(column, "/type");
            if kind.is_empty() {
                causes.push(Cause::required(format!("{column_field}.type"), ""));
            } else if !COLUMN_TYPES.contains(&kind) {
                causes.push(Cause::unsupported(
                    format!("{column_field}.type"),
                    kind,
                    &COLUMN_TYPES,
                ));
            }
            if text(column, "/jsonPath").is_empty() {
                causes.push(Cause::required(format!("{column_field}.jsonPath"), ""));
            }
        }
    }
    causes
}

/// A condition, keeping `current`'s transition time when its status is the same.
fn condition(current: Option<&Value>, kind: &str, reason: &str, message: &str, now: &str) -> Value {
    let since = current
        .and_then(|c| c.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|c| c["type"] == kind && c["status"] == "True")
        })
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or(json!(now));
    json!({
        "type": kind,
        "status": "True",
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    })
}

/// Checks, defaults and gives a status to a CRD being created (`current` None) or updated,
/// as kube-apiserver and its naming and establishing controllers do.
pub fn prepare_definition(
    crd: &mut Value,
    current: Option<&Value>,
    builtin_groups: &[&str],
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let names = names_of(crd);
    if let Some(spec_names) = crd
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
    {
        if !names.singular.is_empty() {
            spec_names.insert("singular".into(), json!(names.singular));
        }
        if !names.list_kind.is_empty() {
            spec_names.insert("listKind".into(), json!(names.list_kind));
        }
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("conversion")
            .or_insert_with(|| json!({ "strategy": "None" }));
    }
    let causes = validate(crd, current, builtin_groups);
    if !causes.is_empty() {
        return Err(invalid(
            "CustomResourceDefinition",
            GROUP,
            object::name(crd),
            &causes,
        ));
    }
    let stamp = object::timestamp(now);
    let mut accepted = json!({
        "plural": names.plural,
        "singular": names.singular,
        "kind": names.kind,
        "listKind": names.list_kind,
    });
    if !names.short_names.is_empty() {
        accepted["shortNames"] = json!(names.short_names);
    }
    if !names.categories.is_empty() {
        accepted["categories"] = json!(names.categories);
    }
    let mut stored = current
        .map(|c| strings(c.pointer("/status/storedVersions")))
        .unwrap_or_default();
    let storage_version = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|versions| versions.iter().find(|v| v["storage"] == json!(true)))
        .map(|v| text(v, "/name").to_string())
        .unwrap_or_default();
    if !stored.contains(&storage_version) {
        stored.push(storage_version);
    }
    let status = json!({
        "acceptedNames": accepted,
        "conditions": [
            condition(current, "NamesAccepted", "NoConflicts", "no conflicts found", &stamp),
            condition(current, "Established", "InitialNamesAccepted", "the initial names have been accepted", &stamp),
        ],
        "storedVersions": stored,
    });
    if let Some(map) = crd.as_object_mut() {
        map.insert("status".into(), status);
    }
    Ok(())
}

/// The value at a printer column's simple JSONPath (`.a.b`, `.a[0].b`, `.a['x.y']`).
pub fn at_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current = object;
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            current = match inner.parse::<usize>() {
                Ok(index) => current.get(index)?,
                Err(_) => current.get(inner.trim_matches(|c| c == '\'' || c == '"'))?,
            };
            rest = after[end + 1..].trim_start_matches('.');
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            current = current.get(&rest[..end])?;
            rest = rest[end..].trim_start_matches('.');
        }
    }
    Some(current)
}

/// One Table cell of `column` for `object`, as kube's CRD table convertor makes it.
pub fn cell(column: &PrinterColumn, object: &Value, now: OffsetDateTime) -> Value {
    let Some(value) = at_path(object, &column.json_path).filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match column.kind.as_str() {
        "string" => match value {
            Value::String(text) => json!(text),
            other => json!(other.to_string()),
        },
        "integer" => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |n| json!(n)),
        "number" => value.as_f64().map_or(Value::Null, |n| json!(n)),
        "boolean" => value.as_bool().map_or(Value::Null, |b| json!(b)),
        "date" => match value.as_str() {
            Some(text) => match super::table::parse_rfc3339(text) {
                Some(time) => json!(super::table::human_duration((now - time).whole_seconds())),
                None => json!("<invalid>"),
            },
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

/// The Table column definitions of `custom`.
pub fn column_definitions(custom: &Custom) -> Vec<Value> {
    custom
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "type": c.kind, "format": c.format,
                "description": c.description, "priority": c.priority,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
