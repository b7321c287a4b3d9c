#!/usr/bin/env bash
# Tasks became data (task_catalogues/*.yaml instead of a table in code): does configs/default.yaml still train
# to the same weights and dev metrics? Trains a short version of it (same seed, full training files, a fixed dev
# subset) at two commits, each from a git worktree with this checkout's .venv, and compares every tensor of
# best/ and the dev metrics, bit for bit.
# Usage: bash benchmarks/same_path.sh OLD_COMMIT [NEW_COMMIT (default HEAD)] [OUT (default runs/same-path)]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=${2:-HEAD} out=${3:-runs/same-path}
short=(--set train.schedule.steps_per_epoch=40 --set train.epochs=1 --set data.dev_limit=300
       --set eval.test_predictions=false --set train.threads=1)
mkdir -p "$out"
data=$(.venv/bin/python -c "from minbert.data.loading import resolve_data_dir; print(resolve_data_dir())")
for side in old new; do
  commit=${!side}
  tree="$out/tree-$side"
  [ -d "$tree" ] || git worktree add -q --detach "$tree" "$commit"
  rm -rf "$out/run-$side"
  PYTHONPATH="$tree/src" .venv/bin/python -m minbert train --config "$tree/configs/default.yaml" \
    --out "$out/run-$side" --data-dir "$data" "${short[@]}" 2> "$out/$side.log" > /dev/null
  echo "$side ($commit): $(tail -n 1 "$out/run-$side/metrics.jsonl")"
done
.venv/bin/python - "$out" <<'PY'
import json, sys
from pathlib import Path
from safetensors.torch import load_file
out = Path(sys.argv[1])
for name in ("model.safetensors", "heads.safetensors"):
    a, b = (load_file(str(out / f"run-{s}" / "best" / name)) for s in ("old", "new"))
    same = a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    print(f"best/{name}: {len(a)} tensors, {'bit-identical' if same else 'DIFFERENT'}")
dev = [json.loads((out / f"run-{s}" / "metrics.jsonl").read_text().splitlines()[-1])["dev"] for s in ("old", "new")]
print("dev metrics:", "identical" if dev[0] == dev[1] else f"DIFFERENT {dev}")
PY
