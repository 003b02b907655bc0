#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, unit, property and
# integration tests (the integration tests start real `k3rs` processes on 127.0.0.1 and drive
# them with the etcd-client crate and Debian's etcdctl).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/k3rs-target}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
