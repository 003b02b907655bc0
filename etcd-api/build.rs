//! Generates the etcd v3 gRPC services (server and client) from raftstore's protos with protox
//! (no system `protoc`). Messages are not generated here: `extern_path` points them at
//! raftstore's prost types, so one set of message types serves the store and the API.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../raftstore/proto";
    for file in ["rpc.proto", "kv.proto", "peer.proto", "raft_cmd.proto"] {
        println!("cargo:rerun-if-changed={proto_dir}/{file}");
    }
    let descriptors = protox::compile(
        [
            format!("{proto_dir}/rpc.proto"),
            format!("{proto_dir}/peer.proto"),
        ],
        [proto_dir],
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".mvccpb", "::raftstore::pb::mvccpb")
        .extern_path(".etcdserverpb", "::raftstore::pb::etcdserverpb")
        .extern_path(".k3rspb", "::raftstore::pb::k3rspb")
        .compile_fds(descriptors)?;
    Ok(())
}
