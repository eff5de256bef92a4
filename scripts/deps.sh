#!/usr/bin/env bash
# Installs what causeway needs to build and to run its lab, idempotently.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "causeway: run as root (the lab makes network namespaces and loads XDP programs)" >&2; exit 1; }

# clang/llvm/libbpf-dev: the XDP program; libelf-dev, zlib1g-dev, m4, pkg-config:
# libxdp and libbpf, built from source by xsk-rs; iproute2, ethtool: the lab;
# iputils-ping, iperf3, python3: the demo and the tests; nftables: the perf peer;
# openssl: RSA keys and s_client for causeway-tls's tests; postgresql (psql and
# the server) and redis-server (with redis-cli): the gateway-to-gateway tests;
# nginx with libnginx-mod-stream (its L4 proxy) and haproxy: the perf harness's
# peers in `causeway-perf tls` (util-linux, for taskset and prlimit, is essential);
# python3-venv: the control API's tests drive it from Python (grpcio, below);
# protobuf-compiler: the etcd-client crate compiles etcd's protos with protoc;
# etcd-server and etcd-client (etcdctl): Calico's etcdv3 datastore, which the
# sync's tests and the demo start themselves (Debian's etcd 3.4).
PACKAGES=(build-essential clang llvm libbpf-dev linux-libc-dev libelf-dev zlib1g-dev m4 pkg-config
          iproute2 ethtool iputils-ping iperf3 nftables python3 python3-venv curl ca-certificates
          procps openssl postgresql redis-server nginx libnginx-mod-stream haproxy
          protobuf-compiler etcd-server etcd-client
          util-linux openssh-server openssh-client systemd)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "causeway: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# kubectl: the Kubernetes API double's tests drive it (these machines have
# one; elsewhere Debian's kubernetes-client provides it).
if ! command -v kubectl >/dev/null 2>&1; then
  echo "causeway: installing kubernetes-client (kubectl)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi

# Rust: the toolchain on PATH, or rustup's default one.
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# A client of the control API that is not ours: Python's grpcio, its code
# generated from control/proto by grpcio-tools, reflection and health
# clients, grpcio-status for the error details, and prometheus_client's
# parser for the metrics endpoint. In a venv of Debian's python3, so the
# tests do not depend on whichever python3 is first on PATH.
CAUSEWAY_PYENV=/opt/causeway/pyenv
PY_PACKAGES=(grpcio grpcio-tools grpcio-reflection grpcio-health-checking grpcio-status prometheus-client)
if ! "$CAUSEWAY_PYENV/bin/python" -c "import grpc, grpc_tools, grpc_reflection, grpc_health, grpc_status, prometheus_client" 2>/dev/null; then
  echo "causeway: installing ${PY_PACKAGES[*]} into $CAUSEWAY_PYENV"
  /usr/bin/python3 -m venv "$CAUSEWAY_PYENV"
  "$CAUSEWAY_PYENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
fi
export CAUSEWAY_PYENV
