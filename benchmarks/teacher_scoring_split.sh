#!/usr/bin/env bash
# Do two student seeds started at the same moment split the scoring of their teachers? Two students of
# configs/distill/bam.yaml, every task taught by the same two teacher runs, side by side at one thread each,
# with a tiny training budget (10 steps, 200 dev rows) so that the run is almost all scoring: the teachers
# still score every training row. Each student's log.txt says which outputs it scored and which it read from
# its sibling's teacher_outputs.parts; /usr/bin/time gives each one's wall time.
# Usage: bash benchmarks/teacher_scoring_split.sh TEACHER_A TEACHER_B OUT   (e.g. the two teachers of
#        configs/recipes/mt-dnn-kd.yaml: runs/mt-dnn-kd/teacher-11711 runs/mt-dnn-kd/teacher-11712 runs/split)
set -euo pipefail
cd "$(dirname "$0")/.."
minbert=${MINBERT:-.venv/bin/minbert}
a=$1; b=$2; out=$3
mkdir -p "$out"
for seed in 11711 11712; do
  /usr/bin/time -f "student-$seed wall %e s" "$minbert" train --config configs/distill/bam.yaml --out "$out/student-$seed" \
    --set "train.distill.teachers={sst: [$a, $b], para: [$a, $b], sts: [$a, $b]}" \
    --set train.seed=$seed --set train.threads=1 --set train.epochs=1 \
    --set 'train.schedule.subset_size={sst: 160, para: 320, sts: 160}' \
    --set data.dev_limit=200 --set eval.test_predictions=false > "$out/student-$seed.out" 2>&1 &
done
wait
grep -h "wall" "$out"/student-*.out
grep -H "distill:" "$out"/student-*/log.txt
