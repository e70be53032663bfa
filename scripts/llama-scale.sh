#!/usr/bin/env bash
# A 7B-shaped Llama natively on the CPU: load, predict, C0 statistics of the ROME layer and one
# ROME edit, each timed with its peak RSS (GNU time). Not part of CI (≈ 14 GB on disk and tens of
# minutes on 2 cores). The model is random (scripts/random-llama.py, numpy only), resident in bf16.
#
#   scripts/llama-scale.sh [--shape llama-2-7b] [--dir /tmp/llama2-7b] [--steps 2] [--tokens 256]
set -euo pipefail
cd "$(dirname "$0")/.."
shape=llama-2-7b; dir=""; steps=2; tokens=256
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --tokens) tokens="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
dir="${dir:-/tmp/$shape}"
bin="${PMEDIT_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/pmedit-target}/debug/pmedit}"
python="${PYTHON:-python3}"
[ -x "$bin" ] || { echo "build pmedit first (cargo build), or set PMEDIT_BIN" >&2; exit 2; }
[ -d "$dir" ] || "$python" scripts/random-llama.py --shape "$shape" --out "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
row() { # name, command...
  local name="$1"; shift
  /usr/bin/time -v "$@" > "$work/$name.out" 2> "$work/$name.err" || { cat "$work/$name.err" >&2; exit 1; }
  local secs rss
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$work/$name.err")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.2f", $2/1048576}' "$work/$name.err")
  printf '| %s | %s s | %s GiB |\n' "$name" "$secs" "$rss"
}
layer=$("$python" -c "import json;print(json.load(open('engine/presets/hparams.json'))['families'].get('$shape',{}).get('rome',{}).get('layers',[5])[0])" 2>/dev/null || echo 5)
echo "| step ($shape, bf16 resident, CPU) | wall | peak RSS |"
echo "|---|---|---|"
row info "$bin" --device cpu --dtype bf16 info --model "$dir"
row predict "$bin" --device cpu --dtype bf16 predict --model "$dir" --prompt "The Eiffel Tower is located in the city of"
row "stats (layer $layer, $tokens tokens)" "$bin" --device cpu --dtype bf16 stats --model "$dir" \
  --corpus tests/fixtures/wikitext-excerpt.txt --layers "$layer" --max-tokens "$tokens" --window 64 --batch 4 \
  --out "$work/stats.safetensors"
# A full-rank C0 needs more tokens than the key dimension (11008 for Llama-2-7b: tens of minutes
# of forward passes on 2 cores), so the edit is timed on a synthetic one in the authors' .npz form
# (a diagonal Σ k kᵀ and a count): its content does not change the edit's time or memory.
n=$("$python" -c "import json;print(json.load(open('$dir/config.json'))['intermediate_size'])")
"$python" -c "
import numpy as np
n, count = $n, 100000
rng = np.random.default_rng(0)
mom2 = np.zeros((n, n), dtype=np.float32)
np.fill_diagonal(mom2, count * (0.5 + rng.random(n, dtype=np.float32)))
np.savez('$work/layer$layer.npz', **{'mom2.mom2': mom2, 'mom2.count': np.array(count, dtype=np.int64)})
"
row "import-stats (synthetic full-rank C0, $n × $n)" "$bin" --device cpu --dtype bf16 import-stats --model "$dir" \
  --npz "$work/layer$layer.npz" --layers "$layer" --out "$work/c0.safetensors"
echo '[{"prompt": "{} is located in the city of", "subject": "The Eiffel Tower", "target_new": "Rome"}]' > "$work/req.json"
row "ROME edit ($steps value steps, bare templates, bf16 written)" "$bin" --device cpu --dtype bf16 edit --model "$dir" \
  --requests "$work/req.json" --algo rome --stats "$work/c0.safetensors" --steps "$steps" --templates none \
  --save-delta "$work/delta.safetensors" --out "$work/edited"
