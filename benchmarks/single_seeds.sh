#!/usr/bin/env bash
# The single-task models' extra seeds with their test-student prediction files: configs/recipes/single-seeds.yaml
# (SST 11712-11715, Quora 11712-11713, STS 11712; two single-thread runs side by side), each run copied into
# results/single/seeds/TASK-SEED/ by benchmarks/ship_runs.py (which refuses a run lacking a test file). Seed 11711
# of each task is results/single/TASK/. Which runs are done, and continuing a stopped one, are `minbert recipe`'s:
# rerun this script after an interruption. The copies replace the committed seeds' files: the README's seed-mean
# row and distillation.md's seed rows are read from them (tests/test_published_figures.py checks each against
# them), and the SST ensemble of results/single/seeds/sst-ensemble/ is of the earlier runs until rebuilt.
# Usage: bash benchmarks/single_seeds.sh > logs/single-seeds.log 2>&1
# Environment (defaults in brackets): MINBERT [.venv/bin/minbert], PYTHON [.venv/bin/python],
#   SINGLE_RUNS [runs/single-seeds], SINGLE_RESULTS [results/single/seeds], SINGLE_DATA_DIR [the default]
set -euo pipefail
cd "$(dirname "$0")/.."
minbert=${MINBERT:-.venv/bin/minbert}
python=${PYTHON:-.venv/bin/python}
RUNS=${SINGLE_RUNS:-runs/single-seeds}
RESULTS=${SINGLE_RESULTS:-results/single/seeds}
args=(--set train.threads=1 --set eval.test_predictions=true)
[ -n "${SINGLE_DATA_DIR:-}" ] && args+=(--data-dir "$SINGLE_DATA_DIR")

$minbert recipe configs/recipes/single-seeds.yaml --out "$RUNS" --lanes 2 "${args[@]}"
mkdir -p "$RESULTS"
$python benchmarks/ship_runs.py "$RESULTS" "$RUNS"/{sst-11712,sst-11713,sst-11714,sst-11715,para-11712,para-11713,sts-11712}
