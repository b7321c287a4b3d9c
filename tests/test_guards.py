"""Numerical and disk guards of the training loop, in process with a tiny model."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from minbert.training import state as training_state
from minbert.cli import main
from minbert.schema import load_config
from minbert.model import MultitaskModel
from minbert.errors import TrainingError
from minbert.training.run import train


def tiny_cfg(backbone, *extra):
    return load_config(None, [f"model.backbone={backbone}", "train.epochs=1", "train.schedule.steps_per_epoch=8",
                              "train.checkpoint_every=1", "train.batch_size={sst: 4, para: 4, sts: 4}",
                              "train.max_bad_steps=3", "eval.test_predictions=false", *extra])


def poison_loss(monkeypatch, factor_at_call):
    """Multiply the n-th task loss of the run by factor_at_call(n) (1.0 leaves it alone)."""
    real_loss = MultitaskModel.loss
    calls = {"n": 0}

    def loss(self, task, out, labels):
        calls["n"] += 1
        return real_loss(self, task, out, labels) * factor_at_call(calls["n"])

    monkeypatch.setattr(MultitaskModel, "loss", loss)


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path, tiny_backbone, small_data_dir, monkeypatch):
    poison_loss(monkeypatch, lambda n: float("nan") if n > 9 else 1.0)  # steps 1-3 are fine (3 tasks a step)
    with pytest.raises(TrainingError, match="3 non-finite steps in a row"):
        train(tiny_cfg(tiny_backbone), tmp_path, str(small_data_dir))
    log = (tmp_path / "log.txt").read_text()
    assert log.count("warning: non-finite loss or gradient") == 3
    state = json.loads((tmp_path / "last" / "trainer_state.json").read_text())
    assert (state["step"], state["updates"]) == (3, 3)  # the last good checkpoint is kept


def test_an_isolated_non_finite_step_is_skipped_and_counted(tmp_path, tiny_backbone, small_data_dir, monkeypatch):
    poison_loss(monkeypatch, lambda n: float("inf") if n == 4 else 1.0)
    train(tiny_cfg(tiny_backbone), tmp_path, str(small_data_dir))
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert record["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in load_file(str(tmp_path / "best" / "model.safetensors")).values())


def test_unwritable_run_directory_is_a_one_line_error(tmp_path, tiny_backbone, small_data_dir, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["train", "--data-dir", str(small_data_dir), "--out", str(blocker / "run"),
                 "--set", f"model.backbone={tiny_backbone}"])
    err = capsys.readouterr().err
    assert code == 3 and err.startswith(f"minbert: error: cannot write {blocker / 'run'}: ") and err.count("\n") == 1
    assert "nothing was written" in err  # a full disk: tests/test_write_faults.py (real faults, no mocks)


def test_interrupted_swap_is_recovered(tmp_path):
    (tmp_path / "last.old").mkdir()
    (tmp_path / "last.old" / "x").write_text("previous")
    (tmp_path / "last.tmp").mkdir()  # a half-written new checkpoint
    training_state.recover_interrupted_swap(tmp_path / "last")
    assert (tmp_path / "last" / "x").read_text() == "previous" and not (tmp_path / "last.tmp").exists()


def test_out_of_memory_names_the_batch_size(tmp_path, tiny_backbone, small_data_dir, monkeypatch, capsys):
    from minbert.model import MultitaskModel

    def no_memory(self, task, inputs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(MultitaskModel, "outputs", no_memory)  # the training step calls outputs()
    code = main(["train", "--data-dir", str(small_data_dir), "--out", str(tmp_path / "run"),
                 "--set", f"model.backbone={tiny_backbone}", "--set", "train.batch_size.sst=48"])
    err = capsys.readouterr().err
    errors = [line for line in err.replace("\r", "\n").splitlines() if "minbert: error:" in line]
    assert code == 1 and "Traceback" not in err and len(errors) == 1 and errors[0].startswith("minbert: error:")
    assert "out of memory on cpu with batch size 48 for task sst: lower train.batch_size.sst" in err
    assert "train.accumulate" in err


def test_frozen_encoder_with_a_parameter_free_head_trains_the_other_heads(tmp_path, tiny_backbone, small_data_dir,
                                                                          monkeypatch):
    """A frozen encoder and a cosine STS head leave STS nothing to learn: the run says so once and the other
    heads still get their gradients (it used to fail in backward)."""
    from minbert.combine import Combiner
    real_backward, learned = Combiner.backward, {}

    def backward(self, task, loss, *rest):
        result = real_backward(self, task, loss, *rest)
        learned.setdefault(task, set()).add(result)
        return result

    monkeypatch.setattr(Combiner, "backward", backward)
    cfg = tiny_cfg(tiny_backbone, "train.freeze_encoder=true", "model.pair_encoding=siamese",
                   "model.heads={sts: {similarity: cosine}}")
    metrics = train(cfg, tmp_path, str(small_data_dir))
    assert learned == {"sst": {True}, "para": {True}, "sts": {False}}
    assert set(metrics) >= {"sst", "para", "sts"}
    log = (tmp_path / "log.txt").read_text()
    assert log.count("task sts: nothing to train this epoch") == 1
    assert "task sst: nothing to train" not in log and "task para: nothing to train" not in log
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1]["sts"] > 0  # recorded all the same
