#!/usr/bin/env bash
# Runs every target of control/fuzz for $1 seconds each (default 10),
# starting from its committed seed corpus, on the stable toolchain (see
# dataplane/fuzz/run.sh and dataplane/fuzz/README.md for RUSTC_BOOTSTRAP).
#
#   control/fuzz/run.sh [SECONDS] [TARGET...]
#
# Runs every target even when one fails, then exits non-zero naming the
# targets that crashed (each crash input is saved under
# control/fuzz/artifacts/TARGET/) or did not build.
set -euo pipefail

seconds="${1:-10}"
shift || true
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(pipeline journal manifest selector config tls_engine)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

cd "$fuzz_dir/.."
# One build for every target, before the clock of the first starts.
RUSTC_BOOTSTRAP=1 cargo fuzz build

# The journal target's state directories (one per process) go here.
CAUSEWAY_FUZZ_DIR="$(mktemp -d /dev/shm/causeway-fuzz.XXXXXX 2>/dev/null || mktemp -d)"
export CAUSEWAY_FUZZ_DIR
trap 'rm -rf "$CAUSEWAY_FUZZ_DIR"' EXIT

failed=()
for t in "${targets[@]}"; do
    # New inputs go to corpus/ (git-ignored); seeds/ is only read.
    mkdir -p "$fuzz_dir/corpus/$t"
    echo "== fuzz $t for $seconds s"
    # -timeout: an input that takes longer than 10 s is a hang, a failure.
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" \
        "$fuzz_dir/corpus/$t" "$fuzz_dir/seeds/$t" \
        -- -max_total_time="$seconds" -timeout=10 -print_final_stats=1; then
        failed+=("$t")
    fi
done
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz targets that failed: ${failed[*]} (inputs in $fuzz_dir/artifacts/)" >&2
    exit 1
fi
