#!/usr/bin/env bash
# Runs the parse_frame fuzz target for $1 seconds (default 20), starting from
# the seed corpus of real frames, on the stable toolchain.
#
#   dataplane/fuzz/run.sh [SECONDS]
#
# Exits non-zero if the target crashes (the input is saved under
# dataplane/fuzz/artifacts/parse_frame/) or does not build.
set -euo pipefail

seconds="${1:-20}"
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

# New inputs go to corpus/ (git-ignored); seeds/ is only read.
mkdir -p "$fuzz_dir/corpus/parse_frame"

# cargo fuzz builds with -Zsanitizer=address, a nightly flag; no nightly
# toolchain can be installed here, and RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept it (stable ships the AddressSanitizer runtime for
# x86_64-unknown-linux-gnu).
cd "$fuzz_dir/.."
RUSTC_BOOTSTRAP=1 exec cargo fuzz run parse_frame \
    "$fuzz_dir/corpus/parse_frame" "$fuzz_dir/seeds/parse_frame" \
    -- -max_total_time="$seconds"
