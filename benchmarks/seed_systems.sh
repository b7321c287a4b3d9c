#!/usr/bin/env bash
# The seed reports' best systems: configs/recipes/seed-systems.yaml (each system with seed 11711, two single-thread
# runs side by side; seeds 11712 and 11713 for a system whose dev overall beats best-cpu's), the runs copied into
# results/seeds/NAME/ (seed 11711) and results/seeds/NAME/seed-SEED/ (more seeds), the step-time column measured
# apart (benchmarks/seeds_step_times.py -> $RESULTS/step_times.json, skipped if that file is there), then
# benchmarks/seeds_table.py writes docs/results/seeds.md's table. Which runs are done, continuing a stopped one
# and whether a system gets more seeds are `minbert recipe`'s: rerun this script after an interruption. (A fresh
# clone has the results but no runs: this trains all five again; the table alone is benchmarks/seeds_table.py.
# A failed run stops the script before the copies: the others are paused or done; fix it and rerun.)
# Usage: bash benchmarks/seed_systems.sh > logs/seed-systems.log 2>&1
# Environment (defaults in brackets), for smoke runs:
#   MINBERT [.venv/bin/minbert], PYTHON [.venv/bin/python]: the commands (word-split: MINBERT="python -m minbert")
#   SEEDS_RECIPE [configs/recipes/seed-systems.yaml]: the recipe (a smoke run: one whose runs `set` a few rows and
#     steps for their schedule, and a tiny backbone)
#   SEEDS_RUNS [runs/seeds], SEEDS_RESULTS [results/seeds], SEEDS_DOC [docs/results/seeds.md]: where runs, copied
#     results and the table go
#   SEEDS_SET [none]: more `--set KEY=VALUE` for every run, one per line
#   SEEDS_STEP_TIMES [1]: 0 skips the step-time measurement
set -euo pipefail
cd "$(dirname "$0")/.."
minbert=${MINBERT:-.venv/bin/minbert}
python=${PYTHON:-.venv/bin/python}
RECIPE=${SEEDS_RECIPE:-configs/recipes/seed-systems.yaml}
RUNS=${SEEDS_RUNS:-runs/seeds}
RESULTS=${SEEDS_RESULTS:-results/seeds}
DOC=${SEEDS_DOC:-docs/results/seeds.md}
sets=(--set train.threads=1)
while IFS= read -r line; do
  [ -n "$line" ] && sets+=(--set "$line")
done <<< "${SEEDS_SET:-}"

$minbert recipe "$RECIPE" --out "$RUNS" --lanes 2 "${sets[@]}"
# every run the recipe trained (its recipe.json; skipped ones have no metrics) into results/seeds/
$python - "$RUNS" "$RESULTS" <<'PY'
import json, shutil, sys
from pathlib import Path
runs, results = Path(sys.argv[1]), Path(sys.argv[2])
for r in json.loads((runs / "recipe.json").read_text()):
    if "skipped" in r:
        continue
    name, seed = r["run"].rsplit("-", 1)
    dest = results / name if seed == "11711" else results / name / f"seed-{seed}"
    shutil.rmtree(dest / "predictions", ignore_errors=True)
    (dest / "predictions").mkdir(parents=True)
    for task in ("sst", "para", "sts"):
        for split in ("dev", "test"):
            shutil.copy(runs / r["run"] / "predictions" / f"{task}-{split}-output.csv", dest / "predictions")
    for f in ("best_metrics.json", "config.yaml", "metrics.jsonl"):
        shutil.copy(runs / r["run"] / f, dest)
    print(f"{runs / r['run']} -> {dest}")
PY
if [ "${SEEDS_STEP_TIMES:-1}" != 0 ] && [ ! -f "$RESULTS/step_times.json" ]; then
  echo "measuring step times -> $RESULTS/step_times.json"
  $python benchmarks/seeds_step_times.py --out "$RESULTS/step_times.json" "${sets[@]}"
fi
$python benchmarks/seeds_table.py --results "$RESULTS" --step-times "$RESULTS/step_times.json" --doc "$DOC"
echo "table written to $DOC"
