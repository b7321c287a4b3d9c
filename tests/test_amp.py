"""The mixed-precision path of the trainer (autocast + GradScaler), run on CPU: the trainer only enables it
on CUDA, so the test widens `Trainer.AMP_DEVICES`; the GPU run itself needs a GPU (docs/design/performance.md)."""
import math

import pytest
import torch

from minbert.schema import load_config
from minbert.training.setup import RunLog
from minbert.training.run import check_inputs
from minbert.training.trainer import Trainer


def make(tmp_path, backbone, data, precision, monkeypatch):
    monkeypatch.setattr(Trainer, "AMP_DEVICES", ("cuda", "cpu"))
    cfg = load_config(None, [f"model.backbone={backbone}", f"train.precision={precision}", "train.device=cpu",
                             "train.epochs=1", "train.schedule.until=fixed_steps", "train.schedule.steps_per_epoch=4",
                             "train.batch_size={sst: 4, para: 4, sts: 4}", "eval.test_predictions=false"])
    data_path, _, _ = check_inputs(cfg, str(data))
    trainer = Trainer(cfg, tmp_path, data_path, RunLog(tmp_path / "log.txt"))
    trainer.model.train()
    trainer.trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    return trainer


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_autocast_runs_matmuls_in_half_precision_and_keeps_fp32_weights(tmp_path, tiny_backbone, small_data_dir,
                                                                         monkeypatch, precision, dtype):
    trainer = make(tmp_path, tiny_backbone, small_data_dir, precision, monkeypatch)
    assert trainer.amp_dtype == dtype and (trainer.scaler is not None) == (precision == "fp16")
    seen = []
    hook = trainer.model.encoder.encoder.layer[0].attention.self.query.register_forward_hook(
        lambda m, i, o: seen.append(o.dtype))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    stepped = False
    for _ in range(20):  # fp16 starts at a large loss scale: the first steps may overflow and be skipped
        assert trainer.forward_backward(["sst", "para", "sts"])
        if trainer.optimizer_step(True):
            stepped = True
            break
    hook.remove()
    assert stepped
    assert seen and all(d == dtype for d in seen)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) > 0.9 * len(before)


def test_fp16_overflow_skips_the_step_and_lowers_the_scale(tmp_path, tiny_backbone, small_data_dir, monkeypatch):
    trainer = make(tmp_path, tiny_backbone, small_data_dir, "fp16", monkeypatch)
    scale = trainer.scaler.get_scale()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert trainer.forward_backward(["sst", "para", "sts"])
    next(trainer.model.encoder.parameters()).grad.view(-1)[0] = math.inf  # what an fp16 overflow leaves behind
    assert trainer.optimizer_step(True) is False
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    assert trainer.scaler.get_scale() < scale
