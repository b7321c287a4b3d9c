"""`train.ema`: the moving average of the weights against its closed form, swapped in and out bit for bit, and
end to end: at decay 0 a run equals the run without it; at 0.9 the saved best/ is the average that was
evaluated (a fresh `minbert evaluate` of it gives the run's best metrics) and not the last weights."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minbert.training.average import WeightAverage

REPO = Path(__file__).resolve().parents[1]


def test_the_average_forgets_a_jump_by_the_product_of_its_rates():
    """Weights that jump from w0 to w1 and stay: after n updates the average is w1 + prod(d_k) (w0 - w1),
    d_k = min(decay, (1 + k) / (10 + k))."""
    w = torch.nn.Linear(3, 2)
    w0 = [p.detach().clone() for p in w.parameters()]
    average = WeightAverage(w, decay=0.9)
    with torch.no_grad():
        for p in w.parameters():
            p.add_(1.0)
    for n in range(1, 51):
        average.update(n)
    kept = math.prod(min(0.9, (1 + k) / (10 + k)) for k in range(1, 51))
    for a, p, p0 in zip(average.average, w.parameters(), w0):
        assert torch.allclose(a, p.detach() + kept * (p0 - p.detach()), atol=1e-6)


def test_applied_swaps_the_average_in_and_the_weights_back_bit_for_bit():
    torch.manual_seed(0)
    w = torch.nn.Linear(4, 4)
    average = WeightAverage(w, decay=0.5)
    with torch.no_grad():
        w.weight.mul_(3.0)
    average.update(100)
    own = w.weight.detach().clone()
    with average.applied():
        assert torch.equal(w.weight, average.average[0])
        assert not torch.equal(w.weight, own)
    assert torch.equal(w.weight, own)


def test_a_saved_average_of_other_shapes_is_refused():
    average = WeightAverage(torch.nn.Linear(2, 2), decay=0.9)
    with pytest.raises(ValueError, match="not of this model's shapes"):
        average.load_state({"decay": 0.9, "average": [torch.zeros(3, 3), torch.zeros(3)]})


def train(out: Path, backbone: Path, data: Path, *sets: str) -> dict:
    args = [sys.executable, "-m", "minbert", "train", "--out", str(out), "--data-dir", str(data),
            "--set", f"model.backbone={backbone}", "--set", "tasks=[sst, sts]", "--set", "train.epochs=2",
            "--set", "train.schedule.until=fixed_steps", "--set", "train.schedule.steps_per_epoch=6",
            "--set", "train.batch_size={sst: 4, sts: 4}", "--set", "eval.test_predictions=false",
            "--set", "train.threads=1", *[a for s in sets for a in ("--set", s)]]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "best_metrics.json").read_text())


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {**load_file(str(folder / "model.safetensors")), **load_file(str(folder / "heads.safetensors"))}


def test_a_run_evaluates_and_keeps_the_average(tmp_path, tiny_backbone, small_data_dir):
    plain = train(tmp_path / "plain", tiny_backbone, small_data_dir)
    assert train(tmp_path / "zero", tiny_backbone, small_data_dir, "train.ema=0.0") == plain
    zero, ref = weights(tmp_path / "zero" / "best"), weights(tmp_path / "plain" / "best")
    assert all(torch.equal(zero[k], ref[k]) for k in ref)

    averaged = train(tmp_path / "ema", tiny_backbone, small_data_dir, "train.ema=0.9")
    again = subprocess.run([sys.executable, "-m", "minbert", "evaluate", str(tmp_path / "ema"), "--data-dir",
                            str(small_data_dir), "--out", str(tmp_path / "eval")], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    metrics = json.loads(again.stdout)["metrics"]
    assert metrics["sst"] == pytest.approx(averaged["sst"]) and metrics["sts"] == pytest.approx(averaged["sts"], abs=1e-6)
    best, last = weights(tmp_path / "ema" / "best"), weights(tmp_path / "ema" / "last")
    assert any(not torch.equal(best[k], last[k]) for k in best)  # last/ keeps the optimizer's weights
    # the average never steers training, so without it this run would be the plain run: its saved weights differ
    assert any(not torch.equal(best[k], ref[k]) for k in ref)


@pytest.mark.parametrize("setting, why", [("train.ema=1.0", "must be in [0, 1)"), ("train.ema=-0.1", "must be in [0, 1)"),
                                          ("train.layer_decay=0", "must be in (0, 1]"),
                                          ("train.layer_decay=1.5", "must be in (0, 1]")])
def test_an_average_or_a_decay_out_of_range_is_refused(setting, why):
    from minbert.errors import ConfigError
    from minbert.schema import load_config
    with pytest.raises(ConfigError, match=re.escape(f"{setting.split('=')[0]}: {why}")):
        load_config(None, [setting])
