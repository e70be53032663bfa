#!/usr/bin/env bash
# The whole test suite: formatting, clippy -D warnings, every test on the CPU backend and on wgpu
# (lavapipe when no GPU exists), the web page's wasm32 build (Trunk) and its browser tests in
# headless Chromium. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pmedit-target}"
export PMEDIT_WEB=1
source scripts/setup.sh
# wgpu's Vulkan loader complains without a runtime dir; give it a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"; export XDG_RUNTIME_DIR; chmod 700 "$XDG_RUNTIME_DIR"
fi

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "tests (CPU flex + wgpu)"
# Lavapipe is a software Vulkan: tiny shapes, no autotune (the feature is off), GPU required.
export PMEDIT_REQUIRE_WGPU=1
cargo test --workspace --all-targets -- --test-threads=2

step "device check rehearsal (scripts/device-check.sh --quick on this machine's adapter)"
# The GPU machine's one command, at tiny sizes: every row must measure something.
PMEDIT_BIN="$CARGO_TARGET_DIR/debug/pmedit" bash scripts/device-check.sh --quick --budget 400

step "web page: clippy for wasm32, trunk build"
# The page and its worker build the engine for wasm32 too (one feature set, so burn compiles once).
cargo clippy -p pmedit-web --target wasm32-unknown-unknown -- -D warnings
# The shared build dir holds one uplifted .wasm per binary for every checkout that built it; remove
# them so cargo writes this checkout's (Trunk reads those files).
rm -f "$CARGO_TARGET_DIR"/wasm32-unknown-unknown/debug/{pmedit-web,worker}.wasm
trunk build
# wasm-ld wraps every export of a module whose `main` does not run the static constructors itself
# in a call to all of them (web/src/ctors.rs): a module with such wrappers is refused.
if grep -a -l command_export web/dist/*.wasm; then
  echo "the wasm above wraps its exports in static constructors (see web/src/ctors.rs)" >&2
  exit 1
fi

step "browser tests (headless Chromium: WebGPU flag, CPU fallback, broken model)"
# Screenshots and timings are kept with the build cache.
# The page's "download only the change" is checked against `pmedit apply-delta` (built above).
PMEDIT_BIN="$CARGO_TARGET_DIR/debug/pmedit" node tests/browser/e2e.mjs web/dist "$CARGO_TARGET_DIR/browser-e2e"

step "all checks passed"
