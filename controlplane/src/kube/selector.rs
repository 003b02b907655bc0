//! Label and field selectors of list and watch requests, parsed as kube-apiserver parses them.
//!
//! Label selectors: comma-separated requirements `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
//! `k notin (a,b)`, `k` (exists) and `!k` (does not exist); all must hold. Field selectors:
//! `metadata.name`, `metadata.namespace` and the resource's own fields, with `=`, `==`, `!=`.
//!
//! Guarantees: a selector that does not parse, or names a field the resource does not
//! support, is refused with `400 BadRequest` before anything is read; `!=` and `notin` match
//! objects without the label, as in Kubernetes.

use serde_json::Value;

use super::object;
use super::resources::Resource;
use super::status::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector (empty: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits at commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn check_key(key: &str, selector: &str) -> Result<String, ApiError> {
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "unable to parse requirement: invalid label key {key:?} in selector {selector:?}"
        )))
    }
}

fn parse_set(text: &str, selector: &str) -> Result<Vec<String>, ApiError> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: expected a set of values in parentheses in \
                 selector {selector:?}"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|value| value.trim().to_string())
        .collect())
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let requirement = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(check_key(key.trim(), text)?)
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(check_key(key.trim(), text)?, value.trim().to_string())
            } else if let Some((key, value)) = part.split_once("==") {
                Requirement::Equals(check_key(key.trim(), text)?, value.trim().to_string())
            } else if let Some((key, value)) = part.split_once('=') {
                Requirement::Equals(check_key(key.trim(), text)?, value.trim().to_string())
            } else if let Some((key, set)) = part.split_once(" notin ") {
                Requirement::NotIn(check_key(key.trim(), text)?, parse_set(set, text)?)
            } else if let Some((key, set)) = part.split_once(" in ") {
                Requirement::In(check_key(key.trim(), text)?, parse_set(set, text)?)
            } else {
                Requirement::Exists(check_key(part, text)?)
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object::labels(object);
        let get = |key: &str| labels.get(key).and_then(Value::as_str);
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::Equals(key, value) => get(key) == Some(value.as_str()),
                Requirement::NotEquals(key, value) => get(key) != Some(value.as_str()),
                Requirement::In(key, set) => get(key).is_some_and(|v| set.iter().any(|s| s == v)),
                Requirement::NotIn(key, set) => {
                    !get(key).is_some_and(|v| set.iter().any(|s| s == v))
                }
                Requirement::Exists(key) => labels.contains_key(key),
                Requirement::DoesNotExist(key) => !labels.contains_key(key),
            })
    }
}

/// A parsed field selector (empty: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (JSON pointer, value, equal?)
    terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    pub fn parse(text: &str, resource: &Resource) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let known = field == "metadata.name"
                || field == "metadata.namespace"
                || resource.fields.contains(&field);
            if !known {
                return Err(ApiError::bad_request(format!(
                    "\"{field}\" is not a known field selector: only \"metadata.name\", \
                     \"metadata.namespace\""
                )));
            }
            let pointer = format!("/{}", field.replace('.', "/"));
            terms.push((pointer, value.trim().to_string(), equal));
        }
        Ok(Self { terms })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(pointer, value, equal)| {
            let actual = match object.pointer(pointer) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Bool(flag)) => flag.to_string(),
                Some(Value::Number(number)) => number.to_string(),
                _ if pointer == "/metadata/namespace" => {
                    object::namespace(object).unwrap_or("").to_string()
                }
                _ => String::new(),
            };
            (actual == *value) == *equal
        })
    }
}

/// Both selectors of a request.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn label_selectors_match_as_kubernetes_does() {
        let o = object(json!({"app": "web", "tier": "front"}));
        let matches = |s: &str| LabelSelector::parse(s).expect("parses").matches(&o);
        assert!(matches("app=web"));
        assert!(matches("app==web,tier"));
        assert!(matches("app in (web, db)"));
        assert!(!matches("app notin (web,db)"));
        assert!(matches("!missing"));
        assert!(matches("missing!=x"));
        assert!(!matches("tier!=front"));
        assert!(matches("app in (a,web),tier notin (back)"));
        assert!(matches(""));
    }

    #[test]
    fn field_selectors_know_name_and_namespace_only() {
        let configmaps = crate::kube::resources::find("", "v1", "configmaps").expect("served");
        let o = object(json!({}));
        let selector = FieldSelector::parse("metadata.name=a,metadata.namespace!=x", configmaps)
            .expect("parses");
        assert!(selector.matches(&o));
        let error = FieldSelector::parse("spec.x=1", configmaps).expect_err("unknown field");
        assert_eq!(error.code, 400);
    }
}
