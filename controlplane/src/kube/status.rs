//! Errors as kube-apiserver reports them: a `Status` object (`kind: Status`, `status:
//! Failure`) with the HTTP code, the machine-readable reason and the message kubectl prints.
//!
//! Guarantees: every refusal of the API goes through [`ApiError`], so each carries one of
//! kube-apiserver's reasons with its code, and messages use kube-apiserver's wording for the
//! reasons kubectl matches on (NotFound, AlreadyExists, Conflict, Invalid).

use serde_json::{json, Value};

use super::resources::Resource;

/// `Kind`, or `Kind.group` outside the core group (kube's qualified kind in messages).
fn qualified_kind(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.kind.to_string()
    } else {
        format!("{}.{}", resource.kind, resource.group)
    }
}

/// A refused request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, resource: &Resource, name: &str) -> Self {
        let mut details = json!({ "name": name, "kind": resource.plural });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        self.details = Some(details);
        self
    }

    pub fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
        )
        .with_details(resource, name)
    }

    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
        )
        .with_details(resource, name)
    }

    pub fn conflict(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                resource.qualified()
            ),
        )
        .with_details(resource, name)
    }

    /// `422 Invalid`: `field` of the object `name` has `value`, which breaks `rule`.
    pub fn invalid(resource: &Resource, name: &str, field: &str, value: &str, rule: &str) -> Self {
        let cause = format!("Invalid value: \"{value}\": {rule}");
        let mut error = Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {field}: {cause}",
                qualified_kind(resource)
            ),
        );
        let mut details = json!({
            "name": name,
            "kind": resource.kind,
            "causes": [{ "reason": "FieldValueInvalid", "message": cause, "field": field }],
        });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        error.details = Some(details);
        error
    }

    /// `422 Invalid` for a required field that is missing.
    pub fn required(resource: &Resource, field: &str) -> Self {
        let mut error = Self::new(
            422,
            "Invalid",
            format!(
                "{} \"\" is invalid: {field}: Required value: name or generateName is required",
                qualified_kind(resource)
            ),
        );
        error.details = Some(json!({
            "kind": resource.kind,
            "causes": [{ "reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": field }],
        }));
        error
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn not_found_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit_bytes}"),
        )
    }

    /// `410 Expired`: history needed by the request was compacted.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `Status` object of this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl From<raftstore::error::EtcdError> for ApiError {
    fn from(error: raftstore::error::EtcdError) -> Self {
        use raftstore::error::EtcdError;
        match error {
            EtcdError::RequestTooLarge => {
                Self::new(413, "RequestEntityTooLarge", error.to_string())
            }
            EtcdError::Compacted => {
                Self::expired("The resourceVersion for the provided list is too old.".to_string())
            }
            EtcdError::FutureRevision => {
                Self::timeout("Too large resource version: the cluster has not reached it yet")
            }
            EtcdError::NoLeader | EtcdError::Stopped | EtcdError::TooManyRequests => {
                Self::unavailable(error.to_string())
            }
            EtcdError::Timeout | EtcdError::LeaderChanged => Self::timeout(format!(
                "Timeout: request did not complete within requested timeout - {error}"
            )),
            other => Self::internal(other.to_string()),
        }
    }
}
