#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for a bounded time (default 60 s each), starting from the
# committed seeds in fuzz/seeds/<target>/. Not part of CI (the instrumented build of burn alone is
# ~30 CPU-minutes). Usage: scripts/fuzz.sh [seconds] [target…]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"; shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors config tokenizer requests dataset npz)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes nightly-only flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${PMEDIT_FUZZ_TARGET_DIR:-$HOME/.cache/pmedit-fuzz-target}"
mkdir -p fuzz/corpus fuzz/artifacts
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== $t ($secs s)"
  cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 2>&1 | \
    grep -E "^(stat::number_of_executed_units|stat::peak_rss|==|INFO: Running|.*(panicked|crash|ERROR))" || true
done
