"""Data-parallel training: 2 CPU processes under torchrun (gloo) end with the same weights as one process
trained on the same global batches (sum and PCGrad), up to float summation order."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minbert.distributed import Parallel

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def no_dropout_backbone(tiny_backbone, tmp_path_factory) -> Path:
    """The tiny BERT with dropout off: then the processes' shares of a batch see the same network."""
    folder = tmp_path_factory.mktemp("tiny-nodrop")
    for f in tiny_backbone.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def run_train(out: Path, backbone: Path, data: Path, processes: int, *extra: str) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    args = ["-m", "minbert", "train", "--data-dir", str(data), "--out", str(out), "--set", f"model.backbone={backbone}",
            "--set", "model.dropout=0.0", "--set", "train.epochs=1", "--set", "train.schedule.until=fixed_steps",
            "--set", "train.schedule.steps_per_epoch=4", "--set", "train.batch_size={sst: 6, para: 8, sts: 5}",
            "--set", "train.threads=1", "--set", "eval.test_predictions=false", "--set", "train.log_every=1", *extra]
    proc = subprocess.run(launcher + args, capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("combine", ["sum", "pcgrad", "upgrad", "famo"])
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, no_dropout_backbone, small_data_dir, combine):
    extra = ["--set", f"train.combine.name={combine}"]
    run_train(tmp_path / "one", no_dropout_backbone, small_data_dir, 1, *extra)
    two_proc = run_train(tmp_path / "two", no_dropout_backbone, small_data_dir, 2, *extra)
    start = load_file(str(no_dropout_backbone / "model.safetensors"))
    for name in ("model.safetensors", "heads.safetensors"):
        a, b = (load_file(str(tmp_path / r / "best" / name)) for r in ("one", "two"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4), k
        if name == "model.safetensors":  # and training did move the weights
            assert any(not torch.allclose(a[k], start[k]) for k in a if k in start)
    one, two = (json.loads((tmp_path / r / "best_metrics.json").read_text()) for r in ("one", "two"))
    assert one.keys() == two.keys() and all(abs(one[k] - two[k]) < 1e-3 for k in one)
    assert "2 processes" in (tmp_path / "two" / "log.txt").read_text()
    # only rank 0 logs: one steps.jsonl line per update, one progress bar; the gradient norm is the global one
    steps = {r: [json.loads(x) for x in (tmp_path / r / "steps.jsonl").read_text().splitlines()] for r in ("one", "two")}
    assert [s["update"] for s in steps["two"]] == [s["update"] for s in steps["one"]] == [1, 2, 3, 4]
    for a, b in zip(steps["one"], steps["two"]):
        assert a["lr"] == b["lr"] and b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    assert two_proc.stderr.count("epoch 1:   0%") == 1 and len(two_proc.stdout.splitlines()) == 1


def test_shares_cover_the_batch_with_weights_summing_to_one():
    index = list(range(7))
    shares = [Parallel(r, 3).share(index) for r in range(3)]
    assert sorted(i for rows, _ in shares for i in rows) == index
    assert sum(w for _, w in shares) == pytest.approx(1.0)
    rows, weight = Parallel(2, 3).share([5, 9])  # no row left for rank 2: a weight-0 stand-in
    assert rows == [5] and weight == 0.0
