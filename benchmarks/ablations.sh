#!/usr/bin/env bash
# The ablation tables of docs/results/ablations.md at the files' `--budget` (a quarter of each task's training
# rows, the full dev sets), two seeds each: every table's first seed first, then the second, two tables side by
# side with one thread each. `minbert ablate` reuses finished runs and rewrites its table after every run, so
# rerunning continues where an interrupted run stopped (from the run's last checkpoint). After each pass the
# tables are copied to results/ablations/NAME/ (ablation.json, ablation.md, and ROW/seed-N/metrics.jsonl:
# each finished run's per-epoch dev scores and losses) and put into the doc by
# benchmarks/ablations_doc.py. A table whose copy in results/ablations/NAME/ already holds every run of the
# pass (benchmarks/ablation_complete.py: as in a fresh clone, where runs/ is empty) is skipped, not trained
# again: move that folder away, or set ABL_RESULTS, to retrain it. Table 001's MLM rows need two encoders from
# `minbert pretrain-mlm` first (docs/results/mlm.md): trained here when missing and table 001 is to be
# trained, before the tables. Many hours on 2 CPU cores.
# Usage: bash benchmarks/ablations.sh [NAME ...] > logs/ablations.log 2>&1
#   NAME: configs/ablations/NAME.yaml (default: the five seed tables 000-004)
# Environment: MINBERT [.venv/bin/minbert], PYTHON [.venv/bin/python], ABL_RUNS [runs/ablations],
#   ABL_RESULTS [results/ablations], ABL_DOC [docs/results/ablations.md], ABL_JOBS [2],
#   ABL_SET: more `--set KEY=VALUE` for every run, one per line (smoke runs: a tiny backbone, a few rows)
set -uo pipefail
cd "$(dirname "$0")/.."
MINBERT=${MINBERT:-.venv/bin/minbert}
PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${ABL_RUNS:-runs/ablations}
RESULTS=${ABL_RESULTS:-results/ablations}
DOC=${ABL_DOC:-docs/results/ablations.md}
JOBS=${ABL_JOBS:-2}

sets=(--set train.threads=1)
while IFS= read -r line; do
  [ -n "$line" ] && sets+=(--set "$line")
done <<< "${ABL_SET:-}"
if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for f in configs/ablations/00*.yaml; do names+=("$(basename "$f" .yaml)"); done
fi
for name in "${names[@]}"; do
  [ -f "configs/ablations/$name.yaml" ] || { echo "no ablation file configs/ablations/$name.yaml" >&2; exit 2; }
done

mlm() {  # mlm OUT [--set ...]: further MLM pre-training for table 001's MLM rows, unless OUT has its encoder
  local out=$1
  shift
  [ -f "$out/model.safetensors" ] && return 0
  echo "pretraining $out"
  $MINBERT pretrain-mlm --out "$out" --set max_steps=400 --set heldout=0.02 "$@" --overwrite >> "$out.log" 2>&1
}
complete() {  # complete NAME [--seeds 1]: its copied table already holds every run of this pass
  "$PYTHON" benchmarks/ablation_complete.py "configs/ablations/$1.yaml" "$RESULTS/$1" "${@:2}" "${sets[@]}"
}
needs_mlm=0
for name in "${names[@]}"; do
  case $name in 001-*) complete "$name" > /dev/null || needs_mlm=1 ;; esac
done
if [ "$needs_mlm" = 1 ]; then
  mkdir -p runs
  mlm runs/mlm-course || exit 1
  # v2, as the report's second version: the same passages (100 updates of 4 x 32 = 12,800), a 4x larger batch
  mlm runs/mlm-course-v2 --set batch_size=4 --set accumulate=32 --set max_steps=100 || exit 1
fi

failed=0
table() {  # table NAME [--seeds 1]: train what is missing of it, copy its table to the results
  local name=$1
  shift
  complete "$name" "$@" && return 0
  mkdir -p "$RUNS"
  $MINBERT ablate "configs/ablations/$name.yaml" --out "$RUNS/$name" --budget "${sets[@]}" "$@" >> "$RUNS/$name.log" 2>&1
  local rc=$?
  if [ -f "$RUNS/$name/ablation.md" ]; then
    mkdir -p "$RESULTS/$name"
    cp "$RUNS/$name/ablation.json" "$RUNS/$name/ablation.md" "$RESULTS/$name/"
    local run  # and each finished run's per-epoch dev scores and losses (NAME/ROW/seed-N/metrics.jsonl)
    for run in "$RUNS/$name"/*/seed-*; do
      [ -f "$run/ablation_result.json" ] || continue
      mkdir -p "$RESULTS/$name/${run#"$RUNS/$name/"}"
      cp "$run/metrics.jsonl" "$RESULTS/$name/${run#"$RUNS/$name/"}/"
    done
  fi
  [ "$rc" = 0 ] && echo "$name $*: done" || echo "$name $*: exit $rc, see $RUNS/$name.log" >&2
  return "$rc"
}

for pass in "--seeds 1" ""; do
  for name in "${names[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || failed=1; done
    # shellcheck disable=SC2086
    table "$name" $pass &
  done
  while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
  "$PYTHON" benchmarks/ablations_doc.py --results "$RESULTS" --doc "$DOC" || failed=1
done
exit "$failed"
