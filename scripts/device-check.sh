#!/usr/bin/env bash
# Everything worth measuring on a GPU, in one command: forward, generation, statistics, ROME on a
# 124 M and a GPT2-XL-shaped model, EMMET batches, the solves and the Cholesky factorisation, each
# row printed as one JSON line ({"op", "model", "device", "seconds", "runs", …}) and the whole as a
# Markdown table at the end. The models are made on the spot with `pmedit random-model`.
#
#   scripts/device-check.sh [--quick] [--bin PMEDIT] [--device gpu|cpu] [--budget SECONDS] [--out DIR]
#   scripts/device-check.sh --prepare      # build the GPU binary and pack it into .device/ to carry
#
# --quick   the same rows at tiny sizes (the test fixtures, a one-block GPT-2-small), on whatever
#           wgpu adapter there is: a rehearsal that runs in CI on lavapipe.
# --budget  seconds for the whole run (default 480); a row that would start after it is reported
#           as skipped, and each row is stopped at what is left.
# --out     also write rows.jsonl and table.md there (default: $OUT when set).
#
# On a lent GPU machine (no Rust toolchain): run `--prepare` here, carry `.device` (and `.gl`, the
# Vulkan loader packages, fetched here into .gl/ with `apt-get download libvulkan1 libegl1
# libglvnd0 libopengl0 libgl1 libglx0 libgles2`), and run `scripts/device-check.sh` there; the
# script unpacks the binary and the loader itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0 bin="${PMEDIT_BIN:-}" device=gpu budget=480 out="${OUT:-}" prepare=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --bin) bin="$2"; shift ;;
    --device) device="$2"; shift ;;
    --budget) budget="$2"; shift ;;
    --out) out="$2"; shift ;;
    --prepare) prepare=1 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "device-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$prepare" = 1 ]; then
  # The `gpu` feature turns on burn's autotune and fusion. One dev-profile build (dependencies at
  # opt-level 3), stripped and compressed to fit beside the working tree in what travels.
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pmedit-target}"
  cargo build --bin pmedit --features pmedit/gpu >&2
  mkdir -p .device
  strip -o .device/pmedit "$CARGO_TARGET_DIR/debug/pmedit"
  rm -f .device/pmedit.xz
  xz -T0 -6 .device/pmedit
  ls -l .device >&2
  echo "carry .device (and .gl) and run scripts/device-check.sh on the device" >&2
  exit 0
fi

# The Vulkan loader, where the machine has none and its packages were carried in .gl.
if ! ldconfig -p 2>/dev/null | grep -q libvulkan && compgen -G '.gl/*.deb' > /dev/null; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"; export XDG_RUNTIME_DIR; chmod 700 "$XDG_RUNTIME_DIR"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/device-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ -z "$bin" ]; then
  if [ -f .device/pmedit.xz ]; then
    if command -v xz > /dev/null; then
      xz -dc .device/pmedit.xz > "$work/pmedit"
    else # Python's lzma reads xz where the xz tool is missing
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        .device/pmedit.xz "$work/pmedit"
    fi
    chmod +x "$work/pmedit"
    bin="$work/pmedit"
  elif [ -x "${CARGO_TARGET_DIR:-$HOME/.cache/pmedit-target}/debug/pmedit" ]; then
    bin="${CARGO_TARGET_DIR:-$HOME/.cache/pmedit-target}/debug/pmedit"
  else
    echo "device-check: no pmedit binary: pass --bin, or run --prepare first" >&2
    exit 2
  fi
fi
[ -n "$out" ] && mkdir -p "$out"
start=$(date +%s)
rows="$work/rows.jsonl"
: > "$rows"
left() { echo $(( budget - ($(date +%s) - start) )); }
note() { printf '[%4ss] %s\n' "$(( $(date +%s) - start ))" "$*" >&2; }

# Sizes: the real run and the rehearsal.
corpus="$root/tests/fixtures/wikitext-excerpt.txt"
if [ "$quick" = 1 ]; then
  small="$root/tests/fixtures/tiny-gpt2" small_name=tiny-gpt2
  big="$work/gpt2-small-1block" big_name=gpt2-small-1block
  batches=(16 32) solve_e=64 chol=256 runs=1 warmup=0 stats_tokens=2000 seq=32
else
  small="$work/gpt2-small" small_name=gpt2-small-124M
  big="$work/gpt2-xl" big_name=gpt2-xl-1.5B
  batches=(16 256 1000 10000) solve_e=1000 chol=6400 runs=3 warmup=1 stats_tokens=64000 seq=128
fi

# One row: `row OP MODEL_NAME EXTRA_JSON -- COMMAND…` runs the command within what is left of the
# budget. Where it prints {"seconds": …} lines (`pmedit bench --op`, after a warm-up run) their
# median is the row's time; otherwise the command's wall time is, as one run.
row() {
  local op=$1 model=$2 extra=$3; shift 4
  local remaining; remaining=$(left)
  if [ "$remaining" -le 5 ]; then
    note "$op on $model: skipped (budget spent)"
    printf '{"op":"%s","model":"%s","device":"%s","seconds":null,"runs":0,"skipped":"budget"}\n' \
      "$op" "$model" "$dev" | tee -a "$rows"
    return 0
  fi
  note "$op on $model …"
  local log="$work/$op.$model.log" rc=0 t0 t1
  t0=$(date +%s.%N)
  timeout "$remaining" "$@" > "$log" 2> "$log.err" || rc=$?
  t1=$(date +%s.%N)
  local secs n
  secs=$( (grep -o '"seconds":[0-9.eE+-]*' "$log" || true) | cut -d: -f2 | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}')
  n=$(grep -c '"seconds"' "$log" || true)
  if [ -z "$secs" ] && [ "$rc" = 0 ]; then
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    n=1
  fi
  if [ "$rc" != 0 ] || [ -z "$secs" ]; then
    local why; why=$(tail -n 1 "$log.err" | tr -d '"\\' | cut -c1-200)
    [ "$rc" = 124 ] && why="stopped at the budget"
    note "$op on $model: failed ($why)"
    printf '{"op":"%s","model":"%s","device":"%s","seconds":null,"runs":%s,"error":"%s"}\n' \
      "$op" "$model" "$dev" "$n" "$why" | tee -a "$rows"
    return 0
  fi
  printf '{"op":"%s","model":"%s","device":"%s","seconds":%s,"runs":%s%s}\n' \
    "$op" "$model" "$dev" "$secs" "$n" "$extra" | tee -a "$rows"
}

dev=$("$bin" --device "$device" info --model "$root/tests/fixtures/tiny-gpt2" --json 2> "$work/info.err" \
  | grep -o '"device": *"[^"]*"' | sed 's/.*: *"//; s/"$//' || true)
if [ -z "$dev" ]; then
  echo "device-check: $device is not usable: $(tail -n 1 "$work/info.err")" >&2
  exit 1
fi
note "pmedit $("$bin" --version | cut -d' ' -f2) on $dev; budget ${budget}s; work in $work"

bench=("$bin" --device "$device" bench --warmup "$warmup" --runs "$runs")
if [ "$quick" = 1 ]; then
  row random-model "$big_name" '' -- "$bin" --dtype f16 random-model --shape gpt2-small --n-layer 1 --out "$big"
else
  row random-model "$small_name" '' -- "$bin" random-model --shape gpt2-small --out "$small"
  row random-model "$big_name" '' -- "$bin" --dtype f16 random-model --shape gpt2-xl --out "$big"
fi
tokens=$((16 * seq))
row forward "$small_name" ",\"tokens\":$tokens" -- "${bench[@]}" --model "$small" --op forward --batch 16 --seq "$seq"
row generate "$small_name" ',"tokens":32' -- "${bench[@]}" --model "$small" --op generate
row stats "$small_name" ",\"tokens\":$stats_tokens" -- "$bin" --device "$device" stats --model "$small" \
  --corpus "$corpus" --layers 1 --max-tokens "$stats_tokens" --out "$work/stats.safetensors"
row rome "$small_name" '' -- "${bench[@]}" --model "$small" --op rome
row emmet-"${batches[0]}" "$small_name" '' -- "${bench[@]}" --model "$small" --op "emmet-${batches[0]}"
row rome "$big_name" '' -- "${bench[@]}" --model "$big" --op rome
row forward "$big_name" ",\"tokens\":$tokens" -- "${bench[@]}" --model "$big" --op forward --batch 16 --seq "$seq"
for e in "${batches[@]:1}"; do
  row emmet-"$e" "$small_name" '' -- "${bench[@]}" --model "$small" --op "emmet-$e"
done
# The solve at the edited layer's width: 6400 on the XL-shaped model (3072 in the rehearsal's
# one-block GPT-2-small is more than lavapipe needs to show it runs: the fixture's 64 there).
if [ "$quick" = 1 ]; then solve_on=("$small_name" "$small"); else solve_on=("$big_name" "$big"); fi
row solve-emmet-"$solve_e" "${solve_on[0]}" '' -- "${bench[@]}" --model "${solve_on[1]}" --op "solve-emmet-$solve_e"
row cholesky-"$chol" - '' -- "${bench[@]}" --model "$small" --op "cholesky-$chol"

# The table.
table="$work/table.md"
{
  echo "| op | model | seconds (median) | runs | note |"
  echo "| --- | --- | ---: | ---: | --- |"
  sed -E 's/^\{"op":"([^"]*)","model":"([^"]*)","device":"[^"]*","seconds":([^,]*),"runs":([0-9]*)(.*)\}$/| \1 | \2 | \3 | \4 | \5 |/; s/\| ,/| /' "$rows"
} > "$table"
echo
echo "device: $dev ($(( $(date +%s) - start )) s in all)"
cat "$table"
if [ -n "$out" ]; then
  cp "$rows" "$out/rows.jsonl"
  { echo "device: $dev"; echo; cat "$table"; } > "$out/table.md"
fi
# Success when every row that was not skipped measured something; the rehearsal must run them all.
! grep -q '"error"' "$rows" || exit 1
if [ "$quick" = 1 ] && grep -q '"skipped"' "$rows"; then
  echo "device-check: --quick ran out of its budget" >&2
  exit 1
fi
