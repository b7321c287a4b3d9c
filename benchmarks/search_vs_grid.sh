#!/usr/bin/env bash
# Search against grid (issue 43, part 6): the 5 x 4 grid of configs/sweeps/lr-dropout-grid.yaml and Optuna's TPE with
# median pruning (configs/sweeps/lr-dropout-search.yaml) over the same ranges and budget, the search over several
# sampler seeds; writes the comparison (best dev score found, trials complete / pruned, compute) into
# docs/results/search.md. Long on a CPU (the grid alone is 20 one-epoch runs): run it on a machine with time.
# Usage: benchmarks/search_vs_grid.sh [SEEDS...]   (default seeds: 0 1; runs go to runs/search-vs-grid/)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then SEEDS=("$@"); else SEEDS=(0 1); fi
OUT=runs/search-vs-grid
MINBERT=${MINBERT:-minbert}
THREADS=${THREADS:-$(nproc)}

$MINBERT sweep configs/sweeps/lr-dropout-grid.yaml --out "$OUT/grid" --set train.threads="$THREADS"
for seed in "${SEEDS[@]}"; do
    $MINBERT sweep configs/sweeps/lr-dropout-search.yaml --out "$OUT/tpe-seed$seed" --seed "$seed" \
        --set train.threads="$THREADS"
done

python3 - "$OUT" "${SEEDS[@]}" <<'PY'
import json, sys, time
from pathlib import Path

out, seeds = Path(sys.argv[1]), sys.argv[2:]
rows = [("grid 5 x 4 (no pruning)", out / "grid")] + [(f"TPE + median pruning, seed {s}", out / f"tpe-seed{s}")
                                                      for s in seeds]
lines = ["# Search against grid: learning rate x dropout", "",
         "The 5 x 4 grid `configs/sweeps/lr-dropout-grid.yaml` and Optuna's TPE with median pruning",
         "`configs/sweeps/lr-dropout-search.yaml` over the same ranges (lr 1e-5 to 3e-4 on a log scale, dropout 0 to",
         "0.5) at the budget of `configs/sweeps/lr-dropout.yaml`, the search over several sampler seeds.", "",
         f"Command: `benchmarks/search_vs_grid.sh {' '.join(seeds)}` ({time.strftime('%Y-%m-%d')}; raw tables in "
         f"`{out}/*/search.json`).", "",
         "| search | best dev overall | its lr | its dropout | complete | pruned | optimizer steps | seconds |",
         "|---|---|---|---|---|---|---|---|"]
for name, folder in rows:
    s = json.loads((folder / "search.json").read_text())
    best = s["best"] or {"score": None, "params": {}}
    lines.append(f"| {name} | {best['score']:.4f} | {best['params'].get('train.lr', 0):.3g} | "
                 f"{best['params'].get('model.dropout', 0):.3f} | {s['counts']['complete']} | {s['counts']['pruned']} | "
                 f"{s['compute']['updates']} | {s['compute']['seconds']} |")
Path("docs/results/search.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
