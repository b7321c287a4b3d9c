#!/usr/bin/env bash
# The README results table: configs/recipes/best-cpu.yaml (configs/best-cpu.yaml over 3 seeds and the
# frozen-encoder baseline, four single-thread runs side by side), their ensemble, the prediction files copied
# into results/, and the table. Which runs are done, and continuing a stopped one, is `minbert recipe`'s
# (rerun this script after an interruption). Measured with the earlier, hand-scheduled version of this
# script (the same four runs side by side): 2 h 24 min on 2 CPU cores (136 min of training and prediction
# files, then 7.5 of ensemble; the earlier budget {sst: 12800, para: 44800, sts: 6400}: 1 h 51 min).
# Usage: bash benchmarks/best_cpu.sh > logs/best-cpu.log 2>&1
#   MINBERT_SET: more `--set KEY=VALUE` for every run, one per line (smoke runs: a tiny backbone, a few rows)
set -euo pipefail
cd "$(dirname "$0")/.."
minbert=${MINBERT:-.venv/bin/minbert}
python=${PYTHON:-.venv/bin/python}
RUNS=${BEST_CPU_RUNS:-runs/best-cpu}
RESULTS=${BEST_CPU_RESULTS:-results}
sets=(--set train.threads=1)
while IFS= read -r line; do
  [ -n "$line" ] && sets+=(--set "$line")
done <<< "${MINBERT_SET:-}"

$minbert recipe configs/recipes/best-cpu.yaml --out "$RUNS" --lanes 4 "${sets[@]}"
runs=("$RUNS"/best-cpu-11711 "$RUNS"/best-cpu-11712 "$RUNS"/best-cpu-11713)
$minbert ensemble "${runs[@]}" --out "$RUNS"/ensemble
mkdir -p "$RESULTS"/best-cpu-config "$RESULTS"/ensemble
rm -rf "$RESULTS"/best-cpu-config/predictions "$RESULTS"/ensemble/predictions
cp -r "${runs[0]}/predictions" "$RESULTS"/best-cpu-config/predictions
cp -r "$RUNS"/ensemble/predictions "$RESULTS"/ensemble/predictions
cp "$RUNS"/ensemble/ensemble_metrics.json "$RESULTS"/ensemble/
cp "${runs[0]}"/{best_metrics.json,config.yaml,metrics.jsonl} "$RESULTS"/best-cpu-config/
for run in "${runs[@]:1}"; do cp "$run/metrics.jsonl" "$RESULTS/best-cpu-config/metrics-${run##*-}.jsonl"; done
H=results/history  # the earlier versions of the recipe, as rows beside this one (README)
$python benchmarks/results_table.py "${runs[@]}" \
  --other "minbert best-cpu, first per-task budget {sst: 12800, para: 44800, sts: 6400} (ed6a7a2)=$H/best-cpu-subsets-ed6a7a2/best-cpu-11711,$H/best-cpu-subsets-ed6a7a2/best-cpu-11712,$H/best-cpu-subsets-ed6a7a2/best-cpu-11713" \
  --other "minbert best-cpu, round-robin version (2 × 800 steps, d156547)=$H/best-cpu-round-robin-d156547/best-cpu-11711,$H/best-cpu-round-robin-d156547/best-cpu-11712,$H/best-cpu-round-robin-d156547/best-cpu-11713" \
  --ensemble "$RUNS"/ensemble --frozen "$RUNS"/frozen > "$RESULTS"/best-cpu-config/RESULTS.md
cat "$RESULTS"/best-cpu-config/RESULTS.md
