//! Requests the real `k3rs` binary must refuse, with etcd's gRPC codes and exact messages, and
//! keep serving afterwards.

mod common;

use common::{assert_grpc_error, grpc_status, TestServer};
use etcd_client::{Client, DeleteOptions, PutOptions, Txn, TxnOp};
use tonic::Code;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// A put then a get of a fresh key still work.
async fn assert_still_serves(client: &mut Client) {
    let put = client
        .put("after-refusal", "ok", None)
        .await
        .expect("put after a refused request");
    let revision = put.header().expect("header").revision();
    let got = client
        .get("after-refusal", None)
        .await
        .expect("get after a refused request");
    assert_eq!(got.kvs().len(), 1);
    assert_eq!(got.kvs()[0].value(), b"ok");
    assert_eq!(got.kvs()[0].mod_revision(), revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_empty_key_fails_key_not_provided() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let result = client.put("", "value", None).await;
    assert_grpc_error(
        result,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_still_serves(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_empty_key_fails_key_not_provided() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let result = client.get("", None).await;
    assert_grpc_error(
        result,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_still_serves(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_with_empty_key_fails_key_not_provided() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let result = client.delete("", None).await;
    assert_grpc_error(
        result,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_still_serves(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_just_under_the_request_limit_succeeds() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let value = vec![b'x'; 1400 * KIB];

    client
        .put("big", value.clone(), None)
        .await
        .expect("a 1.37 MiB value is within 1.5 MiB");
    let got = client.get("big", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), value.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_over_the_request_limit_fails_request_too_large() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let value = vec![b'x'; 1792 * KIB]; // 1.75 MiB: over 1.5 MiB, under the 2 MiB gRPC limit

    let result = client.put("too-big", value, None).await;
    assert_grpc_error(
        result,
        Code::InvalidArgument,
        "etcdserver: request is too large",
    );
    assert!(
        client
            .get("too-big", None)
            .await
            .expect("get")
            .kvs()
            .is_empty(),
        "nothing written"
    );
    assert_still_serves(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_over_the_grpc_receive_limit_fails_resource_exhausted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let value = vec![b'x'; 2 * MIB + 512 * KIB];

    let status = grpc_status(client.put("too-big", value, None).await);
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "unexpected status: {status:?}"
    );
    assert!(
        client
            .get("too-big", None)
            .await
            .expect("get")
            .kvs()
            .is_empty(),
        "nothing written"
    );
    assert_still_serves(&mut client).await;
}

fn txn_of_puts(count: usize) -> Txn {
    let ops: Vec<TxnOp> = (0..count)
        .map(|i| TxnOp::put(format!("op/{i:03}"), "v", None))
        .collect();
    Txn::new().and_then(ops)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_of_128_ops_succeeds() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let response = client
        .txn(txn_of_puts(128))
        .await
        .expect("128 ops is the limit, allowed");
    assert!(response.succeeded());
    assert_eq!(response.op_responses().len(), 128);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_of_129_ops_fails_too_many_operations() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let result = client.txn(txn_of_puts(129)).await;
    assert_grpc_error(
        result,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    assert!(
        client
            .get("op/000", None)
            .await
            .expect("get")
            .kvs()
            .is_empty(),
        "nothing written"
    );
    assert_still_serves(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_putting_one_key_twice_fails_duplicate_key() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let txn = Txn::new().and_then([TxnOp::put("dup", "1", None), TxnOp::put("dup", "2", None)]);
    let result = client.txn(txn).await;
    assert_grpc_error(
        result,
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    assert!(
        client.get("dup", None).await.expect("get").kvs().is_empty(),
        "nothing written"
    );
    assert_still_serves(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_putting_a_key_inside_a_deleted_range_fails_duplicate_key() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let txn = Txn::new().and_then([
        TxnOp::delete("range/", Some(DeleteOptions::new().with_prefix())),
        TxnOp::put("range/x", "1", None),
    ]);
    let result = client.txn(txn).await;
    assert_grpc_error(
        result,
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    assert_still_serves(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_putting_a_key_also_put_by_a_nested_txn_fails_duplicate_key() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let nested = Txn::new().and_then([TxnOp::put("dup", "inner", None)]);
    let txn = Txn::new().and_then([TxnOp::put("dup", "outer", None), TxnOp::txn(nested)]);
    let result = client.txn(txn).await;
    assert_grpc_error(
        result,
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    assert!(
        client.get("dup", None).await.expect("get").kvs().is_empty(),
        "nothing written"
    );
    assert_still_serves(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_putting_one_key_in_both_branches_is_allowed() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let txn = Txn::new()
        .and_then([TxnOp::put("k", "then", None)])
        .or_else([TxnOp::put("k", "else", None)]);
    let response = client
        .txn(txn)
        .await
        .expect("only one branch runs: not a duplicate");
    assert!(response.succeeded());
    let got = client.get("k", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"then");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_unknown_lease_fails_lease_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let result = client
        .put(
            "leased",
            "v",
            Some(PutOptions::new().with_lease(0x1234_5678)),
        )
        .await;
    assert_grpc_error(
        result,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    assert!(
        client
            .get("leased", None)
            .await
            .expect("get")
            .kvs()
            .is_empty(),
        "nothing written"
    );
    assert_still_serves(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_do_not_bump_the_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let before = client
        .put("k", "v", None)
        .await
        .expect("put")
        .header()
        .expect("h")
        .revision();

    let _ = client.put("", "v", None).await;
    let _ = client
        .put("k", "v", Some(PutOptions::new().with_lease(0x1234_5678)))
        .await;
    let _ = client.txn(txn_of_puts(129)).await;
    let _ = client.put("k", vec![b'x'; 1792 * KIB], None).await;

    let after = client
        .put("k", "v2", None)
        .await
        .expect("put")
        .header()
        .expect("h")
        .revision();
    assert_eq!(after, before + 1, "no refused request took a revision");
}
