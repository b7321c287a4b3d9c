"""Optimisation controls in real (tiny) training runs: staged freezing, early stopping, precision on CPU."""
from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from minbert.schema import load_config
from minbert.training.run import train


def tiny(backbone, *extra):
    return load_config(None, [f"model.backbone={backbone}", "train.schedule.until=fixed_steps",
                              "train.schedule.steps_per_epoch=2", "train.batch_size={sst: 4, para: 4, sts: 4}",
                              "eval.test_predictions=false", *extra])


def test_staged_freezing_keeps_the_encoder_still_in_heads_only_epochs(tmp_path, tiny_backbone, small_data_dir):
    start = load_file(str(tiny_backbone / "model.safetensors"))
    cfg = tiny(tiny_backbone, "train.epochs=2", "train.freeze_stages=[{epochs: 1, train: heads}, {epochs: 1, train: all}]",
               "train.checkpoint_every=1")
    snapshots = {}
    from minbert.training import trainer as train_module
    real_end = train_module.Trainer.end_epoch

    def end_epoch(self):
        snapshots[self.progress.epoch] = {k: v.clone() for k, v in self.model.encoder.state_dict().items()}
        real_end(self)

    train_module.Trainer.end_epoch = end_epoch
    try:
        train(cfg, tmp_path, str(small_data_dir))
    finally:
        train_module.Trainer.end_epoch = real_end
    assert all(torch.equal(snapshots[1][k], start[k]) for k in start)  # epoch 1: heads only
    assert not all(torch.equal(snapshots[2][k], start[k]) for k in start)  # epoch 2: everything


def test_early_stopping_stops_after_patience(tmp_path, tiny_backbone, small_data_dir):
    # lr 0: dev never improves after epoch 1, so patience 1 ends the run after epoch 2 of 5
    cfg = tiny(tiny_backbone, "train.epochs=5", "train.lr=0.0", "train.head_lr=0.0", "train.early_stop_patience=1")
    best = train(cfg, tmp_path, str(small_data_dir))
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2] and best["epoch"] == 1
    assert "early stop: no better dev score for 1 epochs" in (tmp_path / "log.txt").read_text()


def test_mixed_precision_request_on_cpu_runs_fp32(tmp_path, tiny_backbone, small_data_dir):
    plain = train(tiny(tiny_backbone, "train.epochs=1"), tmp_path / "fp32", str(small_data_dir))
    bf16 = train(tiny(tiny_backbone, "train.epochs=1", "train.precision=bf16"), tmp_path / "bf16", str(small_data_dir))
    assert plain == bf16
    assert "mixed precision runs on CUDA only; this run is fp32 on cpu" in (tmp_path / "bf16" / "log.txt").read_text()
