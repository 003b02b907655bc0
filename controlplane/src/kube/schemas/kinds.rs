//! The field tables of the built-in kinds' schemas: each field's name, type and description
//! (written here, after what Kubernetes documents), nested objects inline. The tables are
//! data, laid out one field a line (rustfmt skips this file).
//!
//! Guarantees: one entry of [`KINDS`] for every built-in kind the API serves (a unit test of
//! the parent module checks it against the resource table).

/// The type of a field, as its schema states it.
pub(super) enum Type {
    Str,
    Int32,
    Int64,
    Bool,
    /// A timestamp (`Time` and `MicroTime`): an RFC 3339 string.
    Time,
    /// A port number or name.
    IntOrString,
    /// A map of strings (`format` of the values, e.g. `byte`, if any).
    StrMap(Option<&'static str>),
    /// A list of strings.
    Strings,
    Obj(&'static [Field]),
    /// A list of objects.
    Objs(&'static [Field]),
}

/// A field: its name, type and what Kubernetes documents it as.
pub(super) struct Field(pub &'static str, pub Type, pub &'static str);

/// A built-in kind's schema: its package (the schema name's prefix before the version), its
/// description and its fields besides `apiVersion`, `kind` and `metadata`.
pub(super) struct Kind {
    pub group: &'static str,
    pub kind: &'static str,
    pub package: &'static str,
    pub description: &'static str,
    pub fields: &'static [Field],
}

use Type::*;

const CORE: &str = "io.k8s.api.core";

const OBJECT_REFERENCE: &[Field] = &[
    Field("apiVersion", Str, "APIVersion of the object referred to."),
    Field("kind", Str, "Kind of the object referred to."),
    Field("namespace", Str, "Namespace of the object referred to."),
    Field("name", Str, "Name of the object referred to."),
    Field("uid", Str, "UID of the object referred to."),
    Field("resourceVersion", Str, "ResourceVersion of the object referred to, when one version is meant."),
    Field("fieldPath", Str, "FieldPath names a part of the object instead of the whole, such as spec.containers{app}."),
];

const OWNER_REFERENCE: &[Field] = &[
    Field("apiVersion", Str, "APIVersion of the owner."),
    Field("kind", Str, "Kind of the owner."),
    Field("name", Str, "Name of the owner."),
    Field("uid", Str, "UID of the owner."),
    Field("controller", Bool, "Controller, when true, marks the owner that manages this object."),
    Field("blockOwnerDeletion", Bool, "BlockOwnerDeletion, when true, makes a foreground deletion of the owner wait for this object."),
];

pub(super) const OBJECT_META_FIELDS: &[Field] = &[
    Field("name", Str, "Name is unique within a namespace (or the cluster for cluster-scoped kinds) and cannot be changed."),
    Field("generateName", Str, "GenerateName is a prefix the server completes with a random suffix when no name is given."),
    Field("namespace", Str, "Namespace is the space the name is unique in; empty for cluster-scoped kinds."),
    Field("uid", Str, "UID is the unique identity the server gives the object at creation."),
    Field("resourceVersion", Str, "ResourceVersion is the version of the object clients use for optimistic concurrency and watches; opaque to clients."),
    Field("generation", Int64, "Generation counts changes of the desired state; set by the server."),
    Field("creationTimestamp", Time, "CreationTimestamp is when the server created the object, in UTC."),
    Field("deletionTimestamp", Time, "DeletionTimestamp is when the object is to be deleted; set by the server."),
    Field("labels", StrMap(None), "Labels are key/value pairs that selectors match on."),
    Field("annotations", StrMap(None), "Annotations are key/value pairs tools store with the object; not matched by selectors."),
    Field("finalizers", Strings, "Finalizers must be empty before the object is deleted."),
    Field("ownerReferences", Objs(OWNER_REFERENCE), "OwnerReferences name the objects this one depends on."),
];

const NODE_ADDRESS: &[Field] = &[
    Field("type", Str, "Type is Hostname, InternalIP, ExternalIP, InternalDNS or ExternalDNS."),
    Field("address", Str, "Address is the address itself."),
];

const TAINT: &[Field] = &[
    Field("key", Str, "Key is the taint's key."),
    Field("value", Str, "Value is the taint's value."),
    Field("effect", Str, "Effect on pods that do not tolerate the taint: NoSchedule, PreferNoSchedule or NoExecute."),
    Field("timeAdded", Time, "TimeAdded is when a NoExecute taint was added."),
];

const NODE_CONDITION: &[Field] = &[
    Field("type", Str, "Type is the condition's name, such as Ready."),
    Field("status", Str, "Status is True, False or Unknown."),
    Field("lastHeartbeatTime", Time, "LastHeartbeatTime is when the condition was last reported."),
    Field("lastTransitionTime", Time, "LastTransitionTime is when the status last changed."),
    Field("reason", Str, "Reason is a CamelCase word for the last change."),
    Field("message", Str, "Message tells about the last change in words."),
];

const NODE_INFO: &[Field] = &[
    Field("machineID", Str, "MachineID is the node's /etc/machine-id."),
    Field("systemUUID", Str, "SystemUUID is the machine's hardware UUID."),
    Field("bootID", Str, "BootID changes with each boot of the node."),
    Field("kernelVersion", Str, "KernelVersion is the node's kernel release (uname -r)."),
    Field("osImage", Str, "OSImage is the node's operating system release (from /etc/os-release)."),
    Field("containerRuntimeVersion", Str, "ContainerRuntimeVersion is the node's container runtime, as <runtime>://<version>."),
    Field("kubeletVersion", Str, "KubeletVersion is the version of the node's kubelet."),
    Field("kubeProxyVersion", Str, "KubeProxyVersion is deprecated and not reliable."),
    Field("operatingSystem", Str, "OperatingSystem is the node's GOOS, such as linux."),
    Field("architecture", Str, "Architecture is the node's GOARCH, such as amd64."),
];

const NODE: &[Field] = &[
    Field("spec", Obj(&[
        Field("podCIDR", Str, "PodCIDR is the range of pod IP addresses given to the node."),
        Field("podCIDRs", Strings, "PodCIDRs are the IP ranges assigned to the node for its pods, at most one per IP family; the first equals podCIDR."),
        Field("providerID", Str, "ProviderID identifies the node to its cloud provider, as <provider>://<id>."),
        Field("unschedulable", Bool, "Unschedulable, when true, keeps new pods off the node (kubectl cordon sets it)."),
        Field("taints", Objs(TAINT), "Taints keep pods that do not tolerate them off the node."),
    ]), "Spec is the desired state of the node."),
    Field("status", Obj(&[
        Field("addresses", Objs(NODE_ADDRESS), "Addresses are the node's addresses (InternalIP, Hostname, ...)."),
        Field("conditions", Objs(NODE_CONDITION), "Conditions are the node's observed conditions, such as Ready."),
        Field("capacity", StrMap(None), "Capacity is the node's total resources (cpu, memory, pods)."),
        Field("allocatable", StrMap(None), "Allocatable is the part of the capacity pods may be scheduled onto."),
        Field("nodeInfo", Obj(NODE_INFO), "NodeInfo is what the node reports about its machine and software."),
        Field("daemonEndpoints", Obj(&[
            Field("kubeletEndpoint", Obj(&[Field("Port", Int32, "Port is the port number.")]), "KubeletEndpoint is the kubelet's port."),
        ]), "DaemonEndpoints are the ports of the node's daemons."),
    ]), "Status is the node's last observed state."),
];

const SERVICE_PORT: &[Field] = &[
    Field("name", Str, "Name tells the port apart from the service's others; required when there are several."),
    Field("protocol", Str, "Protocol is TCP (the default), UDP or SCTP."),
    Field("appProtocol", Str, "AppProtocol names the protocol spoken on the port, such as http."),
    Field("port", Int32, "Port is the port the service listens on."),
    Field("targetPort", IntOrString, "TargetPort is the number or name of the pods' port traffic goes to; port by default."),
    Field("nodePort", Int32, "NodePort is the port every node listens on for NodePort and LoadBalancer services."),
];

const SERVICE: &[Field] = &[
    Field("spec", Obj(&[
        Field("type", Str, "Type is how the service is reached: ClusterIP (the default), NodePort, LoadBalancer or ExternalName."),
        Field("ports", Objs(SERVICE_PORT), "Ports are the ports the service exposes."),
        Field("selector", StrMap(None), "Selector chooses the pods, by their labels, that traffic goes to."),
        Field("clusterIP", Str, "ClusterIP is the service's address inside the cluster, allocated unless given; None makes the service headless."),
        Field("clusterIPs", Strings, "ClusterIPs are the service's addresses, at most one per IP family; the first is clusterIP."),
        Field("externalIPs", Strings, "ExternalIPs are further addresses nodes accept the service's traffic on."),
        Field("externalName", Str, "ExternalName is the DNS name an ExternalName service resolves to (a CNAME)."),
        Field("sessionAffinity", Str, "SessionAffinity is ClientIP (a client's connections go to one pod) or None (the default)."),
        Field("externalTrafficPolicy", Str, "ExternalTrafficPolicy is Cluster or Local: where traffic arriving from outside may go."),
        Field("internalTrafficPolicy", Str, "InternalTrafficPolicy is Cluster or Local: where traffic to the cluster IP may go."),
        Field("ipFamilies", Strings, "IPFamilies are the service's IP families, IPv4 and/or IPv6."),
        Field("ipFamilyPolicy", Str, "IPFamilyPolicy is SingleStack, PreferDualStack or RequireDualStack."),
    ]), "Spec is the desired state of the service."),
    Field("status", Obj(&[
        Field("loadBalancer", Obj(&[
            Field("ingress", Objs(&[
                Field("ip", Str, "IP of the ingress point, if it has one."),
                Field("hostname", Str, "Hostname of the ingress point, if it is named by DNS."),
            ]), "Ingress lists the load balancer's ingress points."),
        ]), "LoadBalancer is the state of the service's load balancer, if any."),
    ]), "Status is the service's last observed state."),
];

const ENDPOINT_ADDRESS: &[Field] = &[
    Field("ip", Str, "IP is the endpoint's address."),
    Field("hostname", Str, "Hostname of the endpoint."),
    Field("nodeName", Str, "NodeName is the node the endpoint runs on."),
    Field("targetRef", Obj(OBJECT_REFERENCE), "TargetRef is the object (usually a pod) behind the endpoint."),
];

const ENDPOINTS: &[Field] = &[Field("subsets", Objs(&[
    Field("addresses", Objs(ENDPOINT_ADDRESS), "Addresses are the ready endpoints."),
    Field("notReadyAddresses", Objs(ENDPOINT_ADDRESS), "NotReadyAddresses are the endpoints not ready yet."),
    Field("ports", Objs(&[
        Field("name", Str, "Name is the service port's name this port serves."),
        Field("port", Int32, "Port is the endpoints' port number."),
        Field("protocol", Str, "Protocol is TCP (the default), UDP or SCTP."),
        Field("appProtocol", Str, "AppProtocol names the protocol spoken on the port, such as http."),
    ]), "Ports are the ports all the subset's addresses serve."),
]), "Subsets group addresses with the ports they share; the endpoints are their union.")];

const EVENT: &[Field] = &[
    Field("involvedObject", Obj(OBJECT_REFERENCE), "InvolvedObject is the object the event is about."),
    Field("reason", Str, "Reason is a short CamelCase word for why the event happened."),
    Field("message", Str, "Message tells what happened, for people."),
    Field("type", Str, "Type is Normal or Warning."),
    Field("count", Int32, "Count is how many times the event happened."),
    Field("firstTimestamp", Time, "FirstTimestamp is when the event first happened."),
    Field("lastTimestamp", Time, "LastTimestamp is when the event last happened."),
    Field("eventTime", Time, "EventTime is when the event was first observed, to microseconds."),
    Field("source", Obj(&[
        Field("component", Str, "Component that reported the event."),
        Field("host", Str, "Host (node) the event was reported on."),
    ]), "Source is the component that reported the event."),
    Field("reportingComponent", Str, "ReportingComponent is the controller that reported the event, such as kubelet."),
    Field("reportingInstance", Str, "ReportingInstance is the instance of that controller."),
    Field("action", Str, "Action is what was done, or failed, to the object."),
    Field("related", Obj(OBJECT_REFERENCE), "Related is a second object the event concerns, if any."),
];

const SERVICE_ACCOUNT: &[Field] = &[
    Field("secrets", Objs(OBJECT_REFERENCE), "Secrets are secrets of the namespace the account's pods may use."),
    Field("imagePullSecrets", Objs(&[Field("name", Str, "Name of the secret.")]), "ImagePullSecrets are secrets of the namespace used to pull the images of the account's pods."),
    Field("automountServiceAccountToken", Bool, "AutomountServiceAccountToken tells whether the account's pods get an API token mounted."),
];

const LEASE: &[Field] = &[Field("spec", Obj(&[
    Field("holderIdentity", Str, "HolderIdentity names who holds the lease."),
    Field("leaseDurationSeconds", Int32, "LeaseDurationSeconds is how long after renewTime others must wait before taking the lease over."),
    Field("acquireTime", Time, "AcquireTime is when the holder took the lease."),
    Field("renewTime", Time, "RenewTime is when the holder last renewed the lease."),
    Field("leaseTransitions", Int32, "LeaseTransitions counts the changes of holder."),
]), "Spec is the lease's holder and times.")];

const CRD_NAMES: &[Field] = &[
    Field("plural", Str, "Plural is the lowercase resource name in URLs; the CRD's name is <plural>.<group>."),
    Field("singular", Str, "Singular is the lowercase singular name; the kind, lowercased, by default."),
    Field("kind", Str, "Kind is the objects' kind, CamelCase and singular."),
    Field("listKind", Str, "ListKind is the kind of lists of the objects; <kind>List by default."),
    Field("shortNames", Strings, "ShortNames are abbreviations kubectl accepts for the resource."),
    Field("categories", Strings, "Categories are the groups of resources (such as all) this one belongs to."),
];

const CRD_VERSION: &[Field] = &[
    Field("name", Str, "Name of the version, such as v1 or v2beta1; served under /apis/<group>/<name>."),
    Field("served", Bool, "Served tells whether the API serves this version."),
    Field("storage", Bool, "Storage marks the one version objects are stored as."),
    Field("deprecated", Bool, "Deprecated, when true, makes the API warn clients of this version."),
    Field("deprecationWarning", Str, "DeprecationWarning replaces the default warning of a deprecated version."),
    Field("schema", Obj(&[
        Field("openAPIV3Schema", Obj(&[]), "OpenAPIV3Schema is the structural schema objects are checked, pruned and defaulted by."),
    ]), "Schema of the version's objects."),
    Field("subresources", Obj(&[
        Field("status", Obj(&[]), "Status, when present, serves the /status subresource and makes writes to the object leave status alone."),
        Field("scale", Obj(&[]), "Scale, when present, serves the /scale subresource."),
    ]), "Subresources the version serves."),
    Field("additionalPrinterColumns", Objs(&[
        Field("name", Str, "Name is the column's heading."),
        Field("type", Str, "Type of the column: integer, number, string, boolean or date."),
        Field("format", Str, "Format refines the type, as in OpenAPI."),
        Field("description", Str, "Description of the column."),
        Field("priority", Int32, "Priority 0 shows the column always, higher ones in wide output only."),
        Field("jsonPath", Str, "JsonPath picks each object's value for the column."),
    ]), "AdditionalPrinterColumns are the columns kubectl get shows besides the name and age."),
];

const CRD: &[Field] = &[
    Field("spec", Obj(&[
        Field("group", Str, "Group is the resource's API group, served under /apis/<group>; the CRD's name is <plural>.<group>."),
        Field("names", Obj(CRD_NAMES), "Names of the resource and its kind."),
        Field("scope", Str, "Scope is Namespaced or Cluster; it cannot change."),
        Field("versions", Objs(CRD_VERSION), "Versions of the resource the API knows."),
        Field("conversion", Obj(&[
            Field("strategy", Str, "Strategy is None (only apiVersion changes) or Webhook."),
        ]), "Conversion tells how objects change between versions."),
        Field("preserveUnknownFields", Bool, "PreserveUnknownFields, when true, keeps fields the schema does not name (deprecated; must be false in v1)."),
    ]), "Spec is the resource the CRD defines."),
    Field("status", Obj(&[
        Field("conditions", Objs(&[
            Field("type", Str, "Type is the condition's name, such as Established or NamesAccepted."),
            Field("status", Str, "Status is True, False or Unknown."),
            Field("lastTransitionTime", Time, "LastTransitionTime is when the status last changed."),
            Field("reason", Str, "Reason is a CamelCase word for the last change."),
            Field("message", Str, "Message tells about the last change in words."),
        ]), "Conditions are the CRD's observed conditions."),
        Field("acceptedNames", Obj(CRD_NAMES), "AcceptedNames are the names the API serves the resource under."),
        Field("storedVersions", Strings, "StoredVersions are the versions objects were ever stored as."),
    ]), "Status is the CRD's observed state."),
];

pub(super) const KINDS: &[Kind] = &[
    Kind { group: "", kind: "ConfigMap", package: CORE, description: "ConfigMap holds configuration data for pods to consume.", fields: &[
        Field("data", StrMap(None), "Data holds UTF-8 configuration values; keys are made of alphanumerics, '-', '_' and '.', and must not also be keys of binaryData."),
        Field("binaryData", StrMap(Some("byte")), "BinaryData holds binary values, base64 encoded; keys as for data, distinct from them."),
        Field("immutable", Bool, "Immutable, when true, forbids any later change of data and binaryData."),
    ] },
    Kind { group: "", kind: "Secret", package: CORE, description: "Secret holds secret data of a given type, such as passwords or keys.", fields: &[
        Field("data", StrMap(Some("byte")), "Data holds the secret values, base64 encoded."),
        Field("stringData", StrMap(None), "StringData takes plain-text values on writes; they are merged into data and never returned."),
        Field("type", Str, "Type tells how the data is used (Opaque by default)."),
        Field("immutable", Bool, "Immutable, when true, forbids any later change of data."),
    ] },
    Kind { group: "", kind: "Namespace", package: CORE, description: "Namespace gives names a scope of their own.", fields: &[
        Field("spec", Obj(&[Field("finalizers", Strings, "Finalizers must be empty before the namespace is removed.")]), "Spec holds the namespace's finalizers."),
        Field("status", Obj(&[Field("phase", Str, "Phase is Active or Terminating.")]), "Status is the namespace's observed state."),
    ] },
    Kind { group: "", kind: "Node", package: CORE, description: "Node is a machine of the cluster that runs pods; its name identifies it.", fields: NODE },
    Kind { group: "", kind: "Service", package: CORE, description: "Service gives a set of pods, chosen by a label selector, one stable address and set of ports.", fields: SERVICE },
    Kind { group: "", kind: "Endpoints", package: CORE, description: "Endpoints lists the addresses and ports that serve a Service.", fields: ENDPOINTS },
    Kind { group: "", kind: "Event", package: CORE, description: "Event records something that happened to an object of the cluster.", fields: EVENT },
    Kind { group: "", kind: "ServiceAccount", package: CORE, description: "ServiceAccount is an identity processes in pods run as, with the secrets it may use.", fields: SERVICE_ACCOUNT },
    Kind { group: "coordination.k8s.io", kind: "Lease", package: "io.k8s.api.coordination", description: "Lease records who holds a lock (such as a node's heartbeat or a leader election) and until when.", fields: LEASE },
    Kind { group: crate::kube::crd::GROUP, kind: "CustomResourceDefinition", package: "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions", description: "CustomResourceDefinition makes the API server serve a new resource; its name is <spec.names.plural>.<spec.group>.", fields: CRD },
];
