"""Logs while training: steps.jsonl against independent computations (the 1-step lines of the same run, the
closed-form warm-up / decay, the epoch means of metrics.jsonl), TensorBoard's event files read back with
tensorboard's own reader, the progress bar, stdout carrying only the JSON line, and the report's curves."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minbert.cli import main
from minbert.schema import load_config
from minbert.training.run import train

REPO = Path(__file__).resolve().parents[1]
LR, HEAD_LR, STS_LR = 1e-4, 1e-3, 3e-3
EPOCHS, STEPS, WARMUP = 2, 4, 0.25  # 8 optimizer steps, the first 2 of them warm-up


def settings(backbone: Path, log_every: int) -> list[str]:
    return [f"model.backbone={backbone}", f"train.epochs={EPOCHS}", "train.schedule.until=fixed_steps",
            f"train.schedule.steps_per_epoch={STEPS}", "train.batch_size={sst: 4, para: 4, sts: 4}",
            "train.threads=1", "eval.test_predictions=false", f"train.lr={LR}", f"train.head_lr={HEAD_LR}",
            f"train.head_lrs={{sts: {STS_LR}}}", f"train.warmup={WARMUP}", "train.lr_decay=linear",
            f"train.log_every={log_every}"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def every_step(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    run = tmp_path_factory.mktemp("every-step")
    train(load_config(None, settings(tiny_backbone, 1)), run, str(small_data_dir))
    return run


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, tiny_backbone, small_data_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """The same run through the real command, a line every 2 steps, with TensorBoard."""
    run = tmp_path_factory.mktemp("cli") / "run"
    args = [a for s in settings(tiny_backbone, 2) for a in ("--set", s)]
    proc = subprocess.run([sys.executable, "-m", "minbert", "train", "--data-dir", str(small_data_dir),
                           "--out", str(run), *args, "--set", "train.tensorboard=true"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc


def test_a_line_every_two_steps_with_the_listed_fields(cli_run):
    run, _ = cli_run
    lines = read_jsonl(run / "steps.jsonl")
    assert [s["update"] for s in lines] == [2, 4, 6, 8]
    assert [(s["epoch"], s["step"]) for s in lines] == [(1, 2), (1, 4), (2, 2), (2, 4)]
    for s in lines:
        assert set(s) == {"update", "epoch", "step", "loss", "lr", "grad_norm", "examples_per_second"}
        assert set(s["loss"]) == {"sst", "para", "sts"}
        assert set(s["lr"]) == {"encoder", "head:sst", "head:para", "head:sts"}
        assert s["grad_norm"] > 0 and s["examples_per_second"] > 0


def test_two_step_means_are_the_means_of_the_one_step_lines(cli_run, every_step):
    ones, twos = read_jsonl(every_step / "steps.jsonl"), read_jsonl(cli_run[0] / "steps.jsonl")
    assert [s["update"] for s in ones] == list(range(1, EPOCHS * STEPS + 1))
    for two in twos:
        a, b = ones[two["update"] - 2], ones[two["update"] - 1]
        for task, loss in two["loss"].items():
            assert loss == pytest.approx((a["loss"][task] + b["loss"][task]) / 2, rel=1e-12)
        assert two["grad_norm"] == b["grad_norm"]  # the same run: logging draws no random numbers
    # and the 1-step lines of each epoch average to the trainer's own epoch means in metrics.jsonl
    for record in read_jsonl(every_step / "metrics.jsonl"):
        epoch = [s for s in ones if s["epoch"] == record["epoch"]]
        for task, mean in record["train_loss"].items():
            assert np.mean([s["loss"][task] for s in epoch]) == pytest.approx(mean, rel=1e-9)


def test_learning_rates_follow_the_closed_form_schedule(every_step):
    total = EPOCHS * STEPS
    warm = int(total * WARMUP)
    for line in read_jsonl(every_step / "steps.jsonl"):
        u = line["update"]  # the rate applied in update u: linear warm-up to u = warm, then linear decay to 0
        factor = u / warm if u <= warm else 1 - (u - 1 - warm) / (total - warm)
        expected = {"encoder": LR, "head:sst": HEAD_LR, "head:para": HEAD_LR, "head:sts": STS_LR}
        assert line["lr"] == pytest.approx({g: lr * factor for g, lr in expected.items()}, rel=1e-12)


def test_tensorboard_events_hold_the_same_scalars(cli_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = cli_run
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}
    f32 = lambda v: float(np.float32(v))  # noqa: E731 -- TensorBoard stores scalars as float32
    lines = read_jsonl(run / "steps.jsonl")
    for line in lines:
        u = line["update"]
        for task, v in line["loss"].items():
            assert logged[f"loss/{task}"][u] == f32(v)
        for group, v in line["lr"].items():
            assert logged[f"lr/{group}"][u] == f32(v)
        assert logged["grad_norm"][u] == f32(line["grad_norm"])
        assert logged["examples_per_second"][u] == f32(line["examples_per_second"])
    assert sorted(logged["grad_norm"]) == [s["update"] for s in lines]
    epochs = read_jsonl(run / "metrics.jsonl")
    assert [e["updates"] for e in epochs] == [STEPS, 2 * STEPS]
    for record in epochs:
        for name, v in record["dev"].items():
            assert logged[f"dev/{name}"][record["updates"]] == f32(v)
        for name, v in record["dev_loss"].items():
            assert logged[f"dev_loss/{name}"][record["updates"]] == f32(v)


def test_stdout_is_one_json_line_and_logs_go_to_stderr(cli_run, small_data_dir):
    run, proc = cli_run
    out = proc.stdout.splitlines()
    assert len(out) == 1 and json.loads(out[0])["run_dir"] == str(run)
    assert "epoch 1: dev" in proc.stderr and "epoch 1: dev" not in proc.stdout
    # the bar's postfix shows the latest line's losses and encoder learning rate
    last = [s for s in read_jsonl(run / "steps.jsonl") if s["epoch"] == 1][-1]
    shown = " ".join(f"{t} {v:.3f}" for t, v in last["loss"].items()) + f", lr {last['lr']['encoder']:.2e}"
    assert shown in proc.stderr
    evaluate = subprocess.run([sys.executable, "-m", "minbert", "evaluate", str(run), "--data-dir", str(small_data_dir)],
                              capture_output=True, text=True, cwd=REPO, timeout=600)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    out = evaluate.stdout.splitlines()
    assert len(out) == 1 and set(json.loads(out[0])["metrics"]) == {"sst", "para", "sts", "overall"}
    assert "dev predictions written" in evaluate.stderr


def test_missing_tensorboard_is_one_line_before_the_run_folder(monkeypatch, tmp_path, capsys, tiny_backbone,
                                                                small_data_dir):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now raises ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    run = tmp_path / "run"
    args = [a for s in settings(tiny_backbone, 2) for a in ("--set", s)]
    code = main(["train", "--data-dir", str(small_data_dir), "--out", str(run), *args, "--set", "train.tensorboard=true"])
    err = capsys.readouterr().err
    assert code == 2 and not run.exists()
    assert err.count("\n") == 1 and err.startswith("minbert: error: train.tensorboard:")
    assert "pip install 'tensorboard>=2.10'" in err and "Traceback" not in err


def test_report_draws_its_curves_from_steps_jsonl(every_step, small_data_dir, tmp_path):
    from minbert.tools.report import step_curves_figure

    assert main(["report", str(every_step), "--data-dir", str(small_data_dir)]) == 0
    text = (every_step / "report" / "REPORT.md").read_text()
    assert f"{EPOCHS * STEPS} lines of steps.jsonl" in text
    assert (every_step / "report" / "curves.png").stat().st_size > 1000
    steps, history = read_jsonl(every_step / "steps.jsonl"), read_jsonl(every_step / "metrics.jsonl")
    fig = step_curves_figure(steps, history)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["sst", "para", "sts", "learning rate"]
    for ax, task in zip(axes, ("sst", "para", "sts")):
        train_loss, dev_loss = ax.lines[0].get_xydata(), ax.lines[1].get_xydata()
        assert train_loss.tolist() == [[s["update"], s["loss"][task]] for s in steps]
        assert dev_loss.tolist() == [[h["updates"], h["dev_loss"][task]] for h in history]
    assert {line.get_label(): line.get_ydata().tolist() for line in axes[-1].lines} == \
        {g: [s["lr"][g] for s in steps] for g in steps[0]["lr"]}
    # a run from before the step log still reports, with its epoch curves
    old = tmp_path / "old"
    shutil.copytree(every_step, old)
    (old / "steps.jsonl").unlink()
    assert main(["report", str(old), "--data-dir", str(small_data_dir)]) == 0
    text = (old / "report" / "REPORT.md").read_text()
    assert "has no steps.jsonl" in text and (old / "report" / "curves.png").stat().st_size > 1000
