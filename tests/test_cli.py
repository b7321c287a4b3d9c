"""End to end through the real `minbert` command, with a tiny random BERT and the first rows of each course file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minbert.tasks import COURSE_TASKS

REPO = Path(__file__).resolve().parents[1]


def minbert(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "minbert", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"minbert {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


def train_tiny(run_dir: Path, backbone: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    return minbert("train", "--config", REPO / "configs" / "default.yaml", "--data-dir", data, "--out", run_dir,
                   "--set", f"model.backbone={backbone}", "--set", "train.epochs=2", "--set", "train.schedule.steps_per_epoch=3",
                   "--set", "train.batch_size={sst: 8, para: 8, sts: 8}", "--set", "train.threads=1", *extra)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    run = tmp_path_factory.mktemp("run")
    train_tiny(run, tiny_backbone, small_data_dir)
    return run


def read_predictions(path: Path) -> tuple[str, dict[str, str]]:
    header, *rows = path.read_text().splitlines()
    return header, dict(tuple(part.strip() for part in row.split(" , ")) for row in rows)


def test_train_writes_the_run_directory(tiny_run, small_data_dir):
    for name in ("config.yaml", "log.txt", "metrics.jsonl", "best_metrics.json", "best/model.safetensors",
                 "best/config.json", "best/vocab.txt", "best/heads.safetensors"):
        assert (tiny_run / name).is_file(), name
    epochs = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert set(epochs[0]["dev"]) == {"sst", "para", "sts", "overall"}
    log = (tiny_run / "log.txt").read_text()
    assert "extra column(s) ['0']" in log  # the stray column of the SST test file is reported
    for task in ("sst", "para", "sts"):
        for split, file_split in (("dev", "dev"), ("test", "test-student")):
            header, preds = read_predictions(tiny_run / "predictions" / f"{task}-{split}-output.csv")
            assert header.split("\t")[0].strip() == "id"
            assert header.split("\t")[1].strip() == COURSE_TASKS[task].prediction_header
            examples, _ = COURSE_TASKS[task].read(small_data_dir, split)
            assert list(preds) == [ex.id for ex in examples]


def test_evaluate_recomputes_best_dev_metrics(tiny_run, small_data_dir):
    best = json.loads((tiny_run / "best_metrics.json").read_text())
    out = minbert("evaluate", tiny_run, "--data-dir", small_data_dir).stdout
    shown = json.loads(out.strip().splitlines()[-1])["metrics"]
    for key in ("sst", "para", "sts", "overall"):
        assert shown[key] == pytest.approx(best[key], abs=1e-6)


def test_dev_predictions_score_as_reported(tiny_run, small_data_dir):
    best = json.loads((tiny_run / "best_metrics.json").read_text())
    examples, _ = COURSE_TASKS["sst"].read(small_data_dir, "dev")
    _, preds = read_predictions(tiny_run / "predictions" / "sst-dev-output.csv")
    acc = sum(int(preds[ex.id]) == ex.label for ex in examples) / len(examples)
    assert acc == pytest.approx(best["sst"])


def test_predict_a_sentence_and_a_pair(tiny_run):
    sst = json.loads(minbert("predict", tiny_run, "--task", "sst", "A gorgeous film.").stdout)
    assert sst["prediction"] in {"0", "1", "2", "3", "4"} and sum(sst["probabilities"]) == pytest.approx(1, abs=1e-3)
    sts = json.loads(minbert("predict", tiny_run, "--task", "sts", "A man sings.", "A person sings.").stdout)
    assert 0 <= float(sts["prediction"]) <= 5


def test_same_seed_same_weights(tiny_run, tmp_path, tiny_backbone, small_data_dir):
    train_tiny(tmp_path / "again", tiny_backbone, small_data_dir, "--set", "eval.test_predictions=false")
    a = load_file(str(tiny_run / "best" / "model.safetensors"))
    b = load_file(str(tmp_path / "again" / "best" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("args,message", [
    (["train", "--set", "train.lrr=1"], "unknown key train.lrr"),
    (["train", "--data-dir", "/no/such/dir"], "data directory not found"),
    (["evaluate", "/no/such/run"], "not a run directory"),
    (["predict"], "the following arguments are required"),
    (["fly"], "invalid choice"),
])
def test_errors_are_one_line(args, message, tmp_path):
    if args[0] == "train":
        args = [*args, "--out", str(tmp_path / "run")]
    proc = minbert(*args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_missing_data_file_fails_before_training(tmp_path, tiny_backbone, small_data_dir):
    for f in small_data_dir.iterdir():
        if "sts-dev" not in f.name:
            (tmp_path / f.name).write_bytes(f.read_bytes())
    proc = minbert(
        "train", "--data-dir", tmp_path, "--out", tmp_path / "run", "--set", f"model.backbone={tiny_backbone}",
        check=False)
    assert proc.returncode == 2 and "sts-dev.csv: file not found" in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing written before the data checks


def test_every_command_has_help():
    for cmd in ("train", "evaluate", "predict"):
        assert "usage: minbert " + cmd in minbert(cmd, "--help").stdout
