#!/usr/bin/env bash
# Installs what building and testing k3rs needs on a fresh Debian/Ubuntu machine, if missing:
# libclang (RocksDB's bindings), a C++ compiler, etcdctl (the tests drive k3rs with it) and
# protoc (the etcd-client crate's build needs it; k3rs itself compiles its protos without it).
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

need=()
if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libclang\.so'; then
  need+=(libclang-dev)
fi
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
# The etcd-client crate (used by the integration tests) runs protoc in its build script.
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)

if [ ${#need[@]} -gt 0 ]; then
  echo "k3rs setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
