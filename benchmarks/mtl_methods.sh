#!/usr/bin/env bash
# docs/results/mtl-methods.md's two accuracy tables, from configs/ablations/mtl-methods.yaml (every way of
# combining the tasks on best-cpu's recipe, two seeds; two single-thread runs side by side):
#   quarter: every row at a quarter of best-cpu's budget (`--budget`; about 4 h on 2 CPU cores for the 19 rows);
#   full:    the quarter table's best three rows by mean dev overall, best-cpu's own row (`weighted`, the table's
#            first) left out since its own seeds are results/best-cpu-config/, at best-cpu's full budget, with
#            test-student prediction files (1.1 s a step here: about 2 h 45 min).
# Each finished run's metrics.jsonl, grad_cosine.jsonl, config.yaml, best_metrics.json and ablation_result.json
# are copied into results/mtl-methods/TABLE/ROW/seed-N/ (the full runs' prediction files and log too, by
# benchmarks/ship_runs.py) with the table (ablation.md, ablation.json), and benchmarks/ablations_doc.py puts
# each table between the doc's markers. `minbert ablate` reuses finished runs and continues a stopped one:
# rerun this script after an interruption.
# Usage: bash benchmarks/mtl_methods.sh [quarter|full|all] > logs/mtl-methods.log 2>&1   (default: all)
# Environment (defaults in brackets): MINBERT [.venv/bin/minbert], PYTHON [.venv/bin/python],
#   MTL_RUNS [runs/ablate-mtl-methods; the full table: the same with -full], MTL_RESULTS [results/mtl-methods],
#   MTL_DOC [docs/results/mtl-methods.md], MTL_SET: more `--set KEY=VALUE` for every run, one per line (smoke
#   runs: a tiny backbone, a few rows), MTL_DATA_DIR [the default data folder]
set -euo pipefail
cd "$(dirname "$0")/.."
minbert=${MINBERT:-.venv/bin/minbert}
python=${PYTHON:-.venv/bin/python}
RUNS=${MTL_RUNS:-runs/ablate-mtl-methods}
RESULTS=${MTL_RESULTS:-results/mtl-methods}
DOC=${MTL_DOC:-docs/results/mtl-methods.md}
FILE=configs/ablations/mtl-methods.yaml
what=${1:-all}
case $what in quarter|full|all) ;; *) echo "usage: bash benchmarks/mtl_methods.sh [quarter|full|all]" >&2; exit 2 ;; esac
args=(--set train.threads=1)
while IFS= read -r line; do
  [ -n "$line" ] && args+=(--set "$line")
done <<< "${MTL_SET:-}"
[ -n "${MTL_DATA_DIR:-}" ] && args+=(--data-dir "$MTL_DATA_DIR")

publish() {  # publish RUNS TABLE: the finished runs' files and the table into $RESULTS/TABLE, the table into the doc
  local runs=$1 table=$2 run dest
  mkdir -p "$RESULTS/$table"
  for run in "$runs"/*/seed-*/; do
    run=${run%/}
    [ -f "$run/ablation_result.json" ] || continue  # a run the table does not hold (yet)
    dest="$RESULTS/$table/${run#"$runs/"}"
    if [ "$table" = full ]; then  # with its prediction files (ship_runs.py refuses a run without test files)
      $python benchmarks/ship_runs.py "$(dirname "$dest")" "$run" > /dev/null
    else
      rm -rf "$dest"
      mkdir -p "$dest"
      cp "$run"/{metrics.jsonl,config.yaml,best_metrics.json} "$dest/"
    fi
    cp "$run/ablation_result.json" "$dest/"
    if [ -f "$run/grad_cosine.jsonl" ]; then cp "$run/grad_cosine.jsonl" "$dest/"; fi
  done
  cp "$runs"/ablation.{md,json} "$RESULTS/$table/"
  $python benchmarks/ablations_doc.py --results "$RESULTS" --source results/mtl-methods --doc "$DOC" "$table"
}

if [ "$what" != full ]; then
  $minbert ablate "$FILE" --out "$RUNS" --budget --lanes 2 "${args[@]}"
  publish "$RUNS" quarter
fi
if [ "$what" != quarter ]; then
  # the quarter table's best three rows by mean dev overall, best-cpu's own row left out; only from a complete
  # quarter table (every variant of the file at --budget, every seed)
  picked=$($python - "$FILE" "$RESULTS/quarter/ablation.json" <<'PY'
import json, sys
import yaml
spec, table = yaml.safe_load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rows = {r["variant"]: r for r in table["rows"]}
missing = [v for v in spec["variants"] if len(rows.get(v, {}).get("seeds", [])) < len(spec["seeds"])]
if not table.get("budget") or missing:
    sys.exit(f"mtl_methods.sh: the quarter table {sys.argv[2]} is not complete at --budget"
             + (f" (rows lacking seeds: {', '.join(missing)})" if missing else ""))
chosen = sorted((r for v, r in rows.items() if v != "weighted (best-cpu)"), key=lambda r: -r["metrics"]["overall"]["mean"])
print("\n".join(r["variant"] for r in chosen[:3]))
PY
)
  mapfile -t best <<< "$picked"
  $minbert ablate "$FILE" --out "$RUNS-full" --only "${best[@]}" --lanes 2 "${args[@]}"
  publish "$RUNS-full" full
fi
