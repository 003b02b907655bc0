//! `list-paginated`: one operation is a full list of the preloaded keyspace the way
//! kube-apiserver lists a resource: pages of [`PAGE`] keys, the first at the current revision
//! and the rest at that same revision, each starting after the previous page's last key.

use etcd_api::pb::etcdserverpb::kv_client::KvClient;
use etcd_api::pb::etcdserverpb::RangeRequest;
use raftstore::mvcc::tree_index::prefix_end;
use tonic::transport::Channel;

use crate::{BoxedOp, KEYSPACE, KEY_PREFIX};

/// Keys per page (kube-apiserver's default chunk size is 500).
const PAGE: i64 = 500;

pub fn list_op(mut client: KvClient<Channel>, _n: usize) -> BoxedOp {
    Box::pin(async move {
        let range_end = prefix_end(KEY_PREFIX.as_bytes());
        let mut key = KEY_PREFIX.as_bytes().to_vec();
        let mut revision = 0;
        let mut listed = 0;
        loop {
            let page = client
                .range(RangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    limit: PAGE,
                    revision,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if revision == 0 {
                revision = page.header.as_ref().map_or(0, |header| header.revision);
            }
            listed += page.kvs.len();
            match page.kvs.last() {
                Some(last) if page.more => {
                    key = last.key.clone();
                    key.push(0);
                }
                _ => break,
            }
        }
        if listed != KEYSPACE {
            return Err(tonic::Status::data_loss(format!(
                "a paginated list returned {listed} keys, not the {KEYSPACE} preloaded"
            )));
        }
        Ok(())
    })
}
