#!/usr/bin/env bash
# results/best-cpu/: the best single multi-task model measured on dev (mean over seeds), from one command. Today
# configs/recipes/bam-private-finish.yaml (docs/results/distillation.md): BAM! with SST's own top layer, then SST's
# layer finished alone from its teacher; its `finish` runs (one a seed) are the model. The recipe trains the three
# teachers, the students and the finishing stage (two single-thread runs side by side, about 2 h on 2 CPU cores,
# measured 2026-12-07: results/best-cpu/recipe.md); each finished seed's dev and test-student prediction files,
# config, metrics and log are copied into
# results/best-cpu/finish-SEED/ (benchmarks/ship_runs.py), the recipe's own table into results/best-cpu/recipe.md, and
# benchmarks/results_table.py writes results/best-cpu/RESULTS.md. Which runs are done, and continuing a stopped
# one, are `minbert recipe`'s: rerun this script after an interruption.
# Usage: bash benchmarks/best_model.sh > logs/best-model.log 2>&1
# Environment (defaults in brackets), for smoke runs:
#   MINBERT [.venv/bin/minbert], PYTHON [.venv/bin/python]: the commands
#   BEST_RECIPE [configs/recipes/bam-private-finish.yaml], BEST_FINAL [finish]: the recipe and its run whose seeds
#     are the shipped model
#   BEST_LABEL: the model's name in RESULTS.md
#   BEST_RUNS [runs/bam-private-finish], BEST_RESULTS [results/best-cpu]: where the runs and the copies go
#   BEST_SET [none]: more `--set KEY=VALUE` for every run, one per line (smoke runs: a tiny backbone, a few rows)
#   BEST_DATA_DIR [the default data folder]: --data-dir for every run
set -euo pipefail
cd "$(dirname "$0")/.."
minbert=${MINBERT:-.venv/bin/minbert}
python=${PYTHON:-.venv/bin/python}
RECIPE=${BEST_RECIPE:-configs/recipes/bam-private-finish.yaml}
FINAL=${BEST_FINAL:-finish}
LABEL=${BEST_LABEL:-"minbert BAM! + SST's own top layer, SST finished from its teacher (\`$RECIPE\`; wall: the finishing stage alone, the whole recipe in recipe.md)"}
RUNS=${BEST_RUNS:-runs/bam-private-finish}
RESULTS=${BEST_RESULTS:-results/best-cpu}
args=(--set train.threads=1 --set eval.test_predictions=true)
while IFS= read -r line; do
  [ -n "$line" ] && args+=(--set "$line")
done <<< "${BEST_SET:-}"
[ -n "${BEST_DATA_DIR:-}" ] && args+=(--data-dir "$BEST_DATA_DIR")

$minbert recipe "$RECIPE" --out "$RUNS" --lanes 2 "${args[@]}"
# the recipe's own runs named FINAL-SEED (from its recipe.json, not whatever else lies in $RUNS)
named=$($python -c 'import json, sys
runs = [r["run"] for r in json.load(open(sys.argv[1])) if r["run"].startswith(sys.argv[2] + "-") and "skipped" not in r]
if not runs:
    sys.exit(f"best_model.sh: the recipe has no run {sys.argv[2]}-SEED")
print("\n".join(runs))' \
  "$RUNS/recipe.json" "$FINAL")
mapfile -t finals <<< "$named"
finals=("${finals[@]/#/$RUNS/}")
mkdir -p "$RESULTS"
shipped=$($python benchmarks/ship_runs.py "$RESULTS" "${finals[@]}")  # stops here if a seed lacks a file
mapfile -t copied <<< "$shipped"
cp "$RUNS"/recipe.{md,json} "$RESULTS/"
$python benchmarks/results_table.py --label "$LABEL" "${copied[@]}" > "$RESULTS/RESULTS.md"
cat "$RESULTS/RESULTS.md"
