#!/usr/bin/env bash
# Search against grid (issue 43, part 6): the 5 x 4 grid of configs/sweeps/lr-dropout-grid.yaml and Optuna's TPE with
# median pruning (configs/sweeps/lr-dropout-search.yaml, 10 trials) over the same ranges and budget, the search over
# several sampler seeds, and the grid's best point trained again at two more training seeds (its seed spread).
# Copies each search's search.json / search.md / best.yaml / study.db / figures and the spread runs' metrics into
# results/search/ and writes the comparison (best dev score, its score at the end of training, trials complete /
# pruned, compute) to results/search/search-vs-grid.md, the table of docs/results/search.md. Each phase runs its jobs side by side, one CPU thread each; a rerun continues where a
# killed one stopped (finished trials are kept).
# Usage: benchmarks/search_vs_grid.sh [SEEDS...]   (default seeds: 0 1; runs go to runs/search-vs-grid/)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/search-vs-grid
if [ $# -gt 0 ]; then SEEDS=("$@"); else SEEDS=(0 1); fi
OUT=runs/search-vs-grid
MINBERT=${MINBERT:-minbert}
PYTHON=${PYTHON:-python3}
SPREAD_SEEDS=(11712 11713)

# 1. the grid: two workers drawing its 20 points from one study
$MINBERT sweep configs/sweeps/lr-dropout-grid.yaml --out "$OUT/grid" --workers 2 --set train.threads=1

# 2. the searches, one per sampler seed, side by side (one worker each, so each repeats trial for trial)
pids=()
for seed in "${SEEDS[@]}"; do
    $MINBERT sweep configs/sweeps/lr-dropout-search.yaml --out "$OUT/tpe-seed$seed" --seed "$seed" \
        --set train.threads=1 >> "$OUT/tpe-seed$seed.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

# 3. the grid's best point at two more training seeds: the seed spread a search must land within
pids=()
for s in "${SPREAD_SEEDS[@]}"; do
    if [ ! -f "$OUT/grid-best-seed$s/best_metrics.json" ]; then
        where=(--out "$OUT/grid-best-seed$s"); [ -d "$OUT/grid-best-seed$s/last" ] && where=(--resume "$OUT/grid-best-seed$s")
        $MINBERT train --config "$OUT/grid/best.yaml" --set train.seed="$s" --set train.threads=1 \
            "${where[@]}" >> "$OUT/grid-best-seed$s.log" 2>&1 &
        pids+=($!)
    fi
done
for pid in "${pids[@]}"; do wait "$pid"; done

RESULTS=results/search
for name in grid "${SEEDS[@]/#/tpe-seed}"; do
    mkdir -p "$RESULTS/$name"
    cp -r "$OUT/$name"/{search.json,search.md,best.yaml,study.db,figures} "$RESULTS/$name/"
done
for s in "${SPREAD_SEEDS[@]}"; do
    mkdir -p "$RESULTS/grid-best-seed$s"
    cp "$OUT/grid-best-seed$s"/{best_metrics.json,config.yaml,metrics.jsonl} "$RESULTS/grid-best-seed$s/"
done

SPREAD="${SPREAD_SEEDS[*]}" $PYTHON - "$RESULTS" "${SEEDS[@]}" <<'PY'
import json, os, statistics, sys, time
from pathlib import Path

import optuna
from minbert.evaluate import selection_score
from minbert.tasks import COURSE_TASKS

out, seeds = Path(sys.argv[1]), sys.argv[2:]


def final_score(folder: Path, trial_number: int) -> float:
    """The dev score a trial had at its last evaluation (the end of training for a complete trial)."""
    study = optuna.load_study(study_name=json.loads((folder / "search.json").read_text())["study"],
                              storage=f"sqlite:///{folder / 'study.db'}")
    values = study.trials[trial_number].intermediate_values
    return values[max(values)]


grid = json.loads((out / "grid" / "search.json").read_text())
spread_seeds = os.environ["SPREAD"].split()
spread = [grid["best"]["score"]] + [selection_score(json.loads((out / f"grid-best-seed{s}" / "best_metrics.json")
                                                                .read_text()), COURSE_TASKS) for s in spread_seeds]
mean, std = statistics.mean(spread), statistics.stdev(spread)
rows = [("grid 5 x 4 (no pruning)", out / "grid")] + [(f"TPE + median pruning, seed {s}", out / f"tpe-seed{s}")
                                                      for s in seeds]
lines = ["# Search against grid: learning rate x dropout", "",
         "The 5 x 4 grid `configs/sweeps/lr-dropout-grid.yaml` and Optuna's TPE with median pruning",
         "`configs/sweeps/lr-dropout-search.yaml` (10 trials, a dev evaluation every 25 optimizer steps for the",
         "pruner) over the same ranges (lr 1e-5 to 3e-4 on a log scale, dropout 0 to 0.5) at the budget of",
         "`configs/sweeps/lr-dropout.yaml` (2,000 training rows per task, one epoch of 125 steps, a fixed 500-row dev",
         "subset per task), the search over several sampler seeds. Every trial trains with the same training seed",
         "(11711). Quora figures are inflated by the backbone's own training data (all-MiniLM-L6-v2 saw Quora",
         "duplicate pairs).", "",
         f"Command: `bash benchmarks/search_vs_grid.sh {' '.join(seeds)}` ({time.strftime('%Y-%m-%d')}, the 2-core CPU, "
         f"each job at one thread, two side by side; raw tables in `{out}/`).", "",
         "| search | best dev overall | same trial at the end of training | its lr | its dropout | complete | pruned "
         "| optimizer steps | share of the grid's steps | seconds |",
         "|---|---|---|---|---|---|---|---|---|---|"]
grid_updates = grid["compute"]["updates"]
for name, folder in rows:
    s = json.loads((folder / "search.json").read_text())
    best = s["best"]
    lines.append(f"| {name} | {best['score']:.4f} | {final_score(folder, best['trial']):.4f} | "
                 f"{best['params']['train.lr']:.3g} | {best['params']['model.dropout']:.3f} | "
                 f"{s['counts']['complete']} | {s['counts']['pruned']} | {s['compute']['updates']} | "
                 f"{s['compute']['updates'] / grid_updates:.2f} | {s['compute']['seconds']:.0f} |")
lines += ["", f"The grid's best point (lr {grid['best']['params']['train.lr']:.3g}, dropout "
          f"{grid['best']['params']['model.dropout']:.3f}) at training seeds 11711 (the grid's run), "
          f"{' and '.join(spread_seeds)}: "
          f"dev overall {', '.join(f'{v:.4f}' for v in spread)}; mean {mean:.4f} ± {std:.4f} (sample std).", ""]
(out / "search-vs-grid.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
