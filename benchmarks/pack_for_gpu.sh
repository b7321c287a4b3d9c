#!/usr/bin/env bash
# Packs what a GPU machine without network needs into .gpu/ (ignored by git, under the device tool's 64 MiB):
# the course's SST / Quora / STS files gzipped (~6 MB) and the default backbone in fp16 (~45 MB; minbert
# loads it into fp32). Then: device run, carry [".gpu"], `bash benchmarks/recipe_sweep_gpu.sh ...`.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
data=${MINBERT_DATA_DIR:-../shared/data}
grep -qx '/.gpu/' .git/info/exclude || echo /.gpu/ >> .git/info/exclude
mkdir -p .gpu/minilm .gpu/data
src=$($py -c "from minbert.backbone import default_backbone_dir; print(default_backbone_dir())")
cp "$src"/{config.json,vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json} .gpu/minilm/
$py - "$src/model.safetensors" .gpu/minilm/model.safetensors <<'PY'
import sys
from safetensors.torch import load_file, save_file
save_file({k: v.half().contiguous() for k, v in load_file(sys.argv[1]).items()}, sys.argv[2])
PY
for f in ids-sst quora sts; do
  for s in train dev test-student; do gzip -c "$data/$f-$s.csv" > ".gpu/data/$f-$s.csv.gz"; done
done
du -sh .gpu
