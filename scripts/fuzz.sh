#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for a bounded time (default 60 s each), starting from the
# committed seeds in fuzz/seeds/<target>/. Not part of CI (the instrumented build of burn alone is
# ~30 CPU-minutes). Usage: scripts/fuzz.sh [seconds] [target…]
#
# Builds the targets the way cargo-fuzz does (SanitizerCoverage flags, `--cfg fuzzing`, debug
# assertions and overflow checks, no sanitizer) but with plain cargo, so it needs neither
# cargo-fuzz nor the network: the crates come from the local cache (`--offline`) when they are
# there. Findings land in fuzz/artifacts/<target>/ (ignored by git).
#
# First, the `unsafe` CPU kernels (pmedit-sgemm's matrix product, pmedit-simd's vector kernels)
# run their own tests under AddressSanitizer — odd sizes, transposed and padded strides, exactly
# sized buffers — so an out-of-bounds read or write is a report, not a silent wrong value.
# PMEDIT_ASAN=skip leaves that out; PMEDIT_ASAN=only runs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"; shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors config tokenizer requests dataset npz stats index templates corpus model)
# The flags below are nightly-only; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${PMEDIT_FUZZ_TARGET_DIR:-$HOME/.cache/pmedit-fuzz-target}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
if [ "${PMEDIT_ASAN:-run}" != skip ]; then
  echo "== AddressSanitizer: pmedit-sgemm, pmedit-simd tests"
  # Its own target dir: the instrumented std-less build must not mix with the plain one.
  asan_log="$(mktemp)"
  asan_rc=0
  RUSTFLAGS="-Zsanitizer=address -Cdebug-assertions -Coverflow-checks" \
    CARGO_TARGET_DIR="$HOME/.cache/pmedit-asan-target" \
    cargo test --release --target "$triple" -p pmedit-sgemm -p pmedit-simd >"$asan_log" 2>&1 || asan_rc=$?
  grep -E "^(test |test result)|ERROR|AddressSanitizer|panicked" "$asan_log" || true
  if [ "$asan_rc" -ne 0 ]; then tail -40 "$asan_log"; echo "AddressSanitizer run failed"; exit 1; fi
  [ "${PMEDIT_ASAN:-run}" = only ] && exit 0
fi
flags=(-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks)
# Pin the same crate versions as the workspace (fuzz/ is its own workspace; its lock is ignored).
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock
offline=()
cargo metadata --offline --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null 2>&1 && offline=(--offline)
# An explicit --target keeps the instrumentation off build scripts and proc macros.
RUSTFLAGS="${flags[*]}" cargo build "${offline[@]}" --release --bins --target "$triple" \
  --manifest-path fuzz/Cargo.toml
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  echo "== $t ($secs s)"
  "$CARGO_TARGET_DIR/$triple/release/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
    -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$secs" -rss_limit_mb=4096 \
    -print_final_stats=1 2>&1 |
    grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|==|INFO: Running|Done )|panicked|crash-|ERROR" || true
done
echo "findings (should be empty):"; find fuzz/artifacts -type f | head -20
