#!/usr/bin/env bash
# Single-task sentiment classifiers, frozen encoder vs fine-tuned, on SST-5 and CFIMDB (dev accuracy).
# Usage: bash benchmarks/sentiment_baselines.sh   (about 25 minutes on 2 CPU cores; replaces earlier runs/<name>)
set -euo pipefail
cd "$(dirname "$0")/.."
for name in sst-frozen sst-finetune cfimdb-frozen cfimdb-finetune; do
  start=$(date +%s)
  .venv/bin/minbert train --config "configs/$name.yaml" --out "runs/$name" --overwrite > "runs/$name.log" 2>&1
  echo "$name: $(tail -1 "runs/$name.log") wall $(( $(date +%s) - start )) s"
done
