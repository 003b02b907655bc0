#!/usr/bin/env bash
# Runs the same etcd v3 load against real etcd (Debian's etcd-server 3.4) and k3rs, single
# member, same machine, same disk, fsync on, same heartbeat/election settings, one after the
# other, and prints each test's figures and the k3rs/etcd ratios, plus idle RSS, start-up to a
# healthy member, the stripped binary size and the disk's fsync floor.
#   scripts/bench-compare.sh [--ops N]
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=10000
if [[ "${1:-}" == "--ops" ]]; then OPS="$2"; fi
scripts/setup.sh
command -v etcd >/dev/null || { echo "installing etcd-server for the comparison"; sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd=sudo; $sudo_cmd apt-get install -y etcd-server >/dev/null; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/k3rs-target}"
cargo build --release --workspace
BIN="$CARGO_TARGET_DIR/release"
WORK=/var/tmp/k3rs-bench
rm -rf "$WORK" && mkdir -p "$WORK"
RESULTS="$WORK/results.jsonl"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Starts a member ($1 = label, rest = command), waits for a healthy endpoint, records figures,
# runs the load, stops it.
run_member() {
  local label=$1; shift
  local started=$(date +%s.%N)
  "$@" > "$WORK/$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do
    if ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:23790 --dial-timeout=100ms --command-timeout=300ms endpoint health >/dev/null 2>&1; then break; fi
    sleep 0.01
  done
  local healthy=$(date +%s.%N)
  sleep 1
  local idle=$(rss_kib $pid)
  "$BIN/k3rs-bench" --endpoint http://127.0.0.1:23790 --ops "$OPS" --label "$label" | tee -a "$WORK/$label.out"
  local loaded=$(rss_kib $pid)
  kill -TERM $pid; wait $pid || true
  python3 -c "print('JSON {\"label\":\"$label\",\"test\":\"startup\",\"startup_ms\":%.0f,\"idle_rss_kib\":$idle,\"rss_after_load_kib\":$loaded}' % (($healthy-$started)*1000))" | tee -a "$WORK/$label.out"
  rm -rf "$WORK/data-$label"
}

run_member etcd etcd --name bench --data-dir "$WORK/data-etcd" \
  --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
  --initial-cluster bench=http://127.0.0.1:23800
run_member k3rs "$BIN/k3rs" etcd --name bench --data-dir "$WORK/data-k3rs" \
  --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
  --initial-cluster bench=http://127.0.0.1:23800

strip -o "$WORK/k3rs.stripped" "$BIN/k3rs"
python3 - "$WORK" <<'PY'
import json, os, sys, time
work = sys.argv[1]
rows = {}
for label in ("etcd", "k3rs"):
    for line in open(os.path.join(work, label + ".out")):
        if line.startswith("JSON "):
            record = json.loads(line[5:])
            rows[(label, record["test"])] = record
# The disk's floor for a durable write: 4 KiB write + fsync.
path = os.path.join(work, "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
start = time.perf_counter()
for _ in range(200):
    os.write(fd, b"x" * 4096)
    os.fsync(fd)
fsync_us = (time.perf_counter() - start) / 200 * 1e6
os.close(fd)
print("\nk3rs / etcd 3.4 (same machine, same run):")
print(f"{'test':<14} {'etcd ops/s':>11} {'k3rs ops/s':>11} {'ratio':>6}   {'p50 ratio':>9} {'p99 ratio':>9}")
for test in ("put-seq", "put-16", "put-64", "range-lin-16", "range-ser-16", "txn-16"):
    e, k = rows.get(("etcd", test)), rows.get(("k3rs", test))
    if not e or not k:
        continue
    ratio = lambda field: k[field] / e[field] if e[field] else float("nan")
    print(f"{test:<14} {e['ops_per_second']:>11.0f} {k['ops_per_second']:>11.0f} {ratio('ops_per_second'):>6.2f}   {ratio('p50_us'):>9.2f} {ratio('p99_us'):>9.2f}")
e, k = rows[("etcd", "startup")], rows[("k3rs", "startup")]
print(f"start-up to healthy: etcd {e['startup_ms']} ms, k3rs {k['startup_ms']} ms ({k['startup_ms']/e['startup_ms']:.2f})")
print(f"idle RSS: etcd {e['idle_rss_kib']} KiB, k3rs {k['idle_rss_kib']} KiB ({k['idle_rss_kib']/e['idle_rss_kib']:.2f})")
print(f"RSS after the load: etcd {e['rss_after_load_kib']} KiB, k3rs {k['rss_after_load_kib']} KiB ({k['rss_after_load_kib']/e['rss_after_load_kib']:.2f})")
print(f"k3rs stripped binary: {os.path.getsize(os.path.join(work, 'k3rs.stripped')) / 1e6:.1f} MB")
print(f"disk fsync floor (4 KiB write + fsync): {fsync_us:.0f} µs")
PY
