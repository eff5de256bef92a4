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
# peers in `causeway-perf tls` (util-linux, for taskset and prlimit, is essential).
PACKAGES=(build-essential clang llvm libbpf-dev linux-libc-dev libelf-dev zlib1g-dev m4 pkg-config
          iproute2 ethtool iputils-ping iperf3 nftables python3 curl ca-certificates procps openssl
          postgresql redis-server nginx libnginx-mod-stream haproxy)
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

# Rust: the toolchain on PATH, or rustup's default one.
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
  export PATH="$HOME/.cargo/bin:$PATH"
fi
