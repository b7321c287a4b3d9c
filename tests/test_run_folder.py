"""Run folders: an earlier run is never overwritten by accident, one writer per folder (an OS lock that a
SIGKILL releases), and SIGINT / SIGTERM pause a real `minbert train` that then resumes bit-identically."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minbert.cli import main
from test_resume import REPO, dev_metrics, signal_when, weights

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # the children run this tree's minbert
STEPS = 16  # per epoch: long enough that a signal sent after the third update lands mid-training


def quick_args(out: Path, backbone: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "--data-dir", str(data), "--out", str(out), "--set", f"model.backbone={backbone}",
            "--set", "train.epochs=1", "--set", "train.schedule.until=fixed_steps",
            "--set", "train.schedule.steps_per_epoch=2", "--set", "train.batch_size={sst: 4, para: 4, sts: 4}",
            "--set", "train.threads=1", "--set", "eval.test_predictions=false", *extra]


def signal_args(out: Path, backbone: Path, data: Path) -> list[str]:
    return ["train", "--data-dir", str(data), "--out", str(out), "--set", f"model.backbone={backbone}",
            "--set", "train.epochs=2", "--set", "train.schedule.until=fixed_steps",
            "--set", f"train.schedule.steps_per_epoch={STEPS}", "--set", "train.batch_size={sst: 4, para: 4, sts: 4}",
            "--set", "train.threads=1", "--set", "eval.test_predictions=false", "--set", "data.dev_limit=8",
            # PCGrad's random order is part of the state; its cosine log (a line per update) shows the progress
            "--set", "train.combine.name=pcgrad", "--set", "train.combine.log_cosine_every=1"]


def folder_digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (the lock file included) by relative path -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys) -> str:
    """The one error line, last on standard error (run logs, which also go there, may come before it)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "Traceback" not in err and lines and lines[-1].startswith("minbert: error: "), err
    assert sum(line.startswith("minbert: error: ") for line in lines) == 1, err
    return lines[-1] + "\n"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    run.mkdir()
    (run / "notes.txt").write_text("not minbert's\n")  # a folder with unrelated files only holds no run
    assert main(quick_args(run, tiny_backbone, small_data_dir)) == 0
    assert (run / "notes.txt").read_text() == "not minbert's\n"
    return run


def test_a_refused_rerun_leaves_every_file_byte_identical(finished_run, tmp_path, tiny_backbone,
                                                         small_data_dir, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = folder_digest(run)
    assert "best/model.safetensors" in before and "config.yaml" in before
    capsys.readouterr()

    assert main(quick_args(run, tiny_backbone, small_data_dir)) == 2
    err = one_error_line(capsys)
    assert f"{run} holds a run: continue it with --resume {run}, or replace it with --overwrite" in err
    assert folder_digest(run) == before

    assert main(quick_args(run, tmp_path / "no-such-backbone", small_data_dir, "--overwrite")) == 2
    assert "no-such-backbone: checkpoint folder not found" in one_error_line(capsys)
    assert folder_digest(run) == before

    # a data error found only while the data is read (a bad row under data.strict), after the lock is taken
    bad_data = tmp_path / "data"
    shutil.copytree(small_data_dir, bad_data)
    with (bad_data / "ids-sst-train.csv").open("a", encoding="utf-8") as f:
        f.write("999\tbad-row\tno sentiment here\tnot-a-number\n")
    assert main(quick_args(run, tiny_backbone, bad_data, "--overwrite", "--set", "data.strict=true")) == 2
    one_error_line(capsys)
    assert folder_digest(run) == before

    # a valid --overwrite replaces the run: its config, a one-epoch history, its own log; unrelated files stay
    assert main(quick_args(run, tiny_backbone, small_data_dir, "--overwrite", "--set", "train.seed=7")) == 0
    assert "seed: 7" in (run / "config.yaml").read_text()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert (run / "log.txt").read_text().count("minbert train:") == 1
    assert (run / "notes.txt").read_text() == "not minbert's\n"
    assert folder_digest(run)["best/heads.safetensors"] != before["best/heads.safetensors"]


def test_a_folder_with_a_users_files_of_a_runs_names_is_refused_and_replaced_only_on_overwrite(
        tmp_path, tiny_backbone, small_data_dir, capsys):
    """No run there (no config.yaml), but a log.txt, a tensorboard/ and a steps.jsonl that a new run would
    truncate or delete: refused, byte-identical, naming them; --overwrite replaces them; other files stay."""
    run = tmp_path / "mine"
    (run / "tensorboard").mkdir(parents=True)
    (run / "tensorboard" / "events.out").write_bytes(b"someone's events")
    (run / "log.txt").write_text("my own notes\n")
    (run / "steps.jsonl").write_text('{"mine": 1}\n')
    (run / "notes.txt").write_text("not minbert's\n")
    before = folder_digest(run)

    assert main(quick_args(run, tiny_backbone, small_data_dir)) == 2
    err = one_error_line(capsys)
    assert f"{run} has log.txt, steps.jsonl, tensorboard, which a new run would replace" in err, err
    assert folder_digest(run) == before

    assert main(quick_args(run, tiny_backbone, small_data_dir, "--overwrite")) == 0
    assert (run / "log.txt").read_text().startswith("minbert train:")
    assert not (run / "tensorboard").exists() and not (run / "steps.jsonl").exists()  # 2 steps: none logged
    assert (run / "notes.txt").read_text() == "not minbert's\n" and (run / "config.yaml").is_file()
    assert not [p for p in run.iterdir() if p.name.startswith(".write-test")]


def test_ensemble_into_a_run_folder_is_refused(finished_run, tmp_path, small_data_dir, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = folder_digest(run)
    assert main(["ensemble", str(finished_run), str(finished_run), "--out", str(run),
                 "--data-dir", str(small_data_dir)]) == 2
    assert f"{run} holds a training run; ensemble writes into another folder (--out)" in one_error_line(capsys)
    assert folder_digest(run) == before


HOLD = ("import sys, time; from pathlib import Path; from minbert.run_folder import acquire; "
        "acquire(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)")


def test_a_second_writer_is_refused_naming_the_holder_and_sigkill_frees_the_lock(
        finished_run, tmp_path, tiny_backbone, small_data_dir, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = f"{run} is being written by process {holder.pid} ("
        for args in (["train", "--resume", str(run)],
                     quick_args(run, tiny_backbone, small_data_dir, "--overwrite"),
                     quick_args(run, tiny_backbone, small_data_dir),  # the holder is named, not the old run
                     ["evaluate", str(run), "--data-dir", str(small_data_dir)],
                     ["report", str(run), "--data-dir", str(small_data_dir)]):
            assert main(args) == 2, args
            assert busy in one_error_line(capsys), args
        assert (run / ".lock").read_text().split("\n")[0] == str(holder.pid)
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs in the holder
        holder.wait()
    fd = os.open(run / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if the lock were still held
    finally:
        os.close(fd)
    assert main(["evaluate", str(run), "--data-dir", str(small_data_dir)]) == 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    threads = torch.get_num_threads()
    try:  # in this process (a process start saved); train.threads=1 as in the children
        assert main(signal_args(run, tiny_backbone, small_data_dir)) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def updates_logged(run: Path) -> int:
    try:
        return len((run / "grad_cosine.jsonl").read_text().splitlines())
    except OSError:
        return 0


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_pauses_training_and_resume_is_bit_identical(uninterrupted, tmp_path, tiny_backbone,
                                                              small_data_dir, signum, code):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "minbert", *signal_args(run, tiny_backbone, small_data_dir)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    signal_when(proc, lambda: updates_logged(run) >= 3, signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    state = json.loads((run / "last" / "trainer_state.json").read_text())
    line = (f"minbert: interrupted at epoch {state['epoch']} step {state['step']}; "
            f"continue with: minbert train --resume {run}")
    assert err.strip().splitlines()[-1] == line
    assert (state["epoch"] - 1) * STEPS + state["step"] < 2 * STEPS, "paused before the end"
    assert state["updates"] == updates_logged(run)  # paused right after an optimizer step, saved there
    assert not (run / "best_metrics.json").exists()

    proc = subprocess.run([sys.executable, "-m", "minbert", "train", "--resume", str(run)],
                          capture_output=True, text=True, cwd=REPO, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr
    for folder in ("best", "last"):
        ref, got = weights(uninterrupted / folder), weights(run / folder)
        assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref), folder
    assert dev_metrics(run) == dev_metrics(uninterrupted)
    assert (run / "grad_cosine.jsonl").read_text() == (uninterrupted / "grad_cosine.jsonl").read_text()
    assert json.loads((run / "best_metrics.json").read_text()) == json.loads(
        (uninterrupted / "best_metrics.json").read_text())


def test_stop_signals_record_the_first_ignore_a_later_sigterm_stop_on_a_second_sigint_and_restore_handlers():
    from minbert.training.interrupts import StopSignals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt):
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs in the main thread at the next bytecode
            assert stop.requested() == signal.SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)  # already pausing: ignored
            time.sleep(0.01)
            assert stop.requested() == signal.SIGTERM
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again: stop now
            time.sleep(1)
            pytest.fail("a second SIGINT did not stop")
    assert {s: signal.getsignal(s) for s in before} == before
    with StopSignals(second_sigint_stops=False) as stop:  # as under torchrun
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert stop.requested() == signal.SIGINT
    assert {s: signal.getsignal(s) for s in before} == before
