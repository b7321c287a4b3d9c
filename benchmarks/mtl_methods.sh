#!/usr/bin/env bash
# docs/results/mtl-methods.md's accuracy table: configs/ablations/mtl-methods.yaml (every way of combining the
# tasks on best-cpu's recipe at a quarter of its budget, two seeds; two single-thread runs side by side, about
# 4 h on 2 CPU cores for the 19 rows), each finished run's metrics.jsonl, grad_cosine.jsonl, config.yaml,
# best_metrics.json and ablation_result.json copied into results/mtl-methods/quarter/ROW/seed-N/ with the table
# (ablation.md, ablation.json), and the table put between the doc's markers by benchmarks/ablations_doc.py.
# `minbert ablate` reuses finished runs and continues a stopped one: rerun this script after an interruption.
# Usage: bash benchmarks/mtl_methods.sh > logs/mtl-methods.log 2>&1
# Environment (defaults in brackets): MINBERT [.venv/bin/minbert], PYTHON [.venv/bin/python],
#   MTL_RUNS [runs/ablate-mtl-methods], MTL_RESULTS [results/mtl-methods], MTL_DOC [docs/results/mtl-methods.md],
#   MTL_SET: more `--set KEY=VALUE` for every run, one per line (smoke runs: a tiny backbone, a few rows),
#   MTL_DATA_DIR [the default data folder]
set -euo pipefail
cd "$(dirname "$0")/.."
minbert=${MINBERT:-.venv/bin/minbert}
python=${PYTHON:-.venv/bin/python}
RUNS=${MTL_RUNS:-runs/ablate-mtl-methods}
RESULTS=${MTL_RESULTS:-results/mtl-methods}
DOC=${MTL_DOC:-docs/results/mtl-methods.md}
args=(--set train.threads=1)
while IFS= read -r line; do
  [ -n "$line" ] && args+=(--set "$line")
done <<< "${MTL_SET:-}"
[ -n "${MTL_DATA_DIR:-}" ] && args+=(--data-dir "$MTL_DATA_DIR")

$minbert ablate configs/ablations/mtl-methods.yaml --out "$RUNS" --lanes 2 "${args[@]}"
quarter="$RESULTS/quarter"
mkdir -p "$quarter"
for run in "$RUNS"/*/seed-*/; do
  run=${run%/}
  [ -f "$run/ablation_result.json" ] || continue  # a row the table does not hold (yet)
  dest="$quarter/${run#"$RUNS/"}"
  mkdir -p "$dest"
  cp "$run"/{metrics.jsonl,config.yaml,best_metrics.json,ablation_result.json} "$dest/"
  if [ -f "$run/grad_cosine.jsonl" ]; then cp "$run/grad_cosine.jsonl" "$dest/"; fi
done
cp "$RUNS"/ablation.{md,json} "$quarter/"
$python benchmarks/ablations_doc.py --results "$RESULTS" --source results/mtl-methods --doc "$DOC" quarter
