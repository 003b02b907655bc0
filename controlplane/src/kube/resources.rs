//! The resources the API serves, one table entry each: group, version, names, kind, scope,
//! where kube-apiserver stores them in etcd, the naming rule, the `kubectl get` columns and
//! the field selectors they support.
//!
//! Guarantees: storage keys are kube-apiserver's (`/registry/configmaps/<ns>/<name>`,
//! `/registry/minions/<name>` for nodes, `/registry/services/specs/...`), so an etcd written
//! by one is laid out as by the other; every table lookup is by exact group, version and
//! plural name.

use serde_json::{json, Value};

/// Which Kubernetes naming rule an object's name must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: at most 253 characters, lowercase alphanumerics, `-` and `.`.
    Subdomain,
    /// RFC 1123 label: at most 63 characters, lowercase alphanumerics and `-`.
    Label,
}

#[derive(Debug)]
/// One extra column of `kubectl get` (besides NAME first and AGE last).
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub description: &'static str,
    pub cell: fn(&Value) -> Value,
    /// Printed after AGE (kubectl's VERSION of nodes) rather than before it.
    pub after_age: bool,
}

#[derive(Debug)]
/// One served resource.
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// The etcd key prefix, without the trailing `/` (kube-apiserver's).
    pub storage: &'static str,
    pub name_rule: NameRule,
    /// Whether the object has a `spec` whose changes bump `metadata.generation`.
    pub has_spec: bool,
    pub columns: &'static [Column],
    /// Field selectors beyond `metadata.name` and `metadata.namespace` (JSON paths).
    pub fields: &'static [&'static str],
}

impl Resource {
    /// `v1` or `<group>/<version>`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `configmaps`, or `leases.coordination.k8s.io` for other groups (as in kube's messages).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The key prefix of every object of this resource (all namespaces), ending in `/`.
    pub fn prefix(&self) -> String {
        format!("{}/", self.storage)
    }

    /// The key prefix of one namespace's objects, or of all of them.
    pub fn collection_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) if self.namespaced => format!("{}/{namespace}/", self.storage),
            _ => self.prefix(),
        }
    }

    /// The key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.collection_prefix(namespace))
    }
}

fn count_of(value: Option<&Value>) -> Value {
    json!(value.and_then(Value::as_object).map_or(0, |map| map.len()))
}

fn configmap_data(object: &Value) -> Value {
    let data = object
        .get("data")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    let binary = object
        .get("binaryData")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    json!(data + binary)
}

fn secret_type(object: &Value) -> Value {
    object.get("type").cloned().unwrap_or(json!("Opaque"))
}

fn secret_data(object: &Value) -> Value {
    count_of(object.get("data"))
}

fn namespace_phase(object: &Value) -> Value {
    object
        .pointer("/status/phase")
        .cloned()
        .unwrap_or(json!("Active"))
}

fn service_type(object: &Value) -> Value {
    object
        .pointer("/spec/type")
        .cloned()
        .unwrap_or(json!("ClusterIP"))
}

fn service_cluster_ip(object: &Value) -> Value {
    object
        .pointer("/spec/clusterIP")
        .cloned()
        .unwrap_or(json!("<none>"))
}

fn serviceaccount_secrets(object: &Value) -> Value {
    json!(object
        .get("secrets")
        .and_then(Value::as_array)
        .map_or(0, Vec::len))
}

fn lease_holder(object: &Value) -> Value {
    object
        .pointer("/spec/holderIdentity")
        .cloned()
        .unwrap_or(json!("<none>"))
}

fn event_reason(object: &Value) -> Value {
    object.get("reason").cloned().unwrap_or(json!(""))
}

fn event_message(object: &Value) -> Value {
    object.get("message").cloned().unwrap_or(json!(""))
}

fn node_status(object: &Value) -> Value {
    let ready = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|ready| ready["status"] == "True");
    let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
    if object.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

fn node_roles(object: &Value) -> Value {
    let roles: Vec<&str> = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|key| key.strip_prefix("node-role.kubernetes.io/"))
                .filter(|role| !role.is_empty())
                .collect()
        })
        .unwrap_or_default();
    json!(if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    })
}

fn node_version(object: &Value) -> Value {
    object
        .pointer("/status/nodeInfo/kubeletVersion")
        .cloned()
        .unwrap_or(json!(""))
}

const CORE: &str = "";

/// Every served resource.
pub static RESOURCES: &[Resource] = &[
    Resource {
        group: CORE,
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        storage: "/registry/namespaces",
        name_rule: NameRule::Label,
        has_spec: false,
        columns: &[Column {
            name: "Status",
            kind: "string",
            description: "The status of the namespace",
            cell: namespace_phase,
            after_age: false,
        }],
        fields: &["status.phase"],
    },
    Resource {
        group: CORE,
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        storage: "/registry/configmaps",
        name_rule: NameRule::Subdomain,
        has_spec: false,
        columns: &[Column {
            name: "Data",
            kind: "string",
            description: "Number of entries in data and binaryData",
            cell: configmap_data,
            after_age: false,
        }],
        fields: &[],
    },
    Resource {
        group: CORE,
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        storage: "/registry/secrets",
        name_rule: NameRule::Subdomain,
        has_spec: false,
        columns: &[
            Column {
                name: "Type",
                kind: "string",
                description: "The type of the secret",
                cell: secret_type,
                after_age: false,
            },
            Column {
                name: "Data",
                kind: "string",
                description: "Number of entries in data",
                cell: secret_data,
                after_age: false,
            },
        ],
        fields: &["type"],
    },
    Resource {
        group: CORE,
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        storage: "/registry/minions",
        name_rule: NameRule::Subdomain,
        has_spec: true,
        columns: &[
            Column {
                name: "Status",
                kind: "string",
                description: "The status of the node",
                cell: node_status,
                after_age: false,
            },
            Column {
                name: "Roles",
                kind: "string",
                description: "The roles of the node",
                cell: node_roles,
                after_age: false,
            },
            Column {
                name: "Version",
                kind: "string",
                description: "Kubelet Version reported by the node.",
                cell: node_version,
                after_age: true,
            },
        ],
        fields: &["spec.unschedulable"],
    },
    Resource {
        group: CORE,
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        storage: "/registry/events",
        name_rule: NameRule::Subdomain,
        has_spec: false,
        columns: &[
            Column {
                name: "Reason",
                kind: "string",
                description: "Short reason of the event",
                cell: event_reason,
                after_age: false,
            },
            Column {
                name: "Message",
                kind: "string",
                description: "What happened",
                cell: event_message,
                after_age: false,
            },
        ],
        fields: &[
            "involvedObject.kind",
            "involvedObject.name",
            "reason",
            "type",
        ],
    },
    Resource {
        group: CORE,
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        storage: "/registry/services/specs",
        name_rule: NameRule::Label,
        has_spec: true,
        columns: &[
            Column {
                name: "Type",
                kind: "string",
                description: "The type of the service",
                cell: service_type,
                after_age: false,
            },
            Column {
                name: "Cluster-IP",
                kind: "string",
                description: "The service's cluster IP",
                cell: service_cluster_ip,
                after_age: false,
            },
        ],
        fields: &[],
    },
    Resource {
        group: CORE,
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short_names: &["ep"],
        storage: "/registry/services/endpoints",
        name_rule: NameRule::Subdomain,
        has_spec: false,
        columns: &[],
        fields: &[],
    },
    Resource {
        group: CORE,
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        storage: "/registry/serviceaccounts",
        name_rule: NameRule::Subdomain,
        has_spec: false,
        columns: &[Column {
            name: "Secrets",
            kind: "integer",
            description: "Number of secrets",
            cell: serviceaccount_secrets,
            after_age: false,
        }],
        fields: &[],
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        storage: "/registry/leases",
        name_rule: NameRule::Subdomain,
        has_spec: true,
        columns: &[Column {
            name: "Holder",
            kind: "string",
            description: "The holder of the lease",
            cell: lease_holder,
            after_age: false,
        }],
        fields: &[],
    },
    Resource {
        group: super::crd::GROUP,
        version: "v1",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        kind: "CustomResourceDefinition",
        namespaced: false,
        short_names: &["crd", "crds"],
        storage: "/registry/apiextensions.k8s.io/customresourcedefinitions",
        name_rule: NameRule::Subdomain,
        has_spec: true,
        columns: &[],
        fields: &[],
    },
];

/// The resource served at `group`/`version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups other than the core group, each with its one version, in table order.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&'static str, &'static str)> = Vec::new();
    for resource in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !groups.contains(&(resource.group, resource.version)) {
            groups.push((resource.group, resource.version));
        }
    }
    groups
}

/// The resources of one group version.
pub fn of_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}
