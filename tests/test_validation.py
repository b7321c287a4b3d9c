"""Validate everything before anything is touched; read every file back as untrusted (docs/RELIABILITY.md).

Each case goes through the real CLI entry point (`minbert.cli.main`) and must end with exit status 2 and one
stderr line `minbert: error: ...` naming the key or the file; where a run would be created or resumed,
nothing in the run folder is created or changed.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from minbert.backbone import CheckpointError
from minbert.cli import main
from minbert.tools.export import load_exported


def quick(data: Path, backbone: Path, *extra: str) -> list[str]:
    return ["--data-dir", str(data), "--set", f"model.backbone={backbone}", "--set", "train.epochs=1",
            "--set", "train.schedule.steps_per_epoch=1", "--set", "train.threads=1",
            "--set", "train.batch_size={sst: 2, para: 2, sts: 2}", "--set", "eval.test_predictions=false",
            "--set", "data.dev_limit=8", *extra]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("minbert: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes: a change anywhere changes the snapshot."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- 1. the config and the machine, before the run folder exists ----
def test_check_prints_ok_and_creates_nothing(tmp_path, small_data_dir, tiny_backbone, capsys):
    run = tmp_path / "run"
    assert main(["train", "--check", "--out", str(run), *quick(small_data_dir, tiny_backbone)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    summary = json.loads(out[0])
    positions = json.loads((tiny_backbone / "config.json").read_text())["max_position_embeddings"]
    assert summary["ok"] is True and summary["max_position_embeddings"] == positions
    assert summary["tasks"] == ["sst", "para", "sts"] and summary["data_files"] == 6  # train and dev of each
    assert not run.exists()


CUDA = torch.cuda.device_count()
BAD_OVERRIDES = {
    "fixed_steps without steps_per_epoch": (["train.schedule.until=fixed_steps", "train.schedule.steps_per_epoch=null"],
                                            "train.schedule.until: fixed_steps needs train.schedule.steps_per_epoch"),
    "max_length beyond the backbone's positions": (["model.max_length=1000"],
                                                   "model.max_length: 1000 is more than the backbone's 128 positions"),
    "max_length that holds no word": (["model.max_length=1"], "model.max_length: must be at least 3"),
    "lr NaN": (["train.lr=nan"], "train.lr: must be a finite number, got 'nan'"),
    "lr infinite": (["train.lr=.inf"], "train.lr: must be a finite number, got inf"),
    "a task twice": (["tasks=[sst, sst]"], "tasks: 'sst' is listed twice"),
    "seed out of range": (["train.seed=-3"], "train.seed: must be an integer in [0, 4294967295]"),
    "device malformed": (["train.device=cuda:x"], "train.device: 'cuda:x' is not auto, cpu, cuda or cuda:N"),
    "device unknown": (["train.device=gpu"], "train.device: 'gpu' is not auto, cpu, cuda or cuda:N"),
    "device cuda:7": (["train.device=cuda:7"], "train.device: cuda:7 asked for, but "),
    "device cuda without CUDA": (["train.device=cuda"], "train.device: cuda asked for, but CUDA is not available"),
    "loss that does not fit the task": (["model.loss=mse"], "model.loss: loss mse does not apply to task sst"),
    "backbone not a checkpoint": (["model.backbone=/"], "model.backbone: /: no config.json"),
}


@pytest.mark.parametrize("case", sorted(BAD_OVERRIDES))
def test_bad_config_fails_before_the_run_folder_is_created(case, tmp_path, small_data_dir, tiny_backbone, capsys):
    overrides, message = BAD_OVERRIDES[case]
    if case == "device cuda without CUDA" and CUDA:
        pytest.skip("this machine has CUDA")
    if case == "device cuda:7" and CUDA > 7:
        pytest.skip("this machine has 8 GPUs or more")
    run = tmp_path / "run"
    sets = [a for o in overrides for a in ("--set", o)]
    assert main(["train", "--out", str(run), *quick(small_data_dir, tiny_backbone, *sets)]) == 2
    assert message in one_error_line(capsys)
    assert not run.exists()


def test_yaml_config_with_a_key_twice_or_binary_bytes(tmp_path, small_data_dir, tiny_backbone, capsys):
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  epochs: 1\nmodel:\n  pooling: cls\ntrain:\n  lr: 1.0e-5\n")
    assert main(["train", "--config", str(twice), "--out", str(tmp_path / "run"),
                 "--data-dir", str(small_data_dir)]) == 2
    assert f"{twice}:5: not valid YAML (duplicate key 'train' (first given on line 1))" in one_error_line(capsys)
    binary = tmp_path / "config.yaml.gz"  # a compressed config passed by mistake
    data = gzip.compress(b"train:\n  epochs: 1\n" * 50)
    binary.write_bytes(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:  # Python's own decoder says where the first bad byte is
        line = data.count(b"\n", 0, e.start) + 1
        where = f"{binary}:{line}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})"
    assert main(["train", "--config", str(binary), "--out", str(tmp_path / "run")]) == 2
    assert where in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_data_file_with_a_wrong_header_fails_before_the_run_folder(tmp_path, small_data_dir, tiny_backbone, capsys):
    data = tmp_path / "data"
    shutil.copytree(small_data_dir, data)
    (data / "sts-dev.csv").write_text("\tid\tsentence1\tsentence2\tscore\n0\ta\tA\tB\t1.0\n")
    assert main(["train", "--out", str(tmp_path / "run"), *quick(data, tiny_backbone)]) == 2
    assert "sts-dev.csv:1: wrong header: missing column(s) ['similarity']" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


# ---- 5. files read back: a finished run's folder, tampered with ----
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_data_dir, tiny_backbone) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", "--out", str(run), *quick(small_data_dir, tiny_backbone)]) == 0
    return run


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def reshape_first_tensor(path: Path) -> str:
    """Rewrite a safetensors file with its first tensor one row longer; return that tensor's name."""
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    t = tensors[name]
    tensors[name] = torch.cat([t, t[:1]]) if t.ndim else t.reshape(1)
    save_file(tensors, str(path))
    return name


def test_truncated_heads_in_evaluate_predict_export_ensemble(run, tmp_path, capsys):
    heads = run / "best" / "heads.safetensors"
    truncate(heads)
    for args in (["evaluate", str(run)], ["predict", str(run), "--task", "sst", "A fine film ."],
                 ["export", str(run), "--out", str(tmp_path / "exported")],
                 ["ensemble", str(run), str(run), "--out", str(tmp_path / "ens")]):
        assert main(args) == 2, args
        assert f"{heads}: unreadable safetensors file" in one_error_line(capsys)
    assert not (tmp_path / "exported").exists() and not (tmp_path / "ens").exists()


def test_misshaped_heads_name_the_file(run, capsys):
    heads = run / "best" / "heads.safetensors"
    name = reshape_first_tensor(heads)
    assert main(["evaluate", str(run)]) == 2
    err = one_error_line(capsys)
    assert f"{heads}: tensor {name} has shape" in err


def test_run_config_that_is_not_a_config(run, capsys):
    (run / "config.yaml").write_bytes(b"\x00\x01binary\xff")
    assert main(["evaluate", str(run)]) == 2
    assert f"{run / 'config.yaml'}:1: not UTF-8 text" in one_error_line(capsys)
    (run / "config.yaml").write_text("train:\n  lr: .nan\n")
    assert main(["predict", str(run), "--task", "sst", "Fine ."]) == 2
    assert f"{run / 'config.yaml'}: train.lr: must be a finite number" in one_error_line(capsys)
    saved = (run / "last" / "trainer_state.json").read_text()  # a config the run once had, then edited
    cfg = json.loads(saved)["config"]
    cfg["model"]["max_length"] = 1000
    (run / "config.yaml").write_text(json.dumps(cfg))
    assert main(["predict", str(run), "--task", "sst", "Fine ."]) == 2
    assert f"{run / 'config.yaml'}: model.max_length: 1000 is more than the backbone's 128 positions" \
        in one_error_line(capsys)


def test_corrupt_run_log_in_report(run, capsys):
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 2, "train_loss": {"sst": "x"}, "dev": {}}\n')
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert main(["report", str(run)]) == 2
    assert f"{run / 'metrics.jsonl'}:{len(lines)}: expected an object with epoch" in one_error_line(capsys)


RESUME_CASES = {
    "truncated heads": ("heads.safetensors", truncate, "heads.safetensors: unreadable safetensors file"),
    "truncated best heads": ("../best/heads.safetensors", truncate, "heads.safetensors: unreadable safetensors file"),
    "truncated encoder": ("model.safetensors", truncate, "model.safetensors: unreadable safetensors file"),
    "mis-shaped encoder weight": ("model.safetensors", reshape_first_tensor, "has shape"),
    "trainer state with a key missing": (
        "trainer_state.json", lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items()
                                                                   if k != "optimizer"})),
        "trainer_state.json: not a trainer state minbert wrote (key 'optimizer' missing)"),
    "trainer state of the wrong shape": ("trainer_state.json", lambda p: p.write_text("[1, 2, 3]\n"),
                                         "trainer_state.json: not a trainer state minbert wrote (expected a JSON object"),
    "trainer state with a wrong type": (
        "trainer_state.json", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "epoch": "two"})),
        "trainer_state.json: not a trainer state minbert wrote (epoch: expected int, got str)"),
    "trainer state naming a tensor that is not there": (
        "trainer_state.json", lambda p: p.write_text(p.read_text().replace('"s.rng.torch"', '"s.rng.gone"')),
        "trainer_state.json: refers to tensor 's.rng.gone', which trainer_state.safetensors does not hold"),
    "truncated trainer tensors": ("trainer_state.safetensors", truncate,
                                  "trainer_state.safetensors: unreadable safetensors file"),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_from_a_bad_last_checkpoint_changes_nothing(case, run, capsys):
    name, spoil, message = RESUME_CASES[case]
    spoiled = (run / "last" / name).resolve()
    spoil(spoiled)
    before = snapshot(run)
    assert main(["train", "--resume", str(run)]) == 2
    err = one_error_line(capsys)
    assert message in err and str(spoiled.parent) in err
    assert snapshot(run) == before


def test_resume_check_reports_the_checkpoint(run, capsys):
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--check"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is True and summary["resume_from"] == str(run / "last")
    assert snapshot(run) == before


def test_exported_folder_read_back_as_untrusted(run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(run), "--out", str(out)]) == 0
    capsys.readouterr()
    assert set(load_exported(out).tasks) == {"sst", "para", "sts"}
    truncate(out / "heads.safetensors")
    with pytest.raises(CheckpointError, match=f"{out / 'heads.safetensors'}: unreadable safetensors file"):
        load_exported(out)
    (out / "minbert_heads.yaml").write_text("tasks: [sst, sst]\n")
    with pytest.raises(CheckpointError, match="minbert_heads.yaml: tasks: 'sst' is listed twice"):
        load_exported(out)
    (out / "minbert_heads.yaml").unlink()
    with pytest.raises(CheckpointError, match="not a folder minbert exported"):
        load_exported(out)


# ---- every entry point runs preflight before its first run ----
def test_sweep_and_ablate_check_every_run_before_the_first(tmp_path, small_data_dir, tiny_backbone, capsys):
    common = [f"model.backbone={tiny_backbone}", "train.epochs=1", "train.schedule.steps_per_epoch=1"]
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps({"grid": {"model.max_length": [16, 500]}, "set": common}))
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "sweep"), "--data-dir", str(small_data_dir)]) == 2
    assert "model.max_length: 500 is more than the backbone's 128 positions" in one_error_line(capsys)
    assert not (tmp_path / "sweep").exists()  # the first point (16) was not trained
    ablation = tmp_path / "ablation.yaml"
    ablation.write_text(json.dumps({"set": {"model.backbone": str(tiny_backbone), "train.epochs": 1},
                                    "variants": {"base": {}, "far": {"train.device": "cuda:7"}}}))
    assert main(["ablate", str(ablation), "--out", str(tmp_path / "ablate"), "--data-dir", str(small_data_dir)]) == 2
    assert "train.device: cuda:7 asked for, but" in one_error_line(capsys)
    assert not (tmp_path / "ablate").exists()


def test_pretrain_mlm_checks_before_creating_its_folder(tmp_path, small_data_dir, tiny_backbone, capsys):
    out = tmp_path / "mlm"
    assert main(["pretrain-mlm", "--out", str(out), "--data-dir", str(small_data_dir),
                 "--set", f"backbone={tiny_backbone}", "--set", "max_length=300"]) == 2
    assert "max_length: 300 is more than the backbone's 128 positions" in one_error_line(capsys)
    text = tmp_path / "notes.txt"
    text.write_bytes(b"fine\n\xffnot utf-8\n")
    assert main(["pretrain-mlm", "--out", str(out), "--data-dir", str(small_data_dir),
                 "--set", f"backbone={tiny_backbone}", "--set", f"text_files=[{text}]"]) == 2
    assert f"{text}:2: not UTF-8 text (byte 0xff at offset 5)" in one_error_line(capsys)
    assert not out.exists()
