#!/usr/bin/env bash
# Builds k3rs (release) and runs a single-node server with the embedded store:
#   scripts/server.sh [extra `k3rs server` flags]
# The etcd client port is https://127.0.0.1:2379 with mTLS: see the README for the etcdctl
# flags that use the client certificate under <data-dir>/server/tls/etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/k3rs-target}"
cargo build --release -p controlplane
exec "$CARGO_TARGET_DIR/release/k3rs" server --cluster-init "$@"
