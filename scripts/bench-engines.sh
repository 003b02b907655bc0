#!/usr/bin/env bash
# The storage engines side by side: k3rs built with RocksDB (the default) and with sled, each in
# its own target dir (timed; a clean build unless --reuse-build), then for each engine one
# `k3rs etcd` member on loopback: idle RSS, put-64 and range-lin-16 (k3rs-bench), N puts in
# transactions of 128 (k3rs-fill), RSS after them, the data dir's size on disk, and the
# stripped binary size.
#   scripts/bench-engines.sh [--keys N] [--ops N] [--reuse-build]
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=1000000
OPS=20000
CLEAN=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --keys) KEYS="$2"; shift 2 ;;
    --ops) OPS="$2"; shift 2 ;;
    --reuse-build) CLEAN=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
scripts/setup.sh
WORK=/var/tmp/k3rs-bench-engines
mkdir -p "$WORK"
CLIENT=http://127.0.0.1:33791
PEER=http://127.0.0.1:33801

# build ENGINE CARGO_FLAGS...: release build of k3rs (and the load tools) in its own target dir.
build() {
  local engine=$1; shift
  local target=/var/tmp/k3rs-engine-$engine
  [[ $CLEAN -eq 1 ]] && rm -rf "$target"
  local started=$(date +%s)
  CARGO_TARGET_DIR=$target cargo build --release -q -p controlplane "$@"
  local ended=$(date +%s)
  echo "RESULT $engine build_s=$((ended - started)) clean=$CLEAN"
  strip -o "$WORK/k3rs-$engine" "$target/release/k3rs"
  echo "RESULT $engine stripped_binary_bytes=$(stat -c %s "$WORK/k3rs-$engine")"
}

healthy() {
  ETCDCTL_API=3 etcdctl --endpoints="$CLIENT" --dial-timeout=100ms --command-timeout=300ms \
    endpoint health >/dev/null 2>&1
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# measure ENGINE: one member of the ENGINE build under load.
measure() {
  local engine=$1 data="$WORK/data-$1"
  rm -rf "$data"
  "$WORK/k3rs-$engine" etcd --name m0 --data-dir "$data" \
    --listen-client-urls "$CLIENT" --advertise-client-urls "$CLIENT" \
    --listen-peer-urls "$PEER" --initial-advertise-peer-urls "$PEER" \
    --initial-cluster "m0=$PEER" > "$WORK/$engine.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 3000); do healthy && break; sleep 0.01; done
  sleep 1
  echo "RESULT $engine idle_rss_kib=$(rss_kib $pid)"
  "$TOOLS/k3rs-bench" --endpoint "$CLIENT" --ops "$OPS" --max-seconds 30 --label "$engine" \
    put-64 range-lin-16 | grep -v '^JSON'
  "$TOOLS/k3rs-fill" --endpoint "$CLIENT" --keys "$KEYS" | sed "s/^/RESULT $engine fill: /"
  echo "RESULT $engine rss_after_fill_kib=$(rss_kib $pid)"
  kill -TERM "$pid"; wait "$pid" || true
  echo "RESULT $engine data_dir_bytes=$(du -sb "$data" | cut -f1) (after $KEYS keys, stopped)"
  rm -rf "$data"
}

build rocksdb
build sled --no-default-features --features sled
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/k3rs-target}"
cargo build --release -q --workspace
TOOLS="$CARGO_TARGET_DIR/release"
measure rocksdb
measure sled
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m)"
