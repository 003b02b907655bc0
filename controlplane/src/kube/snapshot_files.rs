//! ETCDSnapshotFile objects (`k3s.cattle.io/v1`, cluster-scoped), as k3s shows each etcd
//! snapshot, kept in step with the snapshot records k3rs keeps under `/k3rs/etcd-snapshots/`.
//!
//! Guarantees:
//! - the CRD `etcdsnapshotfiles.k3s.cattle.io` (k3s's columns SNAPSHOTNAME, NODE, LOCATION,
//!   SIZE, CREATIONTIME and a status subresource) is created by the leader when missing, so
//!   every server serves the kind;
//! - every record has one object, named as k3s names them: `<local|s3>-<snapshot name>-<first
//!   6 hex of sha256(node + location)>`, lowercased into a DNS subdomain; its spec
//!   (`snapshotName`, `nodeName`, `location`, `s3`) and status (`size`, `creationTime`,
//!   `readyToUse`, `error`) follow the record; an object made for a record (annotation
//!   [`RECORD_ANNOTATION`]) whose record is gone is deleted — other objects are left alone;
//! - one reconciler runs on the leader, every [`INTERVAL`]; every write is one transaction
//!   conditional on both keys: create when the object is absent and the record is at the
//!   revision read, update when both are at the revisions read, delete when the object is at
//!   the revision read and the record is absent. A stale leader (or two) can therefore never
//!   write an object its record no longer supports, nor lose one; the next round repairs
//!   whatever a refused write left.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use raftstore::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftstore::pb::etcdserverpb::{
    request_op, Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::watch as signal;

use super::crd::{self, Definition};
use super::datastore::{Datastore, Source};
use super::object;
use super::resources::{self, Resource};
use super::status::ApiError;
use super::storage::Store;
use crate::etcd_snapshot::records::{SnapshotRecord, SnapshotStatus, RECORD_PREFIX};

/// Pause between two rounds of the reconciler.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// The annotation naming the record an object was made for.
pub const RECORD_ANNOTATION: &str = "etcd.k3rs.io/snapshot-record";

/// The label k3s puts on each object: the node that holds the snapshot.
const NODE_LABEL: &str = "etcd.k3s.cattle.io/snapshot-storage-node";

/// The CRD, as k3s defines it.
pub fn definition() -> Value {
    let column =
        |name: &str, path: &str| json!({ "name": name, "type": "string", "jsonPath": path });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "etcdsnapshotfiles.k3s.cattle.io" },
        "spec": {
            "group": "k3s.cattle.io",
            "scope": "Cluster",
            "names": {
                "kind": "ETCDSnapshotFile",
                "plural": "etcdsnapshotfiles",
                "singular": "etcdsnapshotfile",
            },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "additionalPrinterColumns": [
                    column("SnapshotName", ".spec.snapshotName"),
                    column("Node", ".spec.nodeName"),
                    column("Location", ".spec.location"),
                    column("Size", ".status.size"),
                    column("CreationTime", ".status.creationTime"),
                ],
                "schema": { "openAPIV3Schema": schema() },
            }],
        },
    })
}

/// The CRD's `openAPIV3Schema`.
fn schema() -> Value {
    let string = json!({ "type": "string" });
    let spec = json!({
        "type": "object",
        "description": "Where the snapshot is.",
        "properties": {
            "snapshotName": { "type": "string", "description": "The snapshot's name, as etcd-snapshot ls prints it." },
            "nodeName": { "type": "string", "description": "The node that holds the file (s3 for a copy in S3)." },
            "location": { "type": "string", "description": "The file (file://) or object (s3://) URI." },
            "metadata": { "type": "object", "additionalProperties": string, "description": "Metadata saved with the snapshot." },
            "s3": {
                "type": "object",
                "description": "The S3 bucket and folder of a copy in S3.",
                "properties": {
                    "bucket": string, "prefix": string, "endpoint": string,
                    "region": string, "endpointCA": string,
                    "skipSSLVerify": { "type": "boolean" }, "insecure": { "type": "boolean" },
                },
            },
        },
    });
    let status = json!({
        "type": "object",
        "description": "What the snapshot is.",
        "properties": {
            "readyToUse": { "type": "boolean", "description": "Whether the snapshot was written whole." },
            "size": { "x-kubernetes-int-or-string": true, "anyOf": [{ "type": "integer" }, { "type": "string" }], "description": "The size in bytes." },
            "creationTime": { "type": "string", "format": "date-time", "description": "When the snapshot was taken." },
            "error": {
                "type": "object",
                "description": "Why the snapshot failed.",
                "properties": {
                    "time": { "type": "string", "format": "date-time" },
                    "message": { "type": "string" },
                },
            },
        },
    });
    json!({
        "type": "object",
        "description": "ETCDSnapshotFile is one etcd snapshot of the cluster, on a node's disk or in S3.",
        "properties": { "spec": spec, "status": status },
    })
}

/// k3s's object name of a snapshot: `<local|s3>-<name>-<6 hex>`, a DNS subdomain.
pub fn object_name(record: &SnapshotRecord) -> String {
    let digest = Sha256::digest(format!("{}{}", record.node, record.location).as_bytes());
    let hash: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let storage = if record.is_s3() { "s3" } else { "local" };
    let mut base: String = format!("{storage}-{}", record.name)
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(253 - 7);
    let base = base.trim_end_matches(['-', '.']);
    format!("{base}-{hash}")
}

/// The object a record stands for (before the server's fields).
fn object_for(record: &SnapshotRecord, record_key: &str) -> Value {
    let s3 = record.is_s3();
    let node = if s3 { "s3" } else { record.node.as_str() };
    let mut spec = json!({
        "snapshotName": record.name,
        "nodeName": node,
        "location": record.location,
    });
    if s3 {
        let path = record.location.trim_start_matches("s3://");
        let mut parts: Vec<&str> = path.split('/').collect();
        let bucket = if parts.is_empty() {
            ""
        } else {
            parts.remove(0)
        };
        parts.pop();
        spec["s3"] = json!({ "bucket": bucket, "prefix": parts.join("/") });
    }
    let ready = record.status == SnapshotStatus::Successful;
    let mut status = json!({
        "readyToUse": ready,
        "size": record.size.to_string(),
        "creationTime": record.created_at,
    });
    if !ready {
        status["error"] = json!({ "time": record.created_at, "message": record.message });
    }
    json!({
        "apiVersion": "k3s.cattle.io/v1",
        "kind": "ETCDSnapshotFile",
        "metadata": {
            "name": object_name(record),
            "labels": { NODE_LABEL: node },
            "annotations": { RECORD_ANNOTATION: record_key },
        },
        "spec": spec,
        "status": status,
    })
}

fn mod_revision_is(key: &str, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::ModRevision(revision)),
    }
}

/// Puts (`Some`) or deletes (`None`) `key` if it is at `expected` and `record_key` at
/// `record_revision` (0: absent). Whether it was written.
async fn write_if(
    data: &Datastore,
    (key, expected): (&str, i64),
    value: Option<Vec<u8>>,
    (record_key, record_revision): (&str, i64),
) -> Result<bool, ApiError> {
    let request = match value {
        Some(value) => request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            ..Default::default()
        }),
        None => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        }),
    };
    let response = data
        .txn(TxnRequest {
            compare: vec![
                mod_revision_is(key, expected),
                mod_revision_is(record_key, record_revision),
            ],
            success: vec![RequestOp {
                request: Some(request),
            }],
            failure: Vec::new(),
        })
        .await?;
    Ok(response.succeeded)
}

/// The served resource of the CRD (from [`definition`]).
fn snapshot_files_resource(crd: &Value) -> Result<&'static Resource, ApiError> {
    let definition = Definition::parse(crd).map_err(ApiError::internal)?;
    definition
        .versions
        .first()
        .map(|version| &version.custom.resource)
        .ok_or_else(|| ApiError::internal("the ETCDSnapshotFile CRD has no version"))
}

/// Creates the CRD unless it exists; returns the resource it serves.
async fn ensure_definition(
    store: &Store,
    now: OffsetDateTime,
) -> Result<&'static Resource, ApiError> {
    let definitions = resources::find(crd::GROUP, "v1", "customresourcedefinitions")
        .ok_or_else(|| ApiError::internal("CRDs are not served"))?;
    let mut crd = object::prepare_create(definitions, None, definition(), now)?;
    let builtin: Vec<&str> = resources::groups().iter().map(|(g, _)| *g).collect();
    crd::prepare_definition(&mut crd, None, &builtin, now)?;
    let resource = snapshot_files_resource(&crd)?;
    let key = definitions.key(None, object::name(&crd));
    if store.get(&key, false).await?.is_none() {
        store
            .put_if(&key, object::encode_for_storage(&crd)?, 0)
            .await?;
        tracing::info!("created the ETCDSnapshotFile CRD");
    }
    Ok(resource)
}

/// One round: every record's object created or brought up to date, objects of records gone
/// deleted.
pub async fn reconcile(store: &Store, now: OffsetDateTime) -> Result<(), ApiError> {
    let resource = ensure_definition(store, now).await?;
    let records = store
        .page(RECORD_PREFIX, RECORD_PREFIX, 0, 0, false)
        .await?;
    let prefix = resource.prefix();
    let stored = store.page(&prefix, &prefix, 0, 0, false).await?;
    let mut objects: BTreeMap<String, (i64, Value)> = BTreeMap::new();
    for kv in &stored.kvs {
        let object = object::decode_stored(&kv.value, kv.mod_revision)?;
        objects.insert(object::name(&object).to_string(), (kv.mod_revision, object));
    }
    let mut wanted = BTreeSet::new();
    for kv in &records.kvs {
        let record_key = String::from_utf8_lossy(&kv.key).into_owned();
        let record: SnapshotRecord = match serde_json::from_slice(&kv.value) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(key = %record_key, %error, "skipping a snapshot record that does not decode");
                continue;
            }
        };
        let desired = object_for(&record, &record_key);
        let name = object::name(&desired).to_string();
        let key = resource.key(None, &name);
        wanted.insert(name.clone());
        let (expected, new) = match objects.get(&name) {
            None => (0, object::prepare_create(resource, None, desired, now)?),
            Some((revision, current)) => {
                let mut new = object::prepare_update(resource, None, &name, current, desired)?;
                object::set_resource_version(&mut new, *revision);
                if &new == current {
                    continue;
                }
                (*revision, new)
            }
        };
        let value = object::encode_for_storage(&new)?;
        if write_if(
            &store.data,
            (&key, expected),
            Some(value),
            (&record_key, kv.mod_revision),
        )
        .await?
        {
            tracing::debug!(object = %name, "ETCDSnapshotFile written");
        }
    }
    for (name, (revision, object)) in objects {
        let Some(record_key) = object
            .pointer(&format!(
                "/metadata/annotations/{}",
                RECORD_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str)
        else {
            continue;
        };
        if wanted.contains(&name) {
            continue;
        }
        let key = resource.key(None, &name);
        if write_if(&store.data, (&key, revision), None, (record_key, 0)).await? {
            tracing::debug!(object = %name, "ETCDSnapshotFile of a removed snapshot deleted");
        }
    }
    Ok(())
}

/// Once the store serves, reconciles on the leader every [`INTERVAL`] until `stop`.
pub async fn run(mut source: Source, mut stop: signal::Receiver<bool>) {
    let Some(store) = source.serving(&mut stop).await else {
        return;
    };
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
        if !store.data.runs_cluster_checks() {
            continue;
        }
        if let Err(error) = reconcile(&store, OffsetDateTime::now_utc()).await {
            tracing::debug!(%error, "ETCDSnapshotFiles not reconciled this round");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(location: &str) -> SnapshotRecord {
        SnapshotRecord {
            name: "on-demand-Node1-1700000000".into(),
            node: "node1".into(),
            location: location.into(),
            size: 4096,
            created_at: "2026-11-28T18:00:00Z".into(),
            compressed: false,
            status: SnapshotStatus::Successful,
            message: String::new(),
        }
    }

    #[test]
    fn objects_are_named_and_filled_as_k3s_does() {
        let local = record("file:///var/lib/k3rs/server/db/snapshots/on-demand-Node1-1700000000");
        let name = object_name(&local);
        assert!(
            name.starts_with("local-on-demand-node1-1700000000-"),
            "{name}"
        );
        assert_eq!(name.len(), "local-on-demand-node1-1700000000-".len() + 6);
        let object = object_for(&local, "/k3rs/etcd-snapshots/x");
        assert_eq!(object["spec"]["nodeName"], "node1");
        assert_eq!(object["status"]["size"], "4096");
        assert_eq!(object["status"]["readyToUse"], true);
        let s3 = record("s3://bucket/folder/on-demand-Node1-1700000000");
        assert!(object_name(&s3).starts_with("s3-on-demand-node1-"));
        assert_ne!(object_name(&s3), name);
        let object = object_for(&s3, "/k3rs/etcd-snapshots/s3/x");
        assert_eq!(
            object["spec"]["s3"],
            json!({ "bucket": "bucket", "prefix": "folder" })
        );
        assert_eq!(object["spec"]["nodeName"], "s3");
        let mut failed = record("file:///snapshots/on-demand-Node1-1700000000");
        failed.status = SnapshotStatus::Failed;
        failed.message = "no space left on device".into();
        let object = object_for(&failed, "/k3rs/etcd-snapshots/y");
        assert_eq!(object["status"]["readyToUse"], false);
        assert_eq!(
            object["status"]["error"],
            json!({ "time": "2026-11-28T18:00:00Z", "message": "no space left on device" })
        );
    }

    #[test]
    fn the_definition_is_a_valid_crd() {
        let mut crd = definition();
        crd::prepare_definition(&mut crd, None, &[], OffsetDateTime::now_utc()).expect("valid");
        let resource = snapshot_files_resource(&crd).expect("served");
        assert_eq!(
            (resource.plural, resource.namespaced),
            ("etcdsnapshotfiles", false)
        );
    }
}
