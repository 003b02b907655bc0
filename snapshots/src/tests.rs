//! The format as its users rely on it: what is saved is what is restored, and no damaged,
//! truncated or foreign file gets through.

use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState};
use raftstore::engine::memory::MemoryEngine;
use raftstore::engine::{KvEngine, Table};
use raftstore::mvcc::MvccStore;
use raftstore::pb::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, Member, PutRequest, RangeRequest,
};
use raftstore::pb::k3rspb::raft_command::Request;
use raftstore::pb::k3rspb::ClusterIdentity;
use raftstore::raft_log::RaftLogStore;

use crate::format::{FrameKind, DATA_FRAME_TARGET_BYTES};
use crate::{encoded_len, import, verify, write_view, SnapshotError, SnapshotWriter};

fn put(key: &str, value: &str, lease: i64) -> Request {
    Request::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        lease,
        ..Default::default()
    })
}

/// A three-member store with leases, overwrites, a delete and a compaction, its raft log
/// holding the applied entries at term 3.
fn source_store() -> (Arc<dyn KvEngine>, MvccStore) {
    let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
    let members = [11u64, 12, 13]
        .into_iter()
        .map(|id| Member {
            id,
            name: format!("m{id}"),
            ..Default::default()
        })
        .collect();
    raftstore::identity::store(
        engine.as_ref(),
        &ClusterIdentity {
            cluster_id: 99,
            member_id: 12,
            members,
        },
    )
    .expect("identity");
    let log = RaftLogStore::open(engine.clone()).expect("log");
    log.bootstrap(&ConfState {
        voters: vec![11, 12, 13],
        ..Default::default()
    })
    .expect("bootstrap");
    let mut store = MvccStore::open(engine.clone()).expect("open");
    let requests = [
        Request::LeaseGrant(LeaseGrantRequest { ttl: 600, id: 7 }),
        put("a", "1", 7),
        put("b", "2", 0),
        put("b", "3", 0),
        put("c", "4", 0),
        Request::DeleteRange(DeleteRangeRequest {
            key: b"c".to_vec(),
            ..Default::default()
        }),
        Request::Compaction(CompactionRequest {
            revision: 3,
            physical: false,
        }),
        put("d", "5", 0),
    ];
    let entries: Vec<Entry> = (1..=requests.len() as u64)
        .map(|index| Entry {
            index,
            term: 3,
            ..Default::default()
        })
        .collect();
    let hard_state = HardState {
        term: 3,
        vote: 12,
        commit: entries.len() as u64,
        ..Default::default()
    };
    log.persist(&entries, Some(&hard_state), true)
        .expect("persist");
    for (index, request) in requests.iter().enumerate() {
        store
            .apply(index as u64 + 1, Some(request))
            .expect("storage")
            .expect("applied");
    }
    (engine, store)
}

fn snapshot_bytes(engine: &dyn KvEngine) -> Vec<u8> {
    let view = engine.read_view().expect("view");
    write_view(view.as_ref(), Vec::new()).expect("write").0
}

fn new_identity() -> ClusterIdentity {
    ClusterIdentity {
        cluster_id: 500,
        member_id: 50,
        members: vec![Member {
            id: 50,
            name: "restored".into(),
            ..Default::default()
        }],
    }
}

fn all_keys(store: &MvccStore) -> Vec<raftstore::pb::mvccpb::KeyValue> {
    store
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .expect("range")
        .kvs
}

#[test]
fn a_restored_store_holds_exactly_the_saved_keys_revisions_and_leases() {
    let (source, store) = source_store();
    let bytes = snapshot_bytes(source.as_ref());
    let view = source.read_view().expect("view");
    assert_eq!(encoded_len(view.as_ref()).expect("len"), bytes.len() as u64);

    let verified = verify(bytes.as_slice()).expect("verify");
    assert_eq!(verified.header.cluster_id, 99);
    assert_eq!(verified.header.revision, store.current_revision());
    assert_eq!(verified.header.compact_revision, 3);
    assert_eq!(
        (verified.header.raft_index, verified.header.raft_term),
        (8, 3)
    );
    assert_eq!(verified.header.members.len(), 3);

    let target: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
    let restored = import(bytes.as_slice(), target.clone(), new_identity()).expect("import");
    assert_eq!(restored.header, verified.header);

    let copy = MvccStore::open(target.clone()).expect("reopen");
    assert_eq!(copy.current_revision(), store.current_revision());
    assert_eq!(copy.compact_revision(), store.compact_revision());
    assert_eq!(copy.consistent_index(), 8);
    assert_eq!(copy.leases(), store.leases());
    assert_eq!(all_keys(&copy), all_keys(&store));
    assert_eq!(
        copy.hash_kv(0).expect("hash"),
        store.hash_kv(0).expect("hash")
    );
    let log = RaftLogStore::open(target.clone()).expect("log");
    assert_eq!(log.conf_state().voters, [50]);
    assert_eq!((log.first_index(), log.hard_state().commit), (9, 8));
    let identity = raftstore::identity::load(target.as_ref())
        .expect("load")
        .expect("identity");
    assert_eq!(identity, new_identity());
}

#[test]
fn every_single_byte_change_is_detected() {
    let (source, _) = source_store();
    let bytes = snapshot_bytes(source.as_ref());
    for position in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[position] ^= flip;
            let err = verify(damaged.as_slice()).expect_err("a changed byte must be refused");
            assert!(
                err.is_bad_snapshot(),
                "byte {position} ^ {flip:#x}: unexpected kind of error {err}"
            );
        }
    }
}

#[test]
fn every_truncation_and_any_trailing_byte_is_detected() {
    let (source, _) = source_store();
    let bytes = snapshot_bytes(source.as_ref());
    for length in 0..bytes.len() {
        let err = verify(&bytes[..length]).expect_err("a truncated file must be refused");
        assert!(err.is_bad_snapshot(), "length {length}: {err}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        verify(longer.as_slice()),
        Err(SnapshotError::Damaged { .. })
    ));
}

#[test]
fn a_truncated_file_says_so() {
    let (source, _) = source_store();
    let bytes = snapshot_bytes(source.as_ref());
    let err = verify(&bytes[..bytes.len() - 10]).expect_err("truncated");
    assert!(matches!(err, SnapshotError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn foreign_files_are_refused_and_named() {
    let mut bbolt = vec![0u8; 4096];
    bbolt[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
    let err = verify(bbolt.as_slice()).expect_err("bbolt");
    assert!(err.to_string().contains("bbolt"), "{err}");
    let err = verify(&b"PK\x03\x04 zipped"[..]).expect_err("zip");
    assert!(err.to_string().contains("zip"), "{err}");
    let err = verify(&b""[..]).expect_err("empty");
    assert!(err.to_string().contains("empty"), "{err}");
    let err = verify(&b"hello, this is text"[..]).expect_err("text");
    assert!(matches!(err, SnapshotError::Foreign(_)), "{err}");
}

#[test]
fn a_newer_format_version_is_refused_with_advice() {
    let (source, _) = source_store();
    let mut bytes = snapshot_bytes(source.as_ref());
    bytes[8..12].copy_from_slice(&2u32.to_be_bytes());
    let err = verify(bytes.as_slice()).expect_err("newer");
    assert!(matches!(
        err,
        SnapshotError::UnsupportedVersion { found: 2 }
    ));
    assert!(err.to_string().contains("newer k3rs"), "{err}");
}

#[test]
fn a_damaged_file_writes_no_raft_state_into_the_target() {
    let (source, _) = source_store();
    let mut bytes = snapshot_bytes(source.as_ref());
    let last_data_byte = bytes.len() - 40;
    bytes[last_data_byte] ^= 0x10;
    let target: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
    assert!(import(bytes.as_slice(), target.clone(), new_identity()).is_err());
    assert!(RaftLogStore::open(target.clone()).expect("log").is_new());
    assert!(raftstore::identity::load(target.as_ref())
        .expect("load")
        .is_none());
}

#[test]
fn import_refuses_a_store_that_holds_data() {
    let (source, _) = source_store();
    let bytes = snapshot_bytes(source.as_ref());
    let err = import(bytes.as_slice(), source.clone(), new_identity()).expect_err("not empty");
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn frames_stay_bounded_however_many_rows() {
    let header = crate::SnapshotHeader::default();
    let mut writer = SnapshotWriter::new(Vec::new(), &header).expect("writer");
    let value = vec![7u8; 100];
    let rows = 20_000u64;
    for n in 0..rows {
        writer
            .row(Table::Kv, &n.to_be_bytes(), &value)
            .expect("row");
    }
    let (bytes, written) = writer.finish().expect("finish");
    assert_eq!(written.end.kv_rows, rows);
    assert!(written.end.data_frames > 5, "{:?}", written.end);

    // Walk the frames: none is much larger than the target.
    let mut at = crate::format::PREAMBLE_BYTES;
    let mut largest = 0;
    while at < bytes.len() - crate::format::DIGEST_BYTES {
        let kind = FrameKind::from_byte(bytes[at]).expect("kind");
        let mut length = [0u8; 4];
        length.copy_from_slice(&bytes[at + 1..at + 5]);
        let length = u32::from_be_bytes(length) as usize;
        if kind == FrameKind::Data {
            largest = largest.max(length);
        }
        at += crate::format::FRAME_OVERHEAD_BYTES + length;
    }
    assert!(
        largest < DATA_FRAME_TARGET_BYTES + 1024,
        "largest {largest}"
    );
    let verified = verify(bytes.as_slice()).expect("verify");
    assert_eq!(verified.end.kv_rows, rows);
}

#[test]
fn live_keys_are_read_at_the_snapshot_revision_and_a_damaged_file_gives_no_answer() {
    let (source, _store) = source_store();
    let bytes = snapshot_bytes(source.as_ref());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snap");
    std::fs::write(&path, &bytes).expect("write");
    let live = |prefix: &[u8]| {
        crate::values_with_prefix(crate::restore::open_file(&path).expect("opens"), prefix)
            .expect("reads")
    };
    let all = live(b"");
    let keys: Vec<&[u8]> = all.keys().map(Vec::as_slice).collect();
    assert_eq!(keys, [b"a".as_slice(), b"b", b"d"], "c was deleted");
    assert_eq!(all[b"b".as_slice()], b"3", "the last of two puts");
    assert_eq!(live(b"b").len(), 1);
    assert!(live(b"zz").is_empty(), "never written");

    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    std::fs::write(&path, &damaged).expect("write");
    let err = crate::values_with_prefix(crate::restore::open_file(&path).expect("opens"), b"b")
        .expect_err("damaged");
    assert!(err.is_bad_snapshot(), "{err}");
}
