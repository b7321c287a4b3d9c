#!/usr/bin/env bash
# Recipe variants of configs/default.yaml trained side by side on one GPU, to choose which recipe gets the
# (slow) 3-seed runs on the CPU. Not a result table: the CPU runs are. Runs on the device machine with the
# data (gzipped) and an fp16 copy of the backbone carried in .gpu/ (benchmarks/pack_for_gpu.sh).
# Usage: bash benchmarks/recipe_sweep_gpu.sh OUT_DIR NAME... (names below; `best*` are configs/best-cpu.yaml;
# a name ending in _s2 or _s3 is that variant with seed 11712 or 11713)
# Table: python benchmarks/sweep_table.py OUT_DIR (docs/results/recipe-sweep.md holds the one that chose best-cpu)
# best_1000*: from when best-cpu was round-robin; its random_subset schedule takes no steps_per_epoch (refused).
set -uo pipefail
out=$1; shift
data=/tmp/minbert-data; mkdir -p "$data" "$out"
for f in .gpu/data/*.gz; do gunzip -c "$f" > "$data/$(basename "${f%.gz}")"; done
export MINBERT_DATA_DIR=$data PYTHONPATH=src PYTHONUNBUFFERED=1
d="--config configs/default.yaml"
mix='model.heads={sts: {pair_encoding: siamese, similarity: cosine, cosine_scale: relu}}'
b="--config configs/best-cpu.yaml"
rs="--set train.schedule.name=random_subset"  # per-task examples per epoch: train.schedule.subset_size
# (configs/best-cpu.yaml is itself random_subset, now {sst: 8544, para: 44800, sts: 12800}, run over 3 CPU seeds;
# the rs_* and the best_sts12k / best_sst17k variants, each a full subset, are not run yet)
variant() {  # the --set arguments of one variant
  case $1 in
    *_s2) echo "$(variant "${1%_s2}") --set train.seed=11712" ;;
    *_s3) echo "$(variant "${1%_s3}") --set train.seed=11713" ;;
    default) echo "--config configs/default.yaml" ;;
    siamese) echo "$d --set model.pair_encoding=siamese --set 'model.features=[u, v, abs_diff, product]' --set 'model.heads={sts: {similarity: cosine, cosine_scale: relu}}'" ;;
    mix) echo "$d --set '$mix'" ;;
    mix_para64) echo "$d --set '$mix' --set 'train.batch_size={sst: 16, para: 64, sts: 16}'" ;;
    mix_3ep) echo "$d --set '$mix' --set train.epochs=3" ;;
    mix_lr1e-4) echo "$d --set '$mix' --set train.lr=1e-4" ;;
    mix_cosent) echo "$d --set 'model.heads={sts: {pair_encoding: siamese, similarity: cosine, cosine_scale: relu, loss: cosent}}'" ;;
    mix_staged) echo "$d --set '$mix' --set train.epochs=3 --set 'train.freeze_stages=[{epochs: 1, train: heads}, {epochs: 2, train: all}]'" ;;
    mix_pcgrad) echo "$d --set '$mix' --set train.combine.name=pcgrad" ;;
    mix_para64_3ep) echo "$d --set '$mix' --set 'train.batch_size={sst: 16, para: 64, sts: 16}' --set train.epochs=3" ;;
    mix_lr1e-4_seed2) echo "$d --set '$mix' --set train.lr=1e-4 --set train.seed=11712" ;;
    mix_lr2e-4) echo "$d --set '$mix' --set train.lr=2e-4" ;;
    mix_lr1e-4_para2x) echo "$d --set '$mix' --set train.lr=1e-4 --set train.combine.name=weighted --set 'train.combine.weights={para: 2}'" ;;
    mix_lr1e-4_paracls) echo "$d --set 'model.heads={sts: {pair_encoding: siamese, similarity: cosine, cosine_scale: relu}, para: {pooling: cls}}' --set train.lr=1e-4" ;;
    mix_lr1e-4_para64) echo "$d --set '$mix' --set train.lr=1e-4 --set 'train.batch_size={sst: 16, para: 64, sts: 16}'" ;;
    mix_lr1e-4_cosine) echo "$d --set '$mix' --set train.lr=1e-4 --set train.lr_decay=cosine" ;;
    mix_lr1e-4_3ep) echo "$d --set '$mix' --set train.lr=1e-4 --set train.epochs=3" ;;
    best) echo "--config configs/best-cpu.yaml" ;;
    best_seed2) echo "--config configs/best-cpu.yaml --set train.seed=11712" ;;
    best_seed3) echo "--config configs/best-cpu.yaml --set train.seed=11713" ;;
    best_para3x) echo "--config configs/best-cpu.yaml --set 'train.combine.weights={para: 3}'" ;;
    best_lr2e-4) echo "--config configs/best-cpu.yaml --set train.lr=2e-4" ;;
    best_sst2x) echo "--config configs/best-cpu.yaml --set 'train.combine.weights={para: 2, sst: 2}'" ;;
    best_1000) echo "--config configs/best-cpu.yaml --set train.schedule.steps_per_epoch=1000" ;;
    best_1000_seed2) echo "--config configs/best-cpu.yaml --set train.schedule.steps_per_epoch=1000 --set train.seed=11712" ;;
    best_1000_seed3) echo "--config configs/best-cpu.yaml --set train.schedule.steps_per_epoch=1000 --set train.seed=11713" ;;
    best_arr) echo "--config configs/best-cpu.yaml --set train.schedule.name=adaptive_round_robin --set train.epochs=3" ;;
    best_bf16) echo "--config configs/best-cpu.yaml --set train.precision=bf16" ;;
    rs_q35) echo "$b $rs --set 'train.schedule.subset_size={sst: 12800, para: 35200, sts: 6400}'" ;;
    rs_q35_w1) echo "$(variant rs_q35) --set train.combine.name=sum" ;;
    best_sts12k) echo "$b --set 'train.schedule.subset_size={sst: 12800, para: 44800, sts: 12800}'" ;;
    best_sst17k) echo "$b --set 'train.schedule.subset_size={sst: 17088, para: 44800, sts: 6400}'" ;;
    para_only) echo "$d --set 'tasks=[para]' --set train.epochs=1 --set train.schedule.steps_per_epoch=1744" ;;
    *) echo "unknown variant $1" >&2; return 1 ;;
  esac
}
for name in "$@"; do
  args=$(variant "$name") || exit 2
  eval "${PY:-python3} -m minbert train $args --set model.backbone=.gpu/minilm \
    --set train.threads=2 --set eval.test_predictions=false ${SWEEP_EXTRA:-} --out $out/$name" > "$out/$name.log" 2>&1 &
done
wait
for name in "$@"; do
  echo "== $name: $(grep -E '^training done|Error|error' "$out/$name.log" | tail -1)"
  grep -E '^epoch [0-9]+: dev' "$out/$name.log" | sed 's/^/   /'
done
