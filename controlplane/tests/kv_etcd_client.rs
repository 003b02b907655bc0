//! The KV API of the real `k3rs` binary, driven with the `etcd-client` crate: ranges, sorting,
//! filters, puts, deletes, transactions, revision rules, compaction and response headers, each
//! checked against etcd's documented (and observed) behaviour.

mod common;

use common::{assert_grpc_error, TestServer};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, GetResponse, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse,
};
use tonic::Code;

/// Puts `key = value` and returns the revision of the put.
async fn put(client: &mut Client, key: &str, value: &str) -> i64 {
    let response = client.put(key, value, None).await.expect("put");
    response
        .header()
        .expect("put response has a header")
        .revision()
}

/// The current revision, from a read of a key nobody writes.
async fn current_revision(client: &mut Client) -> i64 {
    let response = client.get("zz-revision-probe", None).await.expect("get");
    response
        .header()
        .expect("range response has a header")
        .revision()
}

fn keys(response: &GetResponse) -> Vec<String> {
    response
        .kvs()
        .iter()
        .map(|kv| kv.key_str().expect("utf-8 key").to_string())
        .collect()
}

fn values(response: &GetResponse) -> Vec<String> {
    response
        .kvs()
        .iter()
        .map(|kv| kv.value_str().expect("utf-8 value").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_get_returns_value_and_revisions() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let revision = put(&mut client, "greeting", "hello").await;

    let response = client.get("greeting", None).await.expect("get");
    assert_eq!(response.count(), 1);
    assert!(!response.more());
    let kv = &response.kvs()[0];
    assert_eq!(kv.key(), b"greeting");
    assert_eq!(kv.value(), b"hello");
    assert_eq!(kv.create_revision(), revision);
    assert_eq!(kv.mod_revision(), revision);
    assert_eq!(kv.version(), 1);
    assert_eq!(kv.lease(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_of_missing_key_returns_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "present", "1").await;

    let response = client.get("absent", None).await.expect("get");
    assert!(response.kvs().is_empty());
    assert_eq!(response.count(), 0);
    assert!(!response.more());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_get_with_limit_sets_more_and_counts_every_key() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for key in ["p", "p/1", "p/2", "p/3", "p/4", "p0", "q"] {
        put(&mut client, key, "v").await;
    }

    let response = client
        .get("p/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .expect("get");
    assert_eq!(keys(&response), ["p/1", "p/2"]);
    assert!(response.more(), "the limit cut the result");
    assert_eq!(
        response.count(),
        4,
        "count is the total in the range, not the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_get_within_limit_has_no_more() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for key in ["p/1", "p/2", "q"] {
        put(&mut client, key, "v").await;
    }

    let response = client
        .get("p/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .expect("get");
    assert_eq!(keys(&response), ["p/1", "p/2"]);
    assert!(
        !response.more(),
        "exactly `limit` keys exist: nothing was cut"
    );
    assert_eq!(response.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_end_nul_returns_every_key_from_key() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for key in ["a", "b", "ba", "c"] {
        put(&mut client, key, "v").await;
    }

    let response = client
        .get("b", Some(GetOptions::new().with_range("\0")))
        .await
        .expect("get");
    assert_eq!(keys(&response), ["b", "ba", "c"]);
    assert_eq!(response.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_and_range_end_nul_return_every_key() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for key in ["\u{1}low", "a", "z"] {
        put(&mut client, key, "v").await;
    }

    let response = client
        .get("\0", Some(GetOptions::new().with_range("\0")))
        .await
        .expect("get");
    assert_eq!(keys(&response), ["\u{1}low", "a", "z"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_range_end_is_exclusive() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for key in ["a", "b", "c", "d"] {
        put(&mut client, key, "v").await;
    }

    let response = client
        .get("b", Some(GetOptions::new().with_range("d")))
        .await
        .expect("get");
    assert_eq!(keys(&response), ["b", "c"]);
}

/// Writes three keys whose order differs for every sort target:
/// key a,b,c · create c,a,b · mod b,a,c · version b,c,a · value a,c,b.
async fn write_sort_fixture(client: &mut Client) {
    put(client, "s/c", "x").await; // create c
    put(client, "s/a", "x").await; // create a
    put(client, "s/b", "3").await; // create b; b: version 1, final value "3"
    put(client, "s/a", "x").await;
    put(client, "s/a", "1").await; // a: version 3, final value "1"
    put(client, "s/c", "2").await; // c: version 2, final value "2", last modified
}

async fn sorted_keys(client: &mut Client, target: SortTarget, order: SortOrder) -> Vec<String> {
    let options = GetOptions::new().with_prefix().with_sort(target, order);
    let response = client.get("s/", Some(options)).await.expect("sorted get");
    keys(&response)
}

const SORT_CASES: [(SortTarget, [&str; 3]); 5] = [
    (SortTarget::Key, ["s/a", "s/b", "s/c"]),
    (SortTarget::Create, ["s/c", "s/a", "s/b"]),
    (SortTarget::Mod, ["s/b", "s/a", "s/c"]),
    (SortTarget::Version, ["s/b", "s/c", "s/a"]),
    (SortTarget::Value, ["s/a", "s/c", "s/b"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_ascending_orders_by_each_target() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    write_sort_fixture(&mut client).await;

    for (target, expected) in SORT_CASES {
        let got = sorted_keys(&mut client, target, SortOrder::Ascend).await;
        assert_eq!(got, expected, "ascending by {target:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_descending_orders_by_each_target() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    write_sort_fixture(&mut client).await;

    for (target, ascending) in SORT_CASES {
        let mut expected = ascending.to_vec();
        expected.reverse();
        let got = sorted_keys(&mut client, target, SortOrder::Descend).await;
        assert_eq!(got, expected, "descending by {target:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_target_without_order_sorts_ascending() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    write_sort_fixture(&mut client).await;

    for (target, expected) in SORT_CASES {
        let got = sorted_keys(&mut client, target, SortOrder::None).await;
        assert_eq!(got, expected, "order NONE by {target:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_applies_before_limit() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    write_sort_fixture(&mut client).await;

    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Mod, SortOrder::Descend)
        .with_limit(1);
    let response = client.get("s/", Some(options)).await.expect("get");
    assert_eq!(keys(&response), ["s/c"], "the most recently modified key");
    assert!(response.more());
    assert_eq!(response.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_only_returns_keys_and_revisions_without_values() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = put(&mut client, "k/1", "one").await;
    let second = put(&mut client, "k/2", "two").await;

    let response = client
        .get("k/", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .expect("get");
    assert_eq!(keys(&response), ["k/1", "k/2"]);
    assert!(
        response.kvs().iter().all(|kv| kv.value().is_empty()),
        "values are left out"
    );
    let mod_revisions: Vec<i64> = response.kvs().iter().map(|kv| kv.mod_revision()).collect();
    assert_eq!(mod_revisions, [first, second]);
    assert_eq!(response.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_only_returns_count_without_kvs() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for key in ["c/1", "c/2", "c/3", "d"] {
        put(&mut client, key, "v").await;
    }

    let response = client
        .get(
            "c/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("get");
    assert!(response.kvs().is_empty());
    assert_eq!(response.count(), 3);
    assert!(!response.more());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_get_reads_the_written_value() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let revision = put(&mut client, "local", "value").await;

    let response = client
        .get("local", Some(GetOptions::new().with_serializable()))
        .await
        .expect("get");
    assert_eq!(values(&response), ["value"]);
    assert_eq!(response.kvs()[0].mod_revision(), revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_at_past_revision_returns_the_old_value() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = put(&mut client, "k", "v1").await;
    let second = put(&mut client, "k", "v2").await;

    let response = client
        .get("k", Some(GetOptions::new().with_revision(first)))
        .await
        .expect("get");
    assert_eq!(values(&response), ["v1"]);
    assert_eq!(response.kvs()[0].version(), 1);
    assert_eq!(
        response.header().expect("header").revision(),
        second,
        "the header carries the current revision, not the one asked for"
    );
}

/// k1 created at r, k2 at r+1, k3 at r+2, k1 modified at r+3; returns r.
async fn write_filter_fixture(client: &mut Client) -> i64 {
    let base = put(client, "f/1", "a").await;
    put(client, "f/2", "a").await;
    put(client, "f/3", "a").await;
    put(client, "f/1", "b").await;
    base
}

async fn filtered(client: &mut Client, options: GetOptions) -> GetResponse {
    client
        .get("f/", Some(options.with_prefix()))
        .await
        .expect("filtered get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_mod_revision_filters_out_older_modifications() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let base = write_filter_fixture(&mut client).await;

    let response = filtered(
        &mut client,
        GetOptions::new().with_min_mod_revision(base + 2),
    )
    .await;
    assert_eq!(keys(&response), ["f/1", "f/3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_mod_revision_filters_out_newer_modifications() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let base = write_filter_fixture(&mut client).await;

    let response = filtered(
        &mut client,
        GetOptions::new().with_max_mod_revision(base + 1),
    )
    .await;
    assert_eq!(keys(&response), ["f/2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_create_revision_filters_out_older_keys() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let base = write_filter_fixture(&mut client).await;

    let response = filtered(
        &mut client,
        GetOptions::new().with_min_create_revision(base + 1),
    )
    .await;
    assert_eq!(keys(&response), ["f/2", "f/3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_create_revision_filters_out_newer_keys() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let base = write_filter_fixture(&mut client).await;

    let response = filtered(
        &mut client,
        GetOptions::new().with_max_create_revision(base + 1),
    )
    .await;
    assert_eq!(keys(&response), ["f/1", "f/2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_ignores_the_revision_filters() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let base = write_filter_fixture(&mut client).await;

    let options = GetOptions::new()
        .with_min_mod_revision(base + 2)
        .with_max_create_revision(base);
    let response = filtered(&mut client, options).await;
    assert_eq!(keys(&response), ["f/1"]);
    assert_eq!(
        response.count(),
        3,
        "count is every key in the range, before filtering"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_prev_kv_returns_the_previous_pair() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let first = client
        .put("k", "v1", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("first put");
    assert!(first.prev_key().is_none(), "a create has no previous pair");
    let first_revision = first.header().expect("header").revision();

    let second = client
        .put("k", "v2", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("second put");
    let prev = second
        .prev_key()
        .expect("an update returns the previous pair");
    assert_eq!(prev.key(), b"k");
    assert_eq!(prev.value(), b"v1");
    assert_eq!(prev.mod_revision(), first_revision);
    assert_eq!(prev.create_revision(), first_revision);
    assert_eq!(prev.version(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_ignore_value_keeps_the_value_and_bumps_the_version() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = put(&mut client, "k", "kept").await;

    let response = client
        .put("k", "", Some(PutOptions::new().with_ignore_value()))
        .await
        .expect("put ignore_value");
    let revision = response.header().expect("header").revision();
    assert_eq!(revision, created + 1);

    let got = client.get("k", None).await.expect("get");
    let kv = &got.kvs()[0];
    assert_eq!(kv.value(), b"kept");
    assert_eq!(kv.version(), 2);
    assert_eq!(kv.mod_revision(), revision);
    assert_eq!(kv.create_revision(), created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_ignore_value_on_missing_key_fails_key_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let result = client
        .put("missing", "", Some(PutOptions::new().with_ignore_value()))
        .await;
    assert_grpc_error(result, Code::InvalidArgument, "etcdserver: key not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_ignore_value_and_a_value_fails_value_is_provided() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "k", "v").await;

    let result = client
        .put("k", "new", Some(PutOptions::new().with_ignore_value()))
        .await;
    assert_grpc_error(
        result,
        Code::InvalidArgument,
        "etcdserver: value is provided",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_ignore_lease_keeps_the_lease_and_sets_the_value() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let lease = client
        .lease_grant(600, None)
        .await
        .expect("lease grant")
        .id();
    client
        .put("k", "v1", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put");

    client
        .put("k", "v2", Some(PutOptions::new().with_ignore_lease()))
        .await
        .expect("put ignore_lease");

    let got = client.get("k", None).await.expect("get");
    let kv = &got.kvs()[0];
    assert_eq!(kv.value(), b"v2");
    assert_eq!(kv.lease(), lease, "the key keeps its lease");
    assert_eq!(kv.version(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_ignore_lease_and_a_lease_fails_lease_is_provided() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let lease = client
        .lease_grant(600, None)
        .await
        .expect("lease grant")
        .id();
    put(&mut client, "k", "v").await;

    let result = client
        .put(
            "k",
            "v2",
            Some(PutOptions::new().with_ignore_lease().with_lease(lease)),
        )
        .await;
    assert_grpc_error(
        result,
        Code::InvalidArgument,
        "etcdserver: lease is provided",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_range_with_prev_kv_returns_the_deleted_pairs() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "a", "1").await;
    let b_revision = put(&mut client, "b", "2").await;
    let c_revision = put(&mut client, "c", "3").await;
    put(&mut client, "d", "4").await;

    let response = client
        .delete(
            "b",
            Some(DeleteOptions::new().with_range("d").with_prev_key()),
        )
        .await
        .expect("delete");
    assert_eq!(response.deleted(), 2);
    let prev: Vec<(&[u8], &[u8], i64)> = response
        .prev_kvs()
        .iter()
        .map(|kv| (kv.key(), kv.value(), kv.mod_revision()))
        .collect();
    assert_eq!(
        prev,
        [
            (&b"b"[..], &b"2"[..], b_revision),
            (&b"c"[..], &b"3"[..], c_revision)
        ]
    );

    let remaining = client
        .get("\0", Some(GetOptions::new().with_range("\0")))
        .await
        .expect("get");
    assert_eq!(keys(&remaining), ["a", "d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_without_prev_kv_returns_only_the_count() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "x/1", "1").await;
    put(&mut client, "x/2", "2").await;

    let response = client
        .delete("x/", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("delete");
    assert_eq!(response.deleted(), 2);
    assert!(response.prev_kvs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_key_is_recreated_with_a_new_create_revision_and_version_one() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "k", "v1").await;
    put(&mut client, "k", "v2").await;
    client.delete("k", None).await.expect("delete");

    let recreated = put(&mut client, "k", "v3").await;
    let got = client.get("k", None).await.expect("get");
    let kv = &got.kvs()[0];
    assert_eq!(kv.create_revision(), recreated);
    assert_eq!(kv.version(), 1);
}

/// Runs `when(compare) then put(k, "then") else get(k)` and returns (succeeded, value of k).
async fn txn_branch(client: &mut Client, compare: Compare) -> (bool, Vec<u8>) {
    let txn = Txn::new()
        .when([compare])
        .and_then([TxnOp::put("k", "then", None)])
        .or_else([TxnOp::get("k", None)]);
    let response = client.txn(txn).await.expect("txn");
    let ops = response.op_responses();
    assert_eq!(ops.len(), 1, "one op ran");
    match (&ops[0], response.succeeded()) {
        (TxnOpResponse::Put(_), true) | (TxnOpResponse::Get(_), false) => {}
        (op, succeeded) => panic!("succeeded={succeeded} but the op response is {op:?}"),
    }
    let value = client.get("k", None).await.expect("get").kvs()[0]
        .value()
        .to_vec();
    (response.succeeded(), value)
}

/// Writes `k` twice (version 2) and returns (create revision, mod revision).
async fn write_txn_fixture(client: &mut Client) -> (i64, i64) {
    let created = put(client, "k", "v1").await;
    let modified = put(client, "k", "v2").await;
    (created, modified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_version_compare_selects_the_branch() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    write_txn_fixture(&mut client).await;

    let failed = txn_branch(&mut client, Compare::version("k", CompareOp::Equal, 1)).await;
    assert_eq!(failed, (false, b"v2".to_vec()));
    let succeeded = txn_branch(&mut client, Compare::version("k", CompareOp::Equal, 2)).await;
    assert_eq!(succeeded, (true, b"then".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_create_revision_compare_selects_the_branch() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (created, _) = write_txn_fixture(&mut client).await;

    let failed = txn_branch(
        &mut client,
        Compare::create_revision("k", CompareOp::Greater, created),
    )
    .await;
    assert_eq!(failed, (false, b"v2".to_vec()));
    let succeeded = txn_branch(
        &mut client,
        Compare::create_revision("k", CompareOp::Equal, created),
    )
    .await;
    assert_eq!(succeeded, (true, b"then".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_mod_revision_compare_selects_the_branch() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (created, modified) = write_txn_fixture(&mut client).await;

    let failed = txn_branch(
        &mut client,
        Compare::mod_revision("k", CompareOp::Equal, created),
    )
    .await;
    assert_eq!(failed, (false, b"v2".to_vec()));
    let succeeded = txn_branch(
        &mut client,
        Compare::mod_revision("k", CompareOp::Equal, modified),
    )
    .await;
    assert_eq!(succeeded, (true, b"then".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_value_compare_selects_the_branch() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    write_txn_fixture(&mut client).await;

    let failed = txn_branch(&mut client, Compare::value("k", CompareOp::Equal, "v1")).await;
    assert_eq!(failed, (false, b"v2".to_vec()));
    let less = txn_branch(&mut client, Compare::value("k", CompareOp::Less, "v3")).await;
    assert_eq!(
        less,
        (true, b"then".to_vec()),
        "values compare as bytes: v2 < v3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_lease_compare_selects_the_branch() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let lease = client
        .lease_grant(600, None)
        .await
        .expect("lease grant")
        .id();
    client
        .put("k", "v2", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put");

    let failed = txn_branch(&mut client, Compare::lease("k", CompareOp::Equal, 0)).await;
    assert_eq!(failed, (false, b"v2".to_vec()));
    let succeeded = txn_branch(&mut client, Compare::lease("k", CompareOp::Equal, lease)).await;
    assert_eq!(succeeded, (true, b"then".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_compare_on_missing_key_sees_zero_mod_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    // kube-apiserver's create: MOD(key) == 0, then put; else get.
    let txn = Txn::new()
        .when([Compare::mod_revision("new", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("new", "created", None)])
        .or_else([TxnOp::get("new", None)]);
    let response = client.txn(txn.clone()).await.expect("first create");
    assert!(response.succeeded(), "an absent key has mod_revision 0");

    let again = client.txn(txn).await.expect("second create");
    assert!(!again.succeeded(), "the key now exists");
    match &again.op_responses()[0] {
        TxnOpResponse::Get(get) => assert_eq!(values(get), ["created"]),
        other => panic!("failure branch ran {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_value_compare_on_missing_key_is_false() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let txn = Txn::new()
        .when([Compare::value("missing", CompareOp::NotEqual, "anything")])
        .and_then([TxnOp::put("marker", "then", None)])
        .or_else([TxnOp::put("marker", "else", None)]);
    let response = client.txn(txn).await.expect("txn");
    assert!(!response.succeeded());
    let got = client.get("marker", None).await.expect("get");
    assert_eq!(values(&got), ["else"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_range_compare_requires_every_key_to_match() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "r/1", "same").await;
    put(&mut client, "r/2", "same").await;

    let all_same = Compare::value("r/", CompareOp::Equal, "same").with_prefix();
    let response = client
        .txn(Txn::new().when([all_same.clone()]))
        .await
        .expect("txn");
    assert!(response.succeeded(), "every key in the range matches");

    put(&mut client, "r/3", "other").await;
    let response = client.txn(Txn::new().when([all_same])).await.expect("txn");
    assert!(!response.succeeded(), "r/3 does not match");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_writes_share_one_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let before = put(&mut client, "old", "v").await;

    let txn = Txn::new().and_then([
        TxnOp::put("t/1", "a", None),
        TxnOp::put("t/2", "b", None),
        TxnOp::delete("old", None),
    ]);
    let response = client.txn(txn).await.expect("txn");
    assert!(response.succeeded(), "no compares: success");
    let revision = response.header().expect("header").revision();
    assert_eq!(revision, before + 1, "one txn = one revision");

    let got = client
        .get("t/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    assert!(got.kvs().iter().all(|kv| kv.mod_revision() == revision));
    assert!(client.get("old", None).await.expect("get").kvs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_txn_runs_the_inner_branch_chosen_by_its_compare() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "gate", "open").await;

    let inner = Txn::new()
        .when([Compare::value("gate", CompareOp::Equal, "closed")])
        .and_then([TxnOp::put("inner", "then", None)])
        .or_else([TxnOp::put("inner", "else", None)]);
    let outer = Txn::new()
        .when([Compare::value("gate", CompareOp::Equal, "open")])
        .and_then([TxnOp::put("outer", "then", None), TxnOp::txn(inner)]);
    let response = client.txn(outer).await.expect("txn");
    assert!(response.succeeded());
    let revision = response.header().expect("header").revision();

    let ops = response.op_responses();
    assert_eq!(ops.len(), 2);
    match &ops[1] {
        TxnOpResponse::Txn(inner) => {
            assert!(!inner.succeeded(), "the inner compare is false");
            assert_eq!(inner.op_responses().len(), 1);
        }
        other => panic!("second response should be the nested txn, got {other:?}"),
    }
    let inner_value = client.get("inner", None).await.expect("get");
    assert_eq!(values(&inner_value), ["else"]);
    assert_eq!(
        inner_value.kvs()[0].mod_revision(),
        revision,
        "nested writes share the revision"
    );
    let outer_value = client.get("outer", None).await.expect("get");
    assert_eq!(values(&outer_value), ["then"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_store_is_at_revision_one_and_first_put_makes_two() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    assert_eq!(current_revision(&mut client).await, 1);
    assert_eq!(put(&mut client, "first", "v").await, 2);
    assert_eq!(current_revision(&mut client).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_nothing_does_not_bump_the_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let revision = put(&mut client, "k", "v").await;

    let response = client.delete("absent", None).await.expect("delete");
    assert_eq!(response.deleted(), 0);
    assert_eq!(response.header().expect("header").revision(), revision);
    assert_eq!(put(&mut client, "k2", "v").await, revision + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_txn_does_not_bump_the_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let revision = put(&mut client, "k", "v").await;

    let txn = Txn::new()
        .when([Compare::version("k", CompareOp::Equal, 1)])
        .and_then([TxnOp::get("k", None), TxnOp::delete("absent", None)]);
    let response = client.txn(txn).await.expect("txn");
    assert!(response.succeeded());
    assert_eq!(response.header().expect("header").revision(), revision);
    assert_eq!(put(&mut client, "k2", "v").await, revision + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_at_compacted_revision_fails_compacted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = put(&mut client, "k", "v1").await;
    put(&mut client, "k", "v2").await;
    let compacted = put(&mut client, "k", "v3").await;
    put(&mut client, "k", "v4").await;

    client.compact(compacted, None).await.expect("compact");

    let result = client
        .get("k", Some(GetOptions::new().with_revision(first)))
        .await;
    assert_grpc_error(
        result,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_at_exactly_the_compacted_revision_is_allowed() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "k", "v1").await;
    let compacted = put(&mut client, "k", "v2").await;
    put(&mut client, "k", "v3").await;

    client.compact(compacted, None).await.expect("compact");

    let response = client
        .get("k", Some(GetOptions::new().with_revision(compacted)))
        .await
        .expect("get");
    assert_eq!(values(&response), ["v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_at_or_below_the_compacted_revision_fails_compacted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "k", "v1").await;
    let compacted = put(&mut client, "k", "v2").await;
    put(&mut client, "k", "v3").await;
    client.compact(compacted, None).await.expect("compact");

    let result = client.compact(compacted, None).await;
    assert_grpc_error(
        result,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_above_the_current_revision_fails_future_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let revision = put(&mut client, "k", "v").await;

    let result = client.compact(revision + 1, None).await;
    assert_grpc_error(
        result,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_at_future_revision_fails_future_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let revision = put(&mut client, "k", "v").await;

    let result = client
        .get("k", Some(GetOptions::new().with_revision(revision + 1)))
        .await;
    assert_grpc_error(
        result,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_carry_cluster_member_term_and_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let put_response = client.put("k", "v", None).await.expect("put");
    let put_header = put_response.header().expect("put header");
    let get_response = client.get("k", None).await.expect("get");
    let get_header = get_response.header().expect("get header");
    let status = client.status().await.expect("status");
    let members = client.member_list().await.expect("member list");

    assert_ne!(put_header.cluster_id(), 0);
    assert_ne!(put_header.member_id(), 0);
    assert!(put_header.raft_term() > 0);
    assert_eq!(put_header.revision(), 2);
    for header in [get_header, status.header().expect("status header")] {
        assert_eq!(header.cluster_id(), put_header.cluster_id());
        assert_eq!(header.member_id(), put_header.member_id());
        assert_eq!(header.raft_term(), put_header.raft_term());
        assert_eq!(header.revision(), 2);
    }
    assert_eq!(
        status.leader(),
        put_header.member_id(),
        "the only member leads"
    );
    let ids: Vec<u64> = members.members().iter().map(|m| m.id()).collect();
    assert_eq!(ids, [put_header.member_id()]);
}
