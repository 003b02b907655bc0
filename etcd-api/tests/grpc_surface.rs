//! The etcd v3 gRPC surface as a client sees it: a single in-memory member served over real TCP
//! on 127.0.0.1 and driven with the generated tonic clients.

use std::sync::Arc;

use etcd_api::pb::etcdserverpb::cluster_client::ClusterClient;
use etcd_api::pb::etcdserverpb::kv_client::KvClient;
use etcd_api::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use etcd_api::pb::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, CompactionRequest, DefragmentRequest,
    MemberAddRequest, MemberListRequest, PutRequest, RangeRequest, ResponseHeader, StatusRequest,
};
use etcd_api::{serve, Net, ServeError, TokioNet};
use raftstore::engine::memory::MemoryEngine;
use raftstore::node::{NoPeers, NodeConfig, RunningNode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A member on the memory engine, served on an ephemeral port, and a channel to it.
struct ServedMember {
    running: RunningNode,
    channel: Channel,
    stop_serving: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), ServeError>>>,
}

impl ServedMember {
    async fn start() -> Self {
        let running = raftstore::node::start(
            Arc::new(MemoryEngine::new()),
            NodeConfig::default(),
            Arc::new(NoPeers),
        )
        .expect("a fresh in-memory member starts");
        running
            .ready()
            .await
            .expect("a single member elects itself and becomes ready");

        let incoming = TokioNet
            .listen("127.0.0.1:0".parse().expect("literal address"))
            .await
            .expect("bind an ephemeral port");
        let addr = incoming.local_addr().expect("bound address");
        let (stop_serving, stopped) = oneshot::channel::<()>();
        let connector = etcd_api::connector(etcd_api::TokioNet);
        let server = tokio::spawn(serve(
            running.handle.clone(),
            connector,
            Default::default(),
            incoming,
            async {
                let _ = stopped.await;
            },
        ));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("valid endpoint uri")
            .connect()
            .await
            .expect("connect to the served member");
        Self {
            running,
            channel,
            stop_serving: Some(stop_serving),
            server: Some(server),
        }
    }

    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }

    fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel.clone())
    }

    fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }

    /// Signals shutdown and returns what `serve` returned.
    async fn stop(mut self) -> Result<(), ServeError> {
        drop(self.channel);
        if let Some(stop) = self.stop_serving.take() {
            let _ = stop.send(());
        }
        let server = self.server.take().expect("server task is taken only here");
        let result = server.await.expect("server task does not panic");
        self.running.handle.shutdown();
        result
    }
}

fn put(key: &str, value: &[u8]) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn header_of(header: Option<ResponseHeader>) -> ResponseHeader {
    header.expect("every response carries a header")
}

#[tokio::test]
async fn put_then_range_returns_the_value() {
    let member = ServedMember::start().await;
    let mut kv = member.kv();
    kv.put(put("greeting", b"hello"))
        .await
        .expect("put succeeds");

    let response = kv
        .range(get("greeting"))
        .await
        .expect("range succeeds")
        .into_inner();

    assert_eq!(response.count, 1);
    assert_eq!(response.kvs.len(), 1);
    assert_eq!(response.kvs[0].key, b"greeting");
    assert_eq!(response.kvs[0].value, b"hello");
}

#[tokio::test]
async fn responses_carry_cluster_member_revision_and_term() {
    let member = ServedMember::start().await;
    let mut kv = member.kv();
    let status = member.running.handle.status();

    let put_header = header_of(
        kv.put(put("k", b"v"))
            .await
            .expect("put")
            .into_inner()
            .header,
    );
    let range_header = header_of(kv.range(get("k")).await.expect("range").into_inner().header);

    for header in [&put_header, &range_header] {
        assert_eq!(header.cluster_id, member.running.handle.cluster_id());
        assert_eq!(header.member_id, member.running.handle.member_id());
        assert_ne!(header.cluster_id, 0);
        assert_ne!(header.member_id, 0);
        assert_eq!(header.raft_term, status.term);
        assert!(header.raft_term >= 1, "a leader was elected in a term ≥ 1");
    }
    // An empty store is at revision 1; the first write makes it 2, and a read sees it.
    assert_eq!(put_header.revision, 2);
    assert_eq!(range_header.revision, 2);
}

#[tokio::test]
async fn range_with_empty_key_is_invalid_argument() {
    let member = ServedMember::start().await;

    let status = member
        .kv()
        .range(RangeRequest::default())
        .await
        .expect_err("empty key fails");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "etcdserver: key is not provided");
}

#[tokio::test]
async fn range_below_compacted_revision_is_out_of_range() {
    let member = ServedMember::start().await;
    let mut kv = member.kv();
    for value in [b"1", b"2", b"3"] {
        kv.put(put("k", value)).await.expect("put");
    }
    kv.compact(CompactionRequest {
        revision: 3,
        physical: true,
    })
    .await
    .expect("compact");

    let status = kv
        .range(RangeRequest {
            revision: 2,
            ..get("k")
        })
        .await
        .expect_err("a compacted revision cannot be read");

    assert_eq!(status.code(), Code::OutOfRange);
    assert_eq!(
        status.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
}

#[tokio::test]
async fn range_above_current_revision_is_out_of_range() {
    let member = ServedMember::start().await;
    let mut kv = member.kv();
    let current = header_of(
        kv.put(put("k", b"v"))
            .await
            .expect("put")
            .into_inner()
            .header,
    );

    let status = kv
        .range(RangeRequest {
            revision: current.revision + 1,
            ..get("k")
        })
        .await
        .expect_err("a future revision cannot be read");

    assert_eq!(status.code(), Code::OutOfRange);
    assert_eq!(
        status.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );
}

#[tokio::test]
async fn put_above_max_request_bytes_is_request_too_large() {
    let member = ServedMember::start().await;
    let max_request_bytes = member.running.handle.config().max_request_bytes;
    // Over etcd's request limit, yet under the gRPC receive limit 512 KiB above it.
    let value = vec![b'x'; max_request_bytes + 1024];

    let status = member
        .kv()
        .put(put("big", &value))
        .await
        .expect_err("too large a put fails");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "etcdserver: request is too large");
}

#[tokio::test]
async fn message_above_grpc_receive_limit_is_refused_and_server_keeps_serving() {
    let member = ServedMember::start().await;
    let mut kv = member.kv();
    let two_mib = vec![b'x'; 2 * 1024 * 1024];

    let status = kv
        .put(put("huge", &two_mib))
        .await
        .expect_err("a 2 MiB message is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("grpc: received message larger than max ("),
        "{}",
        status.message()
    );

    kv.put(put("small", b"after"))
        .await
        .expect("the same connection still serves");
    let response = member
        .kv()
        .range(get("small"))
        .await
        .expect("range")
        .into_inner();
    assert_eq!(response.kvs.len(), 1);
    assert_eq!(response.kvs[0].value, b"after");
}

/// `major.minor.patch` of a plain semver string.
fn parse_semver(version: &str) -> (u64, u64, u64) {
    let parts: Vec<u64> = version
        .split('.')
        .map(|part| {
            part.parse()
                .unwrap_or_else(|_| panic!("{version:?} is not semver"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "{version:?} is not major.minor.patch");
    (parts[0], parts[1], parts[2])
}

#[tokio::test]
async fn status_version_is_semver_kube_apiserver_accepts_for_progress_requests() {
    let member = ServedMember::start().await;

    let status = member
        .maintenance()
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();

    let version = parse_semver(&status.version);
    assert!(version >= (3, 5, 13), "{} is below 3.5.13", status.version);
    assert!(
        status.errors.is_empty(),
        "errors make etcdctl report unhealthy: {:?}",
        status.errors
    );
}

#[tokio::test]
async fn status_reports_this_member_as_leader_with_its_raft_indexes() {
    let member = ServedMember::start().await;
    member.kv().put(put("k", b"v")).await.expect("put");

    let status = member
        .maintenance()
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();

    let header = header_of(status.header);
    assert_eq!(status.leader, header.member_id);
    assert_eq!(status.raft_term, header.raft_term);
    assert!(status.raft_applied_index >= 1, "the put was applied");
    assert!(
        status.raft_index >= status.raft_applied_index,
        "nothing is applied before commit"
    );
    assert_eq!(
        header.revision, 2,
        "the header carries the store's current revision"
    );
    assert!(status.db_size > 0, "the store holds data");
    assert_eq!(status.db_size_quota, 2 * 1024 * 1024 * 1024);
}

#[tokio::test]
async fn alarm_get_lists_no_alarms() {
    let member = ServedMember::start().await;

    let response = member
        .maintenance()
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            ..Default::default()
        })
        .await
        .expect("alarm get")
        .into_inner();

    assert!(response.alarms.is_empty());
    assert_eq!(
        header_of(response.header).member_id,
        member.running.handle.member_id()
    );
}

#[tokio::test]
async fn defragment_answers_with_a_header() {
    let member = ServedMember::start().await;

    let response = member
        .maintenance()
        .defragment(DefragmentRequest {})
        .await
        .expect("defragment");

    assert_eq!(
        header_of(response.into_inner().header).member_id,
        member.running.handle.member_id()
    );
}

#[tokio::test]
async fn member_list_has_this_member_only() {
    let member = ServedMember::start().await;

    let response = member
        .cluster()
        .member_list(MemberListRequest {
            linearizable: false,
        })
        .await
        .expect("member list")
        .into_inner();

    let header = header_of(response.header);
    assert_eq!(response.members.len(), 1);
    assert_eq!(response.members[0].id, header.member_id);
}

#[tokio::test]
async fn linearizable_member_list_waits_for_a_read_barrier_and_answers() {
    let member = ServedMember::start().await;

    let response = member
        .cluster()
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("linearizable member list")
        .into_inner();

    assert_eq!(response.members.len(), 1);
    assert_eq!(response.members[0].id, member.running.handle.member_id());
}

#[tokio::test]
async fn member_add_without_valid_peer_urls_is_refused_with_etcds_error() {
    let member = ServedMember::start().await;

    let status = member
        .cluster()
        .member_add(MemberAddRequest {
            peer_ur_ls: vec!["not a url".into()],
            ..Default::default()
        })
        .await
        .expect_err("invalid URLs");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "etcdserver: given member URLs are invalid"
    );
    let listed = member
        .cluster()
        .member_list(MemberListRequest::default())
        .await
        .expect("member list")
        .into_inner();
    assert_eq!(listed.members.len(), 1, "nothing was added");
}

#[tokio::test]
async fn health_check_reports_server_and_kv_serving() {
    let member = ServedMember::start().await;
    let mut health = HealthClient::new(member.channel.clone());

    for service in ["", "etcdserverpb.KV"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("health check of {service:?}: {status}"))
            .into_inner();
        assert_eq!(
            response.status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }
}

#[tokio::test]
async fn serve_returns_ok_after_shutdown_signal() {
    let member = ServedMember::start().await;
    member.kv().put(put("k", b"v")).await.expect("put");

    member.stop().await.expect("serve ends cleanly on shutdown");
}
