"""`train.init_from` (a run starting from a finished run's weights), the freeze stage `private` and a task drawn 0
times: SST's private layer trained alone on top of a multi-task model, every other weight left as it was."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from minbert.errors import ConfigError
from minbert.model import build_model
from minbert.schedules import TaskSizes, build_schedule
from minbert.schema import load_config
from minbert.training.run import resume, resume_config, train
from minbert.training.setup import trained_part

PRIVATE = "model.heads={sst: {private_layers: 1}}"


def tiny(backbone, *extra):
    return load_config(None, [f"model.backbone={backbone}", "train.batch_size={sst: 4, para: 4, sts: 4}",
                              "train.schedule.name=random_subset", "eval.test_predictions=false", *extra])


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory, tiny_backbone, small_data_dir):
    """A finished multi-task run whose SST head has a private top layer."""
    run = tmp_path_factory.mktemp("init") / "multi"
    train(tiny(tiny_backbone, PRIVATE, "train.epochs=1", "train.schedule.subset_size={sst: 16, para: 16, sts: 16}"),
          run, str(small_data_dir))
    return run


def finish(backbone, init, *extra):
    """SST's private layer and head alone, on top of `init`."""
    return tiny(backbone, PRIVATE, f"train.init_from={init}", "train.epochs=1",
                "train.schedule.subset_size={sst: 16, para: 0, sts: 0}",
                "train.freeze_stages=[{epochs: 1, train: private}]", *extra)


def last_dev(run):
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["dev"]


def test_a_run_from_a_finished_run_starts_from_its_weights(tmp_path, tiny_backbone, small_data_dir, multitask_run):
    # nothing learns (learning rates 0): the new run's dev scores are the finished run's, on all three tasks
    train(finish(tiny_backbone, multitask_run, "train.lr=0.0", "train.head_lr=0.0"), tmp_path, str(small_data_dir))
    assert last_dev(tmp_path) == pytest.approx(last_dev(multitask_run), abs=1e-6)
    assert f"weights (encoder and heads) from {multitask_run / 'best'}" in (tmp_path / "log.txt").read_text()
    saved = (tmp_path / "config.yaml").read_text()
    assert f"init_from: {multitask_run}" in saved  # absolute, as a resume elsewhere needs it


def test_private_stage_trains_only_ssts_own_weights(tmp_path, tiny_backbone, small_data_dir, multitask_run):
    train(finish(tiny_backbone, multitask_run), tmp_path, str(small_data_dir))
    before, after = (load_file(str(r / "best" / "model.safetensors")) for r in (multitask_run, tmp_path))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)  # shared encoder
    before, after = (load_file(str(r / "best" / "heads.safetensors")) for r in (multitask_run, tmp_path))
    others = [k for k in before if not k.startswith("sst.")]
    assert others and all(torch.equal(before[k], after[k]) for k in others)  # Quora's and STS's heads
    assert not torch.equal(before["sst.private.0.output.dense.weight"], after["sst.private.0.output.dense.weight"])
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("sst.") and ".private." not in k)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert list(record["train_loss"]) == ["sst"]  # the tasks drawn 0 times are evaluated only
    for task in ("para", "sts"):  # their weights are the finished run's, so are their scores
        assert record["dev"][task] == pytest.approx(last_dev(multitask_run)[task], abs=1e-6)


def test_train_only_private_freezes_the_shared_encoder_and_its_dropout(tiny_backbone):
    model, _ = build_model(tiny(tiny_backbone, PRIVATE), str(tiny_backbone))
    model.train()
    model.train_only("private")
    assert not any(p.requires_grad for p in model.encoder.parameters()) and not model.encoder.training
    assert all(p.requires_grad for p in model.heads.parameters()) and model.heads["sst"].private.training
    model.train_only("heads")
    assert not any(p.requires_grad for p in model.heads["sst"].private.parameters())
    assert all(p.requires_grad for n, p in model.heads.named_parameters() if ".private." not in f".{n}")
    model.train()
    model.train_only("all")
    assert all(p.requires_grad for p in model.parameters())


def test_freeze_stages_name_what_each_epoch_trains():
    cfg = load_config(None, ["train.freeze_stages=[{epochs: 2, train: all}, {epochs: 1, train: private}]"])
    assert [trained_part(cfg, e) for e in (1, 2, 3, 4)] == ["all", "all", "private", "private"]


def test_a_task_drawn_zero_times_has_no_batch():
    cfg = load_config(None, ["train.schedule.name=random_subset", "train.schedule.subset_size={sst: 8, para: 0}"])
    schedule = build_schedule(cfg.train.schedule, TaskSizes({"sst": 40, "para": 100, "sts": 12},
                                                            {"sst": 4, "para": 4, "sts": 4}), 1, 1)
    plan = schedule.plan(1)
    assert sum(step.count("sst") for step in plan) == 2 and sum(step.count("sts") for step in plan) == 3
    assert not any("para" in step for step in plan)
    with pytest.raises(ConfigError, match="train.schedule.subset_size: every task draws 0 examples"):
        load_config(None, ["train.schedule.name=random_subset", "train.schedule.subset_size={sst: 0, para: 0, sts: 0}"])


def test_a_finished_run_that_cannot_be_a_start_is_one_line_before_the_folder(tmp_path, tiny_backbone, small_data_dir,
                                                                            multitask_run):
    out = tmp_path / "out"
    cases = {
        str(tmp_path / "missing"): "not a run directory",
        str(multitask_run): "has other model settings (model.heads.sst.private_layers)",  # here no private layer
    }
    for init, why in cases.items():
        cfg = tiny(tiny_backbone, f"train.init_from={init}", "train.epochs=1")
        with pytest.raises(ConfigError, match=f"^train.init_from: .*{re.escape(why)}"):
            train(cfg, out, str(small_data_dir))
    other_tasks = tiny(tiny_backbone, PRIVATE, "tasks=[sst, sts]", f"train.init_from={multitask_run}")
    with pytest.raises(ConfigError, match="^train.init_from: .*was trained on sst, para, sts, this run has sst, sts"):
        train(other_tasks, out, str(small_data_dir))
    cls_pooling = finish(tiny_backbone, multitask_run, "model.pooling=cls")
    with pytest.raises(ConfigError, match=r"^train.init_from: .*has other model settings \(model.pooling\); only "
                                          "model.dropout may differ"):
        train(cls_pooling, out, str(small_data_dir))
    retrained = finish(tiny_backbone, multitask_run, "train.init_identity=0123456789abcdef")
    with pytest.raises(ConfigError, match="^train.init_identity: .*weights are not the ones this config names"):
        train(retrained, out, str(small_data_dir))
    other_backbone = tmp_path / "other-backbone"
    other_backbone.mkdir()
    for f in tiny_backbone.iterdir():
        (other_backbone / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ConfigError, match="^train.init_from: .*trained from backbone .*the vocabulary must be the same"):
        train(finish(other_backbone, multitask_run), out, str(small_data_dir))
    assert not out.exists()


def test_a_resume_before_the_first_checkpoint_starts_from_init_from_again(tmp_path, tiny_backbone, small_data_dir,
                                                                          multitask_run, monkeypatch):
    # nothing learns, so a run that starts from the finished run scores as it did; one stopped before its first
    # checkpoint (no last/) must start from there again on resume, not from the backbone
    run = tmp_path / "run"
    train(finish(tiny_backbone, multitask_run, "train.lr=0.0", "train.head_lr=0.0"), run, str(small_data_dir))
    for part in ("last", "best"):
        shutil.rmtree(run / part)
    (run / "metrics.jsonl").unlink()
    resume(run)
    assert last_dev(run) == pytest.approx(last_dev(multitask_run), abs=1e-6)
    # a config given again with a relative path to the same run is the same config (pinned as the run saved it)
    monkeypatch.chdir(multitask_run.parent)
    again = finish(tiny_backbone, multitask_run.name, "train.lr=0.0", "train.head_lr=0.0")
    cfg, _ = resume_config(run, again)
    assert cfg.train.init_from == str(multitask_run) and cfg.train.init_identity is not None


def test_curves_keep_a_panel_for_a_task_trained_in_no_epoch(tmp_path, monkeypatch):
    from minbert.tools import report
    panels = []
    monkeypatch.setattr(report, "label_task_panel", lambda ax, ax2, task, xlabel: panels.append(task))
    history = [{"epoch": 1, "train_loss": {"sst": 0.9}, "dev": {"sst": 0.49, "para": 0.86, "sts": 0.88, "overall": 0.76}}]
    assert report.plot_curves(history, tmp_path) and panels == ["sst", "para", "sts"]
