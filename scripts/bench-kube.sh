#!/usr/bin/env bash
# Kubernetes API list/watch latency of one `k3rs server` (release build, loopback, fsync on):
# builds, starts a single server in a scratch data dir, runs k3rs-kube-bench with the admin
# kubeconfig the server wrote (10,000 configmaps listed whole and in pages of 500; one
# configmap patched at a fixed rate while a watch reads it) and prints its table.
#   scripts/bench-kube.sh [k3rs-kube-bench flags, e.g. --runs 50 --watch-rate 100]
# K3RS_BENCH_WORK sets the scratch directory (default /var/tmp/k3rs-bench-kube; it is wiped).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/k3rs-target}"
cargo build --release --workspace
BIN="$CARGO_TARGET_DIR/release"
WORK="${K3RS_BENCH_WORK:-/var/tmp/k3rs-bench-kube}"
rm -rf "$WORK" && mkdir -p "$WORK"
# Ports apart from a k3rs or k3s already running on the machine.
HTTPS=16443
"$BIN/k3rs" server --cluster-init --data-dir "$WORK/data" --node-name bench \
  --node-ip 127.0.0.1 --bind-address 127.0.0.1 --https-listen-port "$HTTPS" \
  --etcd-client-port 12379 --etcd-peer-port 12380 --etcd-metrics-port 12381 \
  --etcd-disable-snapshots --write-kubeconfig "$WORK/k3rs.yaml" > "$WORK/server.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
KUBECONFIG_FILE="$WORK/data/server/cred/admin.kubeconfig"
ready=""
for _ in $(seq 1 600); do
  if [[ -f "$KUBECONFIG_FILE" ]] && kubectl --kubeconfig "$KUBECONFIG_FILE" --request-timeout=2s \
      get namespace kube-node-lease >/dev/null 2>&1; then
    ready=1; break
  fi
  kill -0 $pid 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
  sleep 0.1
done
[[ -n "$ready" ]] || { echo "k3rs did not serve the API within 60 s" >&2; tail -50 "$WORK/server.log"; exit 1; }
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
"$BIN/k3rs-kube-bench" --kubeconfig "$KUBECONFIG_FILE" "$@" | tee "$WORK/bench.out" | grep -v '^JSON '
