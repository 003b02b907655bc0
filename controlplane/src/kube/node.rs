//! Each server as a Node of the API, as k3s registers its servers: a Node named after the
//! server (`/registry/minions/<node-name>`) with k3s's control-plane, etcd and master role
//! labels, its InternalIP and Hostname addresses and a Ready condition, and a Lease in
//! `kube-node-lease` renewed every [`HEARTBEAT`] (40 s duration, as the kubelet's).
//!
//! Guarantees: every write is a conditional one on the version read (a lost race waits for
//! the next beat, never overwrites); the Node is rewritten only when its addresses or
//! readiness change or its heartbeat is a minute old, so an idle cluster writes one lease per
//! server every 10 s; on the leader, a Node whose Lease has not been renewed for 40 s is
//! marked `Ready=Unknown` (NotReady), as kube-controller-manager's node lifecycle does, and
//! Ready again once its server renews. Deleting a Node first removes the etcd member of that
//! server (named `<node-name>-<8 hex>`), as k3s does; if the removal fails the Node stays.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::watch as signal;

use super::datastore::Source;
use super::object;
use super::resources::{self, Resource};
use super::status::ApiError;
use super::storage::{Store, Written};
use super::table::parse_rfc3339;

/// How often the lease is renewed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A lease older than this makes its node NotReady.
const LEASE_DURATION_SECONDS: i64 = 40;
/// The node's own heartbeat time is refreshed this often.
const NODE_REFRESH_SECONDS: i64 = 60;

/// This server, as a node.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub ip: IpAddr,
}

fn resource(plural: &str, group: &str) -> Result<&'static Resource, ApiError> {
    resources::find(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
}

fn micro_time(now: OffsetDateTime) -> String {
    let base = object::timestamp(now);
    format!("{}.{:06}Z", base.trim_end_matches('Z'), now.microsecond())
}

fn ready_condition(status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": "Ready", "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": now, "lastTransitionTime": now,
    })
}

/// The node's status as this server reports it.
fn status(identity: &NodeIdentity, now: &str) -> Value {
    json!({
        "addresses": [
            { "type": "InternalIP", "address": identity.ip.to_string() },
            { "type": "Hostname", "address": identity.name },
        ],
        "conditions": [ready_condition("True", "KubeletReady", "k3rs server is posting ready status", now)],
        "nodeInfo": {
            "kubeletVersion": format!("v{}.{}.0+k3rs", super::discovery::KUBE_VERSION.0, super::discovery::KUBE_VERSION.1),
            "operatingSystem": std::env::consts::OS,
            "architecture": super::discovery::go_arch(),
        },
    })
}

fn ready_status(node: &Value) -> Option<&str> {
    node.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .get("status")?
        .as_str()
}

fn seconds_since(text: Option<&str>, now: OffsetDateTime) -> i64 {
    text.and_then(parse_rfc3339)
        .map_or(i64::MAX, |then| (now - then).whole_seconds())
}

/// Creates or refreshes this server's Node.
async fn beat_node(
    store: &Store,
    identity: &NodeIdentity,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let nodes = resource("nodes", "")?;
    let key = nodes.key(None, &identity.name);
    let stamp = object::timestamp(now);
    let Some(kv) = store.get(&key, false).await? else {
        let labels = json!({
            "kubernetes.io/hostname": identity.name,
            "kubernetes.io/os": std::env::consts::OS,
            "kubernetes.io/arch": super::discovery::go_arch(),
            "node-role.kubernetes.io/control-plane": "true",
            "node-role.kubernetes.io/etcd": "true",
            "node-role.kubernetes.io/master": "true",
        });
        let node = object::prepare_create(
            nodes,
            None,
            json!({ "metadata": { "name": identity.name, "labels": labels }, "spec": {}, "status": status(identity, &stamp) }),
            now,
        )?;
        store
            .put_if(&key, object::encode_for_storage(&node)?, 0)
            .await?;
        return Ok(());
    };
    let current = object::decode_stored(&kv.value, kv.mod_revision)?;
    let wanted = status(identity, &stamp);
    let heartbeat = current
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["lastHeartbeatTime"].as_str());
    let fresh = ready_status(&current) == Some("True")
        && current.pointer("/status/addresses") == wanted.get("addresses")
        && seconds_since(heartbeat, now) < NODE_REFRESH_SECONDS;
    if fresh {
        return Ok(());
    }
    let mut node = current.clone();
    node["status"] = wanted;
    store
        .put_if(&key, object::encode_for_storage(&node)?, kv.mod_revision)
        .await?;
    Ok(())
}

/// Creates or renews this server's Lease in `kube-node-lease`.
async fn beat_lease(
    store: &Store,
    identity: &NodeIdentity,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let leases = resource("leases", "coordination.k8s.io")?;
    let key = leases.key(Some("kube-node-lease"), &identity.name);
    let spec = json!({
        "holderIdentity": identity.name,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": micro_time(now),
    });
    match store.get(&key, false).await? {
        None => {
            let lease = object::prepare_create(
                leases,
                Some("kube-node-lease"),
                json!({ "metadata": { "name": identity.name }, "spec": spec }),
                now,
            )?;
            store
                .put_if(&key, object::encode_for_storage(&lease)?, 0)
                .await?;
        }
        Some(kv) => {
            let current = object::decode_stored(&kv.value, kv.mod_revision)?;
            let mut lease = current.clone();
            lease["spec"] = spec;
            let lease = object::prepare_update(
                leases,
                Some("kube-node-lease"),
                &identity.name,
                &current,
                lease,
            )?;
            store
                .put_if(&key, object::encode_for_storage(&lease)?, kv.mod_revision)
                .await?;
        }
    }
    Ok(())
}

/// On the leader: marks nodes whose lease lapsed NotReady.
async fn check_leases(store: &Store, now: OffsetDateTime) -> Result<(), ApiError> {
    let nodes = resource("nodes", "")?;
    let leases = resource("leases", "coordination.k8s.io")?;
    let page = store
        .page(&nodes.prefix(), &nodes.prefix(), 0, 0, false)
        .await?;
    for kv in page.kvs {
        let node = object::decode_stored(&kv.value, kv.mod_revision)?;
        let name = object::name(&node).to_string();
        let renewed = match store
            .get(&leases.key(Some("kube-node-lease"), &name), false)
            .await?
        {
            Some(lease) => {
                let lease = object::decode_stored(&lease.value, lease.mod_revision)?;
                seconds_since(
                    lease.pointer("/spec/renewTime").and_then(Value::as_str),
                    now,
                )
            }
            None => i64::MAX,
        };
        if renewed <= LEASE_DURATION_SECONDS || ready_status(&node) != Some("True") {
            continue;
        }
        let mut updated = node.clone();
        let stamp = object::timestamp(now);
        if let Some(conditions) = updated
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
        {
            conditions.retain(|c| c["type"] != "Ready");
            conditions.push(ready_condition(
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
                &stamp,
            ));
        }
        if let Written::At(_) = store
            .put_if(
                &nodes.key(None, &name),
                object::encode_for_storage(&updated)?,
                kv.mod_revision,
            )
            .await?
        {
            tracing::warn!(node = %name, "node lease not renewed for 40 s: marked NotReady");
        }
    }
    Ok(())
}

/// Whether the etcd member `member` is the one of the server `node` (`<node>-<8 hex>`).
fn is_member_of(member: &str, node: &str) -> bool {
    member
        .strip_prefix(node)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| hex.len() == 8 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Removes the etcd member of the server `node`, if the cluster has one: what deleting a
/// server's Node does in k3s.
pub async fn remove_member(store: &Store, node: &str) -> Result<(), ApiError> {
    let Some(handle) = store.data.member() else {
        return Ok(());
    };
    let member = handle
        .members()
        .into_iter()
        .find(|member| is_member_of(&member.name, node));
    if let Some(member) = member {
        handle.member_remove(member.id).await?;
        tracing::info!(node, member = %member.name, "removed the etcd member of a deleted node");
    }
    Ok(())
}

/// Registers this server as a Node and heartbeats its Lease until `stop`.
pub async fn run(mut source: Source, mut stop: signal::Receiver<bool>, identity: NodeIdentity) {
    let Some(store) = source.serving(&mut stop).await else {
        return;
    };
    loop {
        let now = OffsetDateTime::now_utc();
        let beat = async {
            beat_lease(&store, &identity, now).await?;
            beat_node(&store, &identity, now).await?;
            if store.data.runs_cluster_checks() {
                check_leases(&store, now).await?;
            }
            Ok::<(), ApiError>(())
        };
        if let Err(error) = beat.await {
            tracing::debug!(%error, "node heartbeat failed; retrying at the next beat");
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_matched_by_node_name_and_eight_hex() {
        assert!(is_member_of("node-1-0a1b2c3d", "node-1"));
        assert!(!is_member_of("node-10-0a1b2c3d", "node-1"));
        assert!(!is_member_of("node-1-xyz", "node-1"));
        assert!(!is_member_of("node-1", "node-1"));
    }
}
