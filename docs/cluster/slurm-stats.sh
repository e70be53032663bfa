#!/usr/bin/env bash
# C0 statistics for one model over one corpus on a Slurm cluster: a job array computes the
# shards, a dependent job merges them. Submit from a login node with the paths filled in:
#
#   MODEL=/shared/models/gpt2-xl CORPUS=/shared/corpora/wiki.jsonl OUT=/shared/stats/gpt2-xl \
#     LAYERS=13-17 SHARDS=32 bash docs/cluster/slurm-stats.sh
#
# Every task runs the same command: `--shard auto` reads the task's place in the array from
# SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_MIN / SLURM_ARRAY_TASK_COUNT, and `{shard}` in `--out`
# gives each task its own file on the shared volume. A task that is preempted and requeued goes
# on from its last checkpoint (`--resume`). merge-stats refuses to merge while a shard is missing.
set -euo pipefail
: "${MODEL:?model directory (shared volume)}" "${CORPUS:?corpus file (shared volume)}"
: "${OUT:?output directory (shared volume)}" "${LAYERS:=17}" "${SHARDS:=16}"
: "${MAX_TOKENS:=}" "${PMEDIT:=pmedit}" "${DEVICE:=auto}" "${TIME:=24:00:00}"
mkdir -p "$OUT/logs"
limit=()
[ -n "$MAX_TOKENS" ] && limit=(--max-tokens "$MAX_TOKENS")

array=$(sbatch --parsable --job-name=pmedit-stats --array="0-$((SHARDS - 1))" --requeue \
  --gres=gpu:1 --cpus-per-task=8 --mem=32G --time="$TIME" \
  --output="$OUT/logs/shard-%a.log" \
  --wrap="$PMEDIT --device $DEVICE stats --model '$MODEL' --corpus '$CORPUS' --layers $LAYERS \
    ${limit[*]} --shard auto --resume --out '$OUT/c0.{shard}.safetensors'")

inputs=$(for i in $(seq 0 $((SHARDS - 1))); do printf "'%s' " "$OUT/c0.$i.safetensors"; done)
sbatch --job-name=pmedit-merge --dependency="afterok:$array" --mem=16G --time=01:00:00 \
  --output="$OUT/logs/merge.log" \
  --wrap="$PMEDIT merge-stats --inputs $inputs --out '$OUT/stats.safetensors'"
echo "submitted array $array ($SHARDS shards) and its merge → $OUT/stats.safetensors"
