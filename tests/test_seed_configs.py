"""configs/seeds/: each seed report's system keeps the default's budget (batch sizes, encoder learning rate,
the number of steps), cites lines that exist in its report, and trains end to end (tiny backbone, a few steps)."""
import json
import re
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from minbert.schema import load_config
from minbert.schedules import TaskSizes, build_schedule
from minbert.tasks import COURSE_TASKS
from minbert.training.run import train
from minbert.training.setup import encoder_trainable

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "seeds").glob("*.yaml"))
REPORTS = REPO.parent / "shared" / "seeds"


def plans(cfg, sizes: dict[str, int]) -> list[list[list[str]]]:
    sizes = TaskSizes(sizes, cfg.train.batch_size)
    schedule = build_schedule(cfg.train.schedule, sizes, cfg.train.epochs, cfg.train.seed)
    return [schedule.plan(e) for e in range(1, cfg.train.epochs + 1)]


@pytest.fixture(scope="module")
def train_sizes(data_dir) -> dict[str, int]:
    return {t: len(COURSE_TASKS[t].read(data_dir, "train")[0]) for t in ("sst", "para", "sts")}


def test_there_is_one_config_per_seed_report():
    assert [c.name[:4] for c in CONFIGS] == ["000-", "001-", "002-", "003-", "004-"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_a_seed_system_keeps_the_default_budget(path, train_sizes):
    default, cfg = load_config(REPO / "configs" / "default.yaml"), load_config(path)
    assert cfg.tasks == default.tasks
    assert cfg.train.batch_size == default.train.batch_size
    assert cfg.train.lr == default.train.lr  # the encoder's rate; heads may follow the report's own rule
    steps = sum(len(p) for p in plans(cfg, train_sizes))
    default_steps = sum(len(p) for p in plans(default, train_sizes))
    assert default_steps == 1600 and abs(steps - default_steps) <= 2


def test_staged_freezing_and_milestones_keep_the_reports_proportions(train_sizes):
    # report 003 (l. 207, l. 209): 5 epochs heads only, 20 all, 5 heads only; rates x0.7 at epochs 5 and 25 of 30
    cfg = load_config(REPO / "configs" / "seeds" / "003-sampling-and-training.yaml")
    per_epoch = [len(p) for p in plans(cfg, train_sizes)]
    total = sum(per_epoch)
    heads_only = sum(n for e, n in enumerate(per_epoch, 1) if not encoder_trainable(cfg, e))
    assert heads_only / total == pytest.approx(10 / 30, abs=0.01)
    assert not encoder_trainable(cfg, 1) and per_epoch[0] / total == pytest.approx(5 / 30, abs=0.01)
    milestone_steps = [sum(per_epoch[:m]) / total for m in cfg.train.milestones]
    assert milestone_steps == pytest.approx([5 / 30, 25 / 30], abs=0.01)


@pytest.mark.skipif(not REPORTS.is_dir(), reason="the seed reports are not beside the repository")
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_a_config_header_cites_lines_of_its_report(path):
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    report = next(REPORTS.glob(f"{path.name[:3]}_*.txt")).read_text().splitlines()
    cited = [int(n) for ref in re.findall(r"l\. (\d+(?:-\d+)?)", header) for n in ref.split("-")]
    assert cited and max(cited) <= len(report)
    assert f"--config configs/seeds/{path.name}" in header  # the command to run it


@pytest.fixture
def one_thread():
    """Train on one thread (two spin against each other on a shared CPU), then give torch its threads back."""
    threads = torch.get_num_threads()
    yield "train.threads=1"
    torch.set_num_threads(threads)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_a_seed_system_trains_end_to_end(path, tmp_path, tiny_backbone, small_data_dir, one_thread):
    short = {"random_subset": "train.schedule.subset_size={para: 8, sts: 8}"}.get(  # each schedule's own key
        load_config(path).train.schedule.name, "train.schedule.steps_per_epoch=2")
    cfg = load_config(path, [f"model.backbone={tiny_backbone}", "data.train_limit=16", "data.dev_limit=16", short,
                             "train.batch_size={sst: 4, para: 4, sts: 4}", "eval.test_predictions=false",
                             "train.checkpoint_every=null", one_thread])
    best = train(cfg, tmp_path, str(small_data_dir))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, cfg.train.epochs + 1))
    # the steps each epoch recorded are the ones its schedule planned: 2 round-robin steps, or for random_subset
    # the longest quota (16 SST sentences passed once in batches of 4)
    assert [r["steps"] for r in records] == [4 if cfg.train.schedule.name == "random_subset" else 2] * cfg.train.epochs
    assert set(best) == {"sst", "para", "sts", "overall", "epoch"}


def test_the_step_time_benchmark_runs_each_system_in_plan_order_from_an_epoch_that_trains_its_encoder(
        tiny_backbone, small_data_dir, one_thread):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import seeds_step_times
    finally:
        sys.path.pop(0)
    sets = [f"model.backbone={tiny_backbone}", f"data.dir={small_data_dir}", "data.train_limit=16", "data.dev_limit=8",
            "train.schedule.steps_per_epoch=2", "train.batch_size={sst: 4, para: 4, sts: 4}", one_thread]
    staged = REPO / "configs" / "seeds" / "003-sampling-and-training.yaml"  # epoch 1 trains its heads only
    result = seeds_step_times.measure([REPO / "configs" / "default.yaml", staged], sets, steps=3, rounds=2, log=lambda line: None)
    assert result["base"] == "default" and result["systems"]["default"]["ratio"] == 1.0
    assert all(len(s["rounds"]) == 2 for s in result["systems"].values())
    with tempfile.TemporaryDirectory() as tmp:
        stepper = seeds_step_times.Stepper(seeds_step_times.build(staged, sets, Path(tmp)))
        assert stepper.trainer.progress.epoch == 2 and all(p.requires_grad for p in stepper.trainer.model.parameters())
        stepper.run(3)  # 2 planned steps, then the plan again from its start
        assert stepper.trainer.progress.updates == 3 and stepper.at == 3
