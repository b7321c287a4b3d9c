#!/usr/bin/env bash
# The README results table: configs/best-cpu.yaml over 3 seeds, their ensemble, and the frozen-encoder
# baseline of the same recipe; then copies the prediction files into results/. Finished runs are skipped,
# so rerunning continues after an interruption. About 2.5 hours on 2 CPU cores.
# Usage: bash benchmarks/best_cpu.sh > logs/best-cpu.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/.."
minbert=.venv/bin/minbert
seeds=(11711 11712 11713)
runs=()
for seed in "${seeds[@]}"; do
  run=runs/best-cpu-$seed
  runs+=("$run")
  if [ ! -f "$run/best_metrics.json" ] || [ -d "$run/last" ]; then
    if [ -d "$run" ]; then
      $minbert train --resume "$run"
    else
      $minbert train --config configs/best-cpu.yaml --set train.seed=$seed --out "$run"
    fi
  fi
done
$minbert ensemble "${runs[@]}" --out runs/best-cpu-ensemble
if [ ! -f runs/best-cpu-frozen/best_metrics.json ]; then
  $minbert train --config configs/best-cpu.yaml --set train.freeze_encoder=true --out runs/best-cpu-frozen
fi
mkdir -p results/best-cpu results/ensemble
rm -rf results/best-cpu/predictions results/ensemble/predictions
cp -r "${runs[0]}/predictions" results/best-cpu/predictions
cp -r runs/best-cpu-ensemble/predictions results/ensemble/predictions
.venv/bin/python benchmarks/results_table.py "${runs[@]}" --ensemble runs/best-cpu-ensemble \
  --frozen runs/best-cpu-frozen > results/best-cpu/RESULTS.md
