//! The record of what each manifest file applied, kept in the store where k3s keeps its
//! `Addon` objects (`/registry/k3s.cattle.io/addons/kube-system/<name>`): the source file,
//! its checksum, and the objects the file named when it was last applied, so any server —
//! and this one after a restart — knows what to delete when an object leaves the file or the
//! file goes.
//!
//! Guarantees: a record is written only through a compare on the revision it was read at
//! (a lost race is retried from a fresh read); a record that does not decode is reported,
//! never silently replaced.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::apply::{ObjectRef, ADDON_NAMESPACE};
use crate::kube::status::ApiError;
use crate::kube::storage::{Store, Written};

/// Where the records live.
pub const PREFIX: &str = "/registry/k3s.cattle.io/addons/kube-system/";

/// Writes of a record that lost a race before giving up for this pass.
const ATTEMPTS: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Addon {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
    #[serde(default)]
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub creation_timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The file's absolute path.
    pub source: String,
    /// Hex SHA-256 of the content applied.
    pub checksum: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The objects the file named (k3rs's field).
    #[serde(default)]
    pub objects: Vec<ObjectRef>,
}

impl Addon {
    pub fn new(name: &str, source: String, checksum: String, objects: Vec<ObjectRef>) -> Self {
        Self {
            api_version: "k3s.cattle.io/v1".into(),
            kind: "Addon".into(),
            metadata: Metadata {
                name: name.to_string(),
                namespace: ADDON_NAMESPACE.into(),
                creation_timestamp: OffsetDateTime::now_utc()
                    .replace_nanosecond(0)
                    .ok()
                    .and_then(|now| now.format(&Rfc3339).ok())
                    .unwrap_or_default(),
            },
            spec: Spec { source, checksum },
            status: Status { objects },
        }
    }
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

fn decode(key: &[u8], value: &[u8]) -> Result<Addon, ApiError> {
    serde_json::from_slice(value).map_err(|error| {
        ApiError::internal(format!(
            "the addon record {} does not decode: {error}",
            String::from_utf8_lossy(key)
        ))
    })
}

/// The record of `name` and the revision it was read at.
pub async fn read(store: &Store, name: &str) -> Result<Option<(i64, Addon)>, ApiError> {
    match store.get(&key(name), false).await? {
        Some(kv) => Ok(Some((kv.mod_revision, decode(&kv.key, &kv.value)?))),
        None => Ok(None),
    }
}

/// Every record (this member's copy when `serializable`).
pub async fn list(store: &Store, serializable: bool) -> Result<Vec<(i64, Addon)>, ApiError> {
    let page = store.page(PREFIX, PREFIX, 0, 0, serializable).await?;
    page.kvs
        .iter()
        .map(|kv| Ok((kv.mod_revision, decode(&kv.key, &kv.value)?)))
        .collect()
}

/// Stores `addon` (keeping the creation time of a record already there) unless it holds
/// exactly that already.
pub async fn write(store: &Store, mut addon: Addon) -> Result<(), ApiError> {
    for _ in 0..ATTEMPTS {
        let current = read(store, &addon.metadata.name).await?;
        let expected = match &current {
            Some((revision, stored)) => {
                addon.metadata.creation_timestamp = stored.metadata.creation_timestamp.clone();
                if stored == &addon {
                    return Ok(());
                }
                *revision
            }
            None => 0,
        };
        let value: Value = serde_json::to_value(&addon)
            .map_err(|error| ApiError::internal(format!("encoding an addon record: {error}")))?;
        let bytes = serde_json::to_vec(&value)
            .map_err(|error| ApiError::internal(format!("encoding an addon record: {error}")))?;
        if let Written::At(_) = store
            .put_if(&key(&addon.metadata.name), bytes, expected)
            .await?
        {
            return Ok(());
        }
    }
    Err(ApiError::internal(format!(
        "the addon record {} kept changing while written",
        addon.metadata.name
    )))
}

/// Removes the record of `name` if it is still at `revision`.
pub async fn remove(store: &Store, name: &str, revision: i64) -> Result<(), ApiError> {
    store.delete_if(&key(name), revision).await?;
    Ok(())
}
