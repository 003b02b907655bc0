//! Inner loops of the store: revision encoding, the key index, and MVCC put/range on the
//! in-memory and RocksDB engines. Kept small enough to run in a few minutes.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use raftstore::engine::{memory::MemoryEngine, KvEngine};
use raftstore::mvcc::revision::{decode_row_key, Revision};
use raftstore::mvcc::tree_index::TreeIndex;
use raftstore::mvcc::MvccStore;
use raftstore::pb::etcdserverpb::{PutRequest, RangeRequest};
use raftstore::pb::k3rspb::raft_command::Request;

const VALUE_BYTES: usize = 256;

fn k8s_key(i: u64) -> Vec<u8> {
    format!("/registry/pods/default/pod-{i:08}").into_bytes()
}

fn revision_encoding(c: &mut Criterion) {
    let rev = Revision {
        main: 123_456_789,
        sub: 7,
    };
    c.bench_function("revision/encode", |b| {
        b.iter(|| std::hint::black_box(rev).to_key())
    });
    let key = rev.to_key();
    c.bench_function("revision/decode", |b| {
        b.iter(|| decode_row_key(std::hint::black_box(&key)).expect("valid key"))
    });
}

fn key_index(c: &mut Criterion) {
    let mut index = TreeIndex::new();
    for i in 0..10_000u64 {
        let main = i64::try_from(i).expect("small") + 2;
        index
            .put(&k8s_key(i), Revision { main, sub: 0 })
            .expect("put into index");
    }
    let probe = k8s_key(5_000);
    c.bench_function("key_index/get_10k_keys", |b| {
        b.iter(|| index.get(std::hint::black_box(&probe), 20_000))
    });
    c.bench_function("key_index/range_100_of_10k", |b| {
        let start = k8s_key(1_000);
        let end = k8s_key(1_100);
        b.iter(|| index.revisions(&start, Some(&end), 20_000, 0))
    });
    let mut next = 20_000i64;
    c.bench_function("key_index/put_existing_key", |b| {
        b.iter(|| {
            next += 1;
            index
                .put(&probe, Revision { main: next, sub: 0 })
                .expect("put");
        })
    });
}

fn engines() -> Vec<(&'static str, Arc<dyn KvEngine>, Option<tempfile::TempDir>)> {
    let mut engines: Vec<(&'static str, Arc<dyn KvEngine>, Option<tempfile::TempDir>)> =
        vec![("memory", Arc::new(MemoryEngine::new()), None)];
    #[cfg(feature = "rocksdb")]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = raftstore::engine::rocks::RocksEngine::open(dir.path()).expect("open rocksdb");
        engines.push(("rocksdb", Arc::new(engine), Some(dir)));
    }
    engines
}

fn put(key: Vec<u8>) -> Request {
    Request::Put(PutRequest {
        key,
        value: vec![b'v'; VALUE_BYTES],
        ..Default::default()
    })
}

fn mvcc_put_and_range(c: &mut Criterion) {
    let mut group = c.benchmark_group("mvcc");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (name, engine, _dir) in engines() {
        let mut store = MvccStore::open(engine).expect("open store");
        let mut index = 0u64;
        for i in 0..10_000u64 {
            index += 1;
            store
                .apply(index, Some(&put(k8s_key(i))))
                .expect("storage")
                .expect("put");
        }
        group.bench_function(BenchmarkId::new("put_256b", name), |b| {
            b.iter_batched(
                || {
                    index += 1;
                    (index, put(k8s_key(index % 10_000)))
                },
                |(raft_index, request)| {
                    store
                        .apply(raft_index, Some(&request))
                        .expect("storage")
                        .expect("put")
                },
                BatchSize::SmallInput,
            )
        });
        let single = RangeRequest {
            key: k8s_key(4_242),
            ..Default::default()
        };
        group.bench_function(BenchmarkId::new("range_single_key", name), |b| {
            b.iter(|| store.range(&single).expect("range"))
        });
        let page = RangeRequest {
            key: b"/registry/pods/".to_vec(),
            range_end: b"/registry/pods0".to_vec(),
            limit: 500,
            ..Default::default()
        };
        group.bench_function(BenchmarkId::new("range_page_500", name), |b| {
            b.iter(|| store.range(&page).expect("range"))
        });
    }
    group.finish();
}

criterion_group!(benches, revision_encoding, key_index, mvcc_put_and_range);
criterion_main!(benches);
