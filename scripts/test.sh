#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, unit, property and
# integration tests (the integration tests start real `k3rs` processes on 127.0.0.1 and drive
# them with the etcd-client crate and Debian's etcdctl; the S3 snapshot tests start a real
# S3-compatible server, s3s-fs, installed here when missing; the Python client test uses the
# `kubernetes` package from PyPI in a venv under $K3RS_TOOLS_DIR, created when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/k3rs-target}"
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
  echo "k3rs test: installing s3s-fs (the S3 server of the snapshot tests)" >&2
  cargo install s3s-fs@0.14.1 --locked --features binary --target-dir "$CARGO_TARGET_DIR/tools"
fi
tools="${K3RS_TOOLS_DIR:-/var/tmp/k3rs-tools}"
if ! "$tools/kube-py/bin/python" -c 'import kubernetes' >/dev/null 2>&1; then
  echo "k3rs test: installing the Python kubernetes client in $tools/kube-py" >&2
  mkdir -p "$tools"
  python3 -m venv "$tools/kube-py"
  "$tools/kube-py/bin/python" -m pip install --quiet --disable-pip-version-check kubernetes
fi
export K3RS_TEST_PYTHON="$tools/kube-py/bin/python"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
