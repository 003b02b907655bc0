#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, unit, property and
# integration tests (the integration tests start real `k3rs` processes on 127.0.0.1 and drive
# them with the etcd-client crate and Debian's etcdctl; the S3 snapshot tests start a real
# S3-compatible server, s3s-fs, installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/k3rs-target}"
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
  echo "k3rs test: installing s3s-fs (the S3 server of the snapshot tests)" >&2
  cargo install s3s-fs@0.14.1 --locked --features binary --target-dir "$CARGO_TARGET_DIR/tools"
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
