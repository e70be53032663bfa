#!/usr/bin/env bash
# The page at scale: builds it (trunk), loads MODEL_DIR through its file input in headless
# Chromium, predicts, optionally edits, and prints one JSON line (load time, top-5 next tokens,
# the prediction's and the edit's times, the worker's wasm memory, the browser's peak memory). Not
# part of CI: on SwiftShader (≈ 0.35 GFLOP/s) one prediction through a GPT2-XL-shaped model takes
# about 15 minutes and an edit hours; `random-model --n-layer 2` keeps XL's width in minutes.
#
#   scripts/browser-check.sh MODEL_DIR [--prompt TEXT] [--stats FILE] [--edit REQUESTS.json
#       --layers L --steps N] [--algo ALGO] [--backend webgpu|cpu] [--timeout SECONDS]
#
# Make a model with `pmedit --dtype f16 random-model --shape gpt2-xl --out DIR` and its statistics
# with `pmedit --dtype f16 stats --model DIR --corpus FILE --layers 17 --out FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pmedit-target}"
export PMEDIT_WEB=1
source scripts/setup.sh >&2
if [ -z "${PMEDIT_SKIP_BUILD:-}" ]; then
  rm -f "$CARGO_TARGET_DIR"/wasm32-unknown-unknown/debug/{pmedit-web,worker}.wasm
  trunk build >&2
fi
node tests/browser/check.mjs web/dist "$@"
