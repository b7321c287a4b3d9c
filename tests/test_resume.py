"""A run killed with SIGKILL at a random step and resumed ends bit-identical to the same run never interrupted."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


def train_args(out: Path, backbone: Path, data: Path) -> list[str]:
    return ["train", "--data-dir", str(data), "--out", str(out), "--set", f"model.backbone={backbone}",
            "--set", "train.epochs=2", "--set", "train.schedule.steps_per_epoch=16", "--set", "train.checkpoint_every=1",
            "--set", "train.batch_size={sst: 4, para: 4, sts: 4}", "--set", "train.threads=1",
            "--set", "eval.test_predictions=false",
            # the richest training state: PCGrad's random order and cosine logging
            "--set", "train.combine.name=pcgrad",
            "--set", "train.combine.log_cosine_every=2",
            # a moving average of the weights (evaluated, saved as best/, kept in each checkpoint)
            "--set", "train.ema=0.8",
            # a step-log line every 3 updates: checkpoints (every update) fall between lines
            "--set", "train.log_every=3"]


def run_minbert(args: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "minbert", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, **kw)
    assert proc.returncode == 0, proc.stderr
    return proc


def signal_when(proc: subprocess.Popen, reached, signum: int = signal.SIGKILL, timeout: float = 300) -> None:
    """Send `signum` to a running process as soon as `reached()` holds (polled), failing if the process ended first."""
    deadline = time.time() + timeout
    while proc.poll() is None and not reached() and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the process ended before it could be signalled"
    os.kill(proc.pid, signum)


def progress(run: Path) -> tuple[int, int]:
    try:
        state = json.loads((run / "last" / "trainer_state.json").read_text())
        return state["epoch"], state["step"]
    except (OSError, ValueError, KeyError):
        return 0, 0


def steps_done(run: Path) -> int:
    """Steps of the 2 x 16 checkpointed so far (one read of the checkpoint state)."""
    epoch, step = progress(run)
    return (epoch - 1) * 16 + step


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {**load_file(str(folder / "model.safetensors")), **load_file(str(folder / "heads.safetensors"))}


def step_lines(run: Path) -> list[dict]:
    """steps.jsonl without examples/s (wall time, not deterministic)."""
    lines = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "examples_per_second"} for line in lines]


def dev_metrics(run: Path) -> list[dict]:
    return [json.loads(line)["dev"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted")
    run_minbert(train_args(run, tiny_backbone, small_data_dir))
    return run


def test_sigkill_then_resume_is_bit_identical(reference_run, tmp_path, tiny_backbone, small_data_dir):
    target = random.Random().randint(1, 28)  # a random point of the 32 steps
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "minbert", *train_args(run, tiny_backbone, small_data_dir)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    signal_when(proc, lambda: steps_done(run) >= target)
    proc.wait()
    assert not (run / "best_metrics.json").exists(), "killed mid-run"

    run_minbert(["train", "--resume", str(run)])
    ref, got = weights(reference_run / "best"), weights(run / "best")
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref), f"weights differ after a kill at step ~{target}"
    ref_last, got_last = weights(reference_run / "last"), weights(run / "last")
    assert all(torch.equal(ref_last[k], got_last[k]) for k in ref_last)
    assert dev_metrics(run) == dev_metrics(reference_run)
    assert (run / "grad_cosine.jsonl").read_text() == (reference_run / "grad_cosine.jsonl").read_text()
    reference_steps = step_lines(reference_run)
    assert [s["update"] for s in reference_steps] == list(range(3, 33, 3))
    assert step_lines(run) == reference_steps  # the loss sums since the last line survive the kill
    assert json.loads((run / "best_metrics.json").read_text()) == json.loads(
        (reference_run / "best_metrics.json").read_text())
    assert "resumed from" in (run / "log.txt").read_text()


def test_resume_with_changed_config_is_refused(reference_run, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minbert", "train", "--resume", str(reference_run),
                           "--config", str(REPO / "configs" / "default.yaml")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2
    assert "the config differs from the run's in" in proc.stderr and "train.schedule.steps_per_epoch" in proc.stderr
    assert "--force" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_of_a_non_run_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minbert", "train", "--resume", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr


def test_resume_on_different_data_is_refused(reference_run, tmp_path, data_dir):
    run = tmp_path / "copy"
    import shutil
    shutil.copytree(reference_run, run)
    proc = subprocess.run([sys.executable, "-m", "minbert", "train", "--resume", str(run), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "the training data differs from the run's (sst: 64 rows" in proc.stderr


@pytest.mark.parametrize("combine", ["gradnorm", "famo"])
def test_learned_loss_weights_resume_bit_identical_after_sigkill(combine, tmp_path, tiny_backbone, small_data_dir):
    """A run whose combiner learns its task weights (GradNorm: from the Gram matrix, FAMO: from the losses), with
    gradient accumulation, killed with SIGKILL and resumed, ends as the same run uninterrupted; the weights' state
    is in the checkpoint."""
    def args(out):
        return [*train_args(out, tiny_backbone, small_data_dir), "--set", f"train.combine.name={combine}",
                "--set", "train.combine.lr=0.2", "--set", "train.accumulate=2"]
    reference = tmp_path / "reference"
    run_minbert(args(reference))
    state = json.loads((reference / "last" / "trainer_state.json").read_text())
    assert state["combiner"]["adam"]["t"] > 0  # the weights moved, and the checkpoint holds them
    target = random.Random().randint(2, 26)
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "minbert", *args(run)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    signal_when(proc, lambda: steps_done(run) >= target)
    proc.wait()
    assert not (run / "best_metrics.json").exists(), "killed mid-run"
    run_minbert(["train", "--resume", str(run)])
    for folder in ("best", "last"):
        ref, got = weights(reference / folder), weights(run / folder)
        assert all(torch.equal(ref[k], got[k]) for k in ref), f"{folder}: weights differ after a kill at step ~{target}"
    assert json.loads((run / "last" / "trainer_state.json").read_text())["combiner"] == state["combiner"]
    assert load_file(str(run / "last" / "trainer_state.safetensors")).keys() == \
        load_file(str(reference / "last" / "trainer_state.safetensors")).keys()
    ref_t, got_t = (load_file(str(r / "last" / "trainer_state.safetensors")) for r in (reference, run))
    assert all(torch.allclose(ref_t[k], got_t[k], rtol=0, atol=0, equal_nan=True)  # bit for bit (nan: not seen)
               for k in ref_t if k.startswith("s.combiner."))
    assert step_lines(run) == step_lines(reference)


def test_last_holds_the_best_score_of_a_mid_epoch_evaluation_that_improved(tmp_path, tiny_backbone, small_data_dir):
    """With train.eval_every, best/ can improve between two checkpoints: last/ is written right after, so a resume
    compares later evaluations against the score best/ holds, never an older one."""
    from minbert.schema import load_config
    from minbert.training.run import train

    cfg = load_config(None, [f"model.backbone={tiny_backbone}", "train.epochs=1", "train.schedule.steps_per_epoch=12",
                             "train.batch_size={sst: 4, para: 4, sts: 4}", "train.checkpoint_every=1000",
                             "train.eval_every=2", "eval.test_predictions=false", "train.threads=1"])
    seen: list[tuple[float, float]] = []  # (the best score before this evaluation, last/'s best score on disk)
    best = {"score": -float("inf")}

    def on_eval(step: int, score: float) -> bool:
        state = tmp_path / "run" / "last" / "trainer_state.json"
        on_disk = json.loads(state.read_text())["best_score"] if state.is_file() else -float("inf")
        seen.append((best["score"], on_disk))
        best["score"] = max(best["score"], score)
        return False

    train(cfg, tmp_path / "run", str(small_data_dir), on_eval=on_eval)
    assert len(seen) == 6 and seen[1][0] > -float("inf")  # after steps 2, 4, 6, 8, 10 and at the epoch's end (12)
    assert all(on_disk == before for before, on_disk in seen[1:])
