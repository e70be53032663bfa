#!/usr/bin/env bash
# The whole test suite: formatting, clippy -D warnings, every test on the CPU backend and on wgpu
# (lavapipe when no GPU exists), and the engine's wasm32 build. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pmedit-target}"
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

step "engine for wasm32-unknown-unknown"
cargo build -p pmedit-engine --target wasm32-unknown-unknown

step "all checks passed"
