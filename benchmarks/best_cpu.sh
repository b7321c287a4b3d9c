#!/usr/bin/env bash
# The README results table: configs/best-cpu.yaml over 3 seeds, their ensemble, and the frozen-encoder
# baseline of the same recipe; then copies the prediction files into results/ and writes the table.
# The seeds and the baseline train side by side, one CPU thread each (on 2 cores that finishes sooner
# than one run after another at 2 threads). Unfinished runs are resumed from their last checkpoint, so
# rerunning continues after an interruption; a run started with another version of the recipe is refused
# (delete it to start over). Measured: 2 h 24 min on 2 CPU cores (136 min of training and prediction files,
# then 7.5 of ensemble; the earlier budget {sst: 12800, para: 44800, sts: 6400}: 1 h 51 min).
# Usage: bash benchmarks/best_cpu.sh > logs/best-cpu.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/.."
minbert=.venv/bin/minbert
one_thread=(--set train.threads=1)

train() {  # train RUN_DIR [--set ...]: a fresh run, or resume an unfinished one
  local run=$1; shift
  if [ -f "$run/best_metrics.json" ] && [ ! -d "$run/last" ]; then return; fi
  if [ -f "$run/config.yaml" ]; then
    $minbert train --resume "$run" --config configs/best-cpu.yaml "$@"
  else
    $minbert train --config configs/best-cpu.yaml "$@" --out "$run"
  fi > "$run.log" 2>&1
}

runs=()
pids=()
mkdir -p runs
for seed in 11711 11712 11713; do
  runs+=("runs/best-cpu-$seed")
  train "runs/best-cpu-$seed" "${one_thread[@]}" --set train.seed=$seed & pids+=($!)
done
# the baseline: only the heads learn (the STS cosine head has nothing to learn, so STS is the backbone's own
# embedding cosine); one epoch of the recipe's steps, since a frozen encoder leaves little to fit
train runs/best-cpu-frozen "${one_thread[@]}" --set train.freeze_encoder=true --set train.epochs=1 & pids+=($!)
for pid in "${pids[@]}"; do
  wait "$pid" || { echo "a training failed: see runs/best-cpu-*.log" >&2; exit 1; }
done
$minbert ensemble "${runs[@]}" --out runs/best-cpu-ensemble
mkdir -p results/best-cpu results/ensemble
rm -rf results/best-cpu/predictions results/ensemble/predictions
cp -r "${runs[0]}/predictions" results/best-cpu/predictions
cp -r runs/best-cpu-ensemble/predictions results/ensemble/predictions
cp runs/best-cpu-ensemble/ensemble_metrics.json results/ensemble/
cp "${runs[0]}"/{best_metrics.json,config.yaml,metrics.jsonl} results/best-cpu/
for run in "${runs[@]:1}"; do cp "$run/metrics.jsonl" "results/best-cpu/metrics-${run##*-}.jsonl"; done
H=results/history  # the earlier versions of the recipe, as rows beside this one (README)
.venv/bin/python benchmarks/results_table.py "${runs[@]}" \
  --other "minbert best-cpu, first per-task budget {sst: 12800, para: 44800, sts: 6400} (ed6a7a2)=$H/best-cpu-subsets-ed6a7a2/best-cpu-11711,$H/best-cpu-subsets-ed6a7a2/best-cpu-11712,$H/best-cpu-subsets-ed6a7a2/best-cpu-11713" \
  --other "minbert best-cpu, round-robin version (2 × 800 steps, d156547)=$H/best-cpu-round-robin-d156547/best-cpu-11711,$H/best-cpu-round-robin-d156547/best-cpu-11712,$H/best-cpu-round-robin-d156547/best-cpu-11713" \
  --ensemble runs/best-cpu-ensemble --frozen runs/best-cpu-frozen > results/best-cpu/RESULTS.md
cat results/best-cpu/RESULTS.md
