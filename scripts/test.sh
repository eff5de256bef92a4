#!/usr/bin/env bash
# The whole causeway test suite, as CI runs it: formatting, lints, unit and
# property tests, end-to-end tests on network-namespace labs, and a short
# fuzz run of every fuzz target. Everything is built once, in release.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sweep() {
  # Remove labs a failed or killed test may have left (names start with t).
  local cw=target/release/causeway
  [ -x "$cw" ] || return 0
  for d in /run/causeway/lab/t*; do
    [ -d "$d" ] && "$cw" lab down --name "$(basename "$d")" || true
  done
}
trap sweep EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --release -- -D warnings

step "build (release)"
cargo build --workspace --release --bins

step "tests: unit, property and end-to-end"
# Two test threads: the end-to-end tests each make their own lab.
cargo test --workspace --release -- --test-threads=2

step "ansible: lint and the service units"
./scripts/ansible-check.sh

step "ansible: a real run over SSH against two edge nodes, and a rolling upgrade"
./scripts/ansible-lab.sh

# About 80 s of fuzzing in all: the packet parser for FUZZ_SECONDS, then
# each target of control/fuzz (the pipeline with policy and conntrack, the
# journal and snapshot reader, manifests, selectors, the configuration
# file, the TLS engine) for FUZZ_TARGET_SECONDS.
step "fuzz: the packet parser for ${FUZZ_SECONDS:-20} s"
dataplane/fuzz/run.sh "${FUZZ_SECONDS:-20}"

step "fuzz: every other target for ${FUZZ_TARGET_SECONDS:-10} s each"
control/fuzz/run.sh "${FUZZ_TARGET_SECONDS:-10}"

step "no lab left behind"
left=$(ip netns list | awk '{print $1}' | grep -E '^t[a-z]+[0-9]+x[0-9]+-' || true)
[ -z "$left" ] || { echo "namespaces left behind: $left" >&2; exit 1; }
echo "none"
