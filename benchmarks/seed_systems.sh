#!/usr/bin/env bash
# The seed reports' best systems (configs/seeds/*.yaml) trained on this CPU over the full training data, seed
# 11711 each, two side by side with one thread each. A system whose dev overall beats best-cpu's
# (results/best-cpu/best_metrics.json, the same seed) gets seeds 11712 and 11713. The step-time column is
# measured apart, after the trainings, with the systems taking turns in one process (under the same load):
# benchmarks/seeds_step_times.py -> $RESULTS/step_times.json, skipped if that file is there.
# At most two trainings run at once. A finished run (best_metrics.json and its six prediction files, in its
# run folder or already copied to results/seeds/, as in a fresh clone) is skipped, a killed one resumed from its last checkpoint (`minbert train --resume`), so rerunning continues
# after an interruption. Each run's six prediction files, metrics.jsonl, config.yaml and best_metrics.json go to
# results/seeds/NAME/ (seed 11711) and results/seeds/NAME/seed-SEED/ (more seeds); then
# benchmarks/seeds_table.py writes docs/results/seeds.md's table. Run logs: runs/seeds/NAME[-SEED].log.
# Usage: bash benchmarks/seed_systems.sh > logs/seed-systems.log 2>&1
# Environment, for smoke runs (defaults in brackets):
#   MINBERT [.venv/bin/minbert], PYTHON [.venv/bin/python]: the commands to run (word-split, so
#     MINBERT="python -m minbert" works)
#   SEEDS_RUNS [runs/seeds], SEEDS_RESULTS [results/seeds], SEEDS_DOC [docs/results/seeds.md]: where runs, copied
#     results and the table go
#   SEEDS_SET [none]: more `--set KEY=VALUE` for every training, one per line
#   SEEDS_SYSTEMS [every configs/seeds/*.yaml]: the system names to train, space-separated
#   SEEDS_BAR [results/best-cpu/best_metrics.json]: the dev overall a system must beat for more seeds
#   SEEDS_STEP_TIMES [1]: 0 skips the step-time measurement
# A smoke run of the whole script, seconds a training (a tiny BERT folder as in tests/conftest.py, a few rows;
# SEEDS_SET's value spans lines, one setting each):
#   SEEDS_RUNS=/tmp/s/runs SEEDS_RESULTS=/tmp/s/results SEEDS_DOC=/tmp/s/SEEDS.md SEEDS_SET='model.backbone=/tmp/tiny
#   data.train_limit=64
#   data.dev_limit=32
#   train.schedule.steps_per_epoch=4
#   train.schedule.subset_size={para: 64, sts: 48}' bash benchmarks/seed_systems.sh
set -uo pipefail
cd "$(dirname "$0")/.."
MINBERT=${MINBERT:-.venv/bin/minbert}
PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${SEEDS_RUNS:-runs/seeds}
RESULTS=${SEEDS_RESULTS:-results/seeds}
DOC=${SEEDS_DOC:-docs/results/seeds.md}
BAR=${SEEDS_BAR:-results/best-cpu/best_metrics.json}
JOBS=2
MORE_SEEDS=(11712 11713)

sets=(--set train.threads=1)
while IFS= read -r line; do
  [ -n "$line" ] && sets+=(--set "$line")
done <<< "${SEEDS_SET:-}"
if [ -n "${SEEDS_SYSTEMS:-}" ]; then
  read -ra systems <<< "$SEEDS_SYSTEMS"
else
  systems=()
  for config in configs/seeds/*.yaml; do systems+=("$(basename "$config" .yaml)"); done
fi

config_of() { echo "configs/seeds/$1.yaml"; }
run_of() { if [ "$2" = 11711 ]; then echo "$RUNS/$1"; else echo "$RUNS/$1-$2"; fi; }
result_of() { if [ "$2" = 11711 ]; then echo "$RESULTS/$1"; else echo "$RESULTS/$1/seed-$2"; fi; }

finished() {  # finished RUN_DIR: best_metrics.json and the six prediction files are there
  [ -f "$1/best_metrics.json" ] || return 1
  local task split
  for task in sst para sts; do
    for split in dev test; do [ -f "$1/predictions/$task-$split-output.csv" ] || return 1; done
  done
}

train() {  # train NAME SEED: a fresh run, the rest of a killed one, or nothing if it finished; status in RUN.rc
  local name=$1 seed=$2 run config
  run=$(run_of "$name" "$seed")
  config=$(config_of "$name")
  if finished "$run" || finished "$(result_of "$name" "$seed")"; then
    echo "$name seed $seed: finished, skipped"
    echo 0 > "$run.rc"
    return 0
  elif [ -f "$run/config.yaml" ]; then
    echo "$run: resuming"
    $MINBERT train --resume "$run" --config "$config" "${sets[@]}" --set train.seed="$seed" >> "$run.log" 2>&1
  else
    echo "$run: training $config"
    $MINBERT train --config "$config" "${sets[@]}" --set train.seed="$seed" --out "$run" >> "$run.log" 2>&1
  fi
  local rc=$?
  echo "$rc" > "$run.rc"
  [ "$rc" = 0 ] && echo "$run: done" || echo "$run: failed (exit $rc), see $run.log" >&2
}

pool() {  # pool "NAME SEED"...: train them, at most $JOBS at once
  local job
  for job in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    # shellcheck disable=SC2086
    train $job &
  done
  wait
}

beats_bar() {  # beats_bar RUN_DIR: its dev overall is above the bar's
  "$PYTHON" -c 'import json, sys
run, bar = (json.load(open(path))["overall"] for path in sys.argv[1:])
sys.exit(run <= bar)' "$1/best_metrics.json" "$BAR"
}

copy_results() {  # copy_results RUN_DIR DEST
  rm -rf "$2"/predictions "$2"/{best_metrics.json,config.yaml,metrics.jsonl}
  mkdir -p "$2/predictions"
  cp "$1"/predictions/{sst,para,sts}-{dev,test}-output.csv "$2/predictions/"
  cp "$1"/{best_metrics.json,config.yaml,metrics.jsonl} "$2/"
}

mkdir -p "$RUNS"
jobs_list=()
for name in "${systems[@]}"; do
  [ -f "$(config_of "$name")" ] || { echo "no config configs/seeds/$name.yaml" >&2; exit 2; }
  jobs_list+=("$name 11711")
done
pool "${jobs_list[@]}"

more=()
for name in "${systems[@]}"; do
  run=$(run_of "$name" 11711)
  finished "$run" || run=$(result_of "$name" 11711)
  if finished "$run" && beats_bar "$run"; then
    echo "$name beats $BAR on dev overall: seeds ${MORE_SEEDS[*]} too"
    for seed in "${MORE_SEEDS[@]}"; do more+=("$name $seed"); done
  fi
done
[ ${#more[@]} -gt 0 ] && pool "${more[@]}"

failed=0
for name in "${systems[@]}"; do
  for seed in 11711 "${MORE_SEEDS[@]}"; do
    run=$(run_of "$name" "$seed")
    [ -f "$run.rc" ] && [ "$(cat "$run.rc")" != 0 ] && failed=1
    finished "$run" || continue
    copy_results "$run" "$(result_of "$name" "$seed")"
  done
done

if [ "${SEEDS_STEP_TIMES:-1}" != 0 ] && [ ! -f "$RESULTS/step_times.json" ]; then
  echo "measuring step times -> $RESULTS/step_times.json"
  "$PYTHON" benchmarks/seeds_step_times.py --out "$RESULTS/step_times.json" "${sets[@]}" || failed=1
fi
"$PYTHON" benchmarks/seeds_table.py --results "$RESULTS" --step-times "$RESULTS/step_times.json" --doc "$DOC" \
  || failed=1
echo "table written to $DOC"
exit "$failed"
