#!/usr/bin/env bash
# The CPU-budget ablation tables of docs/results/ablations.md: one seed of each table first, then the second seed.
# Finished runs are reused, so rerunning continues where an interrupted run stopped. Hours on 2 CPU cores.
# Usage: bash benchmarks/ablations.sh > logs/ablations.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/.."
for seeds in "--seeds 1" ""; do
  .venv/bin/minbert ablate configs/ablations/000-minibert-unleashed.yaml --out runs/ablate-000 --budget $seeds
  .venv/bin/minbert ablate configs/ablations/pooling-pairs.yaml --out runs/ablate-pooling --budget $seeds
done
