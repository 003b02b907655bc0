//! A CRD's own checks, defaults and status, as kube-apiserver and its naming and establishing
//! controllers give them.
//!
//! Guarantees: a bad CRD is refused before anything is written, with every cause at once in
//! kube's wording (`422 Invalid`, `CustomResourceDefinition.apiextensions.k8s.io "x" is
//! invalid: [...]`); a good one is stored with `spec.names.singular`/`listKind` and
//! `spec.conversion` defaulted and the status kube's controllers would give it
//! (`acceptedNames`, `NamesAccepted` and `Established` True with their transition times kept
//! across updates, `storedVersions` never shrinking). Names are not checked against other
//! CRDs' (no `NamesAccepted` False).

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::crd::{names_of, strings, text, GROUP};
use super::object;
use super::status::ApiError;

/// kube's annotation that lets a CRD use a `*.k8s.io` or `*.kubernetes.io` group.
const APPROVAL: &str = "api-approved.kubernetes.io";

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
