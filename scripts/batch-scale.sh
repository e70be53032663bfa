#!/usr/bin/env bash
# Large batches natively: times one MEMIT / EMMET / AlphaEdit edit of N requests (default 1000 and
# 10000) on a model with statistics, printing seconds and peak RSS per run. The requests are
# synthetic and distinct: "<subject A> of <subject B>"-style subjects built from the model's own
# facts (the demo model's facts.json by default), each with a random new target from the same facts.
# Not part of the tests (minutes to an hour); BENCHMARKS.md and the closing notes quote its output.
#
#   scripts/batch-scale.sh [--model DIR] [--facts FILE] [--sizes "1000 10000"] [--algos "memit emmet alphaedit"]
#                          [--steps N] [--bin PMEDIT] [--device cpu|gpu]
set -euo pipefail
cd "$(dirname "$0")/.."

model=public/models/demo facts="" sizes="1000 10000" algos="memit emmet alphaedit" steps="" bin="" device=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift ;;
    --facts) facts="$2"; shift ;;
    --sizes) sizes="$2"; shift ;;
    --algos) algos="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    --bin) bin="$2"; shift ;;
    --device) device="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
facts="${facts:-$model/facts.json}"
if [ -z "$bin" ]; then
  cargo build --bin pmedit >&2
  bin="${CARGO_TARGET_DIR:-target}/debug/pmedit"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for n in $sizes; do
  python3 - "$facts" "$n" "$work/requests-$n.json" <<'EOF'
import json, random, sys
facts, n, out = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
rng = random.Random(n)
subjects = sorted({f["subject"] for f in facts})
objects = sorted({f.get("target_new") or f.get("ground_truth") or f.get("target_true") for f in facts} - {None})
seen, reqs = set(), []
while len(reqs) < n:
    f = rng.choice(facts)
    s = f"{rng.choice(subjects)} of {rng.choice(subjects)}"
    if s in seen:
        continue
    seen.add(s)
    prompt = f["prompt"] if "{}" in f["prompt"] else f["prompt"].replace(f["subject"], "{}", 1)
    if "{}" not in prompt:
        continue
    reqs.append({"prompt": prompt, "subject": s, "target_new": rng.choice(objects)})
json.dump(reqs, open(out, "w"))
EOF
  for algo in $algos; do
    rm -rf "$work/out"
    args=(--device "$device" edit --model "$model" --requests "$work/requests-$n.json" --algo "$algo"
          --templates none --out "$work/out" --json)
    [ -n "$steps" ] && args+=(--steps "$steps")
    if /usr/bin/time -v "$bin" "${args[@]}" > "$work/edit.json" 2> "$work/time.log"; then
      secs=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['edit']['seconds'], 1))" "$work/edit.json")
      status=ok
    else
      secs=- status="failed: $(grep -m1 -i error "$work/time.log" | cut -c1-160)"
    fi
    rss=$(awk '/Maximum resident/ {printf "%.0f", $6/1024}' "$work/time.log")
    wall=$(awk -F': ' '/Elapsed/ {print $2}' "$work/time.log")
    echo "{\"requests\": $n, \"algo\": \"$algo\", \"model\": \"$model\", \"edit_seconds\": \"$secs\", \"wall\": \"$wall\", \"peak_rss_mib\": $rss, \"status\": \"$status\"}"
  done
done
