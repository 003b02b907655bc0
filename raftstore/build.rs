//! Compiles the etcd wire protos and k3rs's own records with protox (no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/kv.proto",
        "proto/rpc.proto",
        "proto/raft_cmd.proto",
        "proto/peer.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
