//! Reading keys out of a snapshot file without restoring it.
//!
//! [`values_with_prefix`] streams the file (memory bounded by the matching keys) and returns
//! every key under a prefix that exists at the snapshot's revision, with its last value
//! (a key whose last change deleted it is absent). Every frame is checked on the way, and
//! the answer is given only once the whole file has been read and its digest checked.

use std::collections::BTreeMap;
use std::io::Read;

use prost::Message as _;
use raftstore::mvcc::revision::decode_row_key;
use raftstore::pb::mvccpb::KeyValue;

use crate::error::SnapshotError;
use crate::reader::SnapshotReader;

/// The live keys under `prefix` in the snapshot read from `input`, with their values.
pub fn values_with_prefix(
    input: impl Read,
    prefix: &[u8],
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, SnapshotError> {
    let mut reader = SnapshotReader::open(input)?;
    let mut live = BTreeMap::new();
    while let Some(image) = reader.next_data()? {
        let at = reader.offset();
        for row in image.kv {
            let row_key = decode_row_key(&row.key)
                .map_err(|err| SnapshotError::damaged(at, format!("a kv row key: {err}")))?;
            let version = KeyValue::decode(row.value.as_slice())
                .map_err(|err| SnapshotError::damaged(at, format!("a kv row value: {err}")))?;
            if !version.key.starts_with(prefix) {
                continue;
            }
            if row_key.tombstone {
                live.remove(&version.key);
            } else {
                live.insert(version.key, version.value);
            }
        }
    }
    Ok(live)
}
