"""The bad-input catalogue of docs/design/reliability.md, each case through the real CLI (`minbert.cli.main`).

Fatal cases end with a one-line `minbert: error: ...` (exit 2) before training; row-level cases train,
and the run log lists each skipped row with file, line and reason plus the count.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from minbert.cli import main

SST_HEADER = "\tid\tsentence\tsentiment\n"
GOOD = "0\tg1\tA fine film .\t3\n1\tg2\tDull .\t1\n"

# case id -> (file to replace, its content, expected message); lines counted from the header (line 1)
ROW_CASES = {
    "wrong column count": ("ids-sst-train.csv", SST_HEADER + GOOD + "2\tb\tToo\tmany\t4\n",
                           "ids-sst-train.csv:4: expected 4 columns, found 5"),
    "unbalanced quote swallowing a field": (
        "quora-train.csv", '\tid\tsentence1\tsentence2\tis_duplicate\n0\tq1\tWhy?\tHow?\t0.0\n'
        '1\tq2\t"""Where is it?"\t\t\n2\tq3\tA\tB\t1.0\n',
        "quora-train.csv:3: empty sentence2 (an unbalanced quote may have swallowed it)"),
    "unbalanced quote joining lines": (
        "quora-train.csv", '\tid\tsentence1\tsentence2\tis_duplicate\n0\tq1\tWhy?\tHow?\t0.0\n'
        '1\tq2\t"Where is\tit?\t1.0\n2\tq3\tA\tB\t1.0\n',
        "quora-train.csv:3: expected 5 columns, found 3 (an unbalanced quote joined lines 3-4)"),
    "empty sentence": ("ids-sst-train.csv", SST_HEADER + GOOD + "2\tb\t   \t4\n", "ids-sst-train.csv:4: empty sentence"),
    "label missing": ("ids-sst-train.csv", SST_HEADER + GOOD + "2\tb\tOkay .\t\n", "ids-sst-train.csv:4: empty sentiment"),
    "label non-numeric": ("ids-sst-train.csv", SST_HEADER + GOOD + "2\tb\tOkay .\tgood\n",
                          "ids-sst-train.csv:4: sentiment 'good': not a number"),
    "label NaN": ("sts-train.csv", "\tid\tsentence1\tsentence2\tsimilarity\n0\ts1\tA\tB\t2.5\n1\ts2\tC\tD\tnan\n",
                  "sts-train.csv:3: similarity 'nan': out of range (expected 0.0-5.0)"),
    "SST label out of range": ("ids-sst-train.csv", SST_HEADER + GOOD + "2\tb\tOkay .\t5\n",
                               "ids-sst-train.csv:4: sentiment '5': out of range (expected an integer 0-4)"),
    "Quora label out of range": ("quora-train.csv", "\tid\tsentence1\tsentence2\tis_duplicate\n0\tq1\tA\tB\t2.0\n"
                                 "1\tq2\tC\tD\t1.0\n",
                                 "quora-train.csv:2: is_duplicate '2.0': out of range (expected an integer 0-1)"),
    "STS label out of range": ("sts-train.csv", "\tid\tsentence1\tsentence2\tsimilarity\n0\ts1\tA\tB\t5.5\n"
                               "1\ts2\tC\tD\t1.0\n", "sts-train.csv:2: similarity '5.5': out of range (expected 0.0-5.0)"),
    "duplicate id": ("ids-sst-train.csv", SST_HEADER + GOOD + "2\tg1\tAgain .\t2\n",
                     "ids-sst-train.csv:4: duplicate id 'g1'"),
}

FATAL_CASES = {
    "missing file": ("ids-sst-dev.csv", None, "ids-sst-dev.csv: file not found"),
    "wrong header": ("ids-sst-train.csv", "\tid\ttext\tsentiment\n0\ta\tx\t1\n",
                     "ids-sst-train.csv:1: wrong header: missing column(s) ['sentence']"),
    "missing header": ("ids-sst-train.csv", GOOD, "ids-sst-train.csv:1: wrong header: missing column(s)"),
    "empty file": ("sts-dev.csv", "", "sts-dev.csv: empty file (no header row)"),
    "non-UTF-8 bytes": ("ids-sst-train.csv", (SST_HEADER + GOOD).encode() + b"2\tb\tcaf\xe9\t2\n",
                        "ids-sst-train.csv:4: not UTF-8 text (byte 0xe9"),
}


def tiny_train(data: Path, out: Path, backbone: Path, *extra: str) -> list[str]:
    return ["train", "--data-dir", str(data), "--out", str(out), "--set", f"model.backbone={backbone}",
            "--set", "train.epochs=1", "--set", "train.schedule.steps_per_epoch=1", "--set", "train.threads=1",
            "--set", "train.batch_size={sst: 2, para: 2, sts: 2}", "--set", "eval.test_predictions=false", *extra]


def data_with(tmp_path: Path, small_data_dir: Path, name: str, content) -> Path:
    data = tmp_path / "data"
    shutil.copytree(small_data_dir, data)
    if content is None:
        (data / name).unlink()
    elif isinstance(content, bytes):
        (data / name).write_bytes(content)
    else:
        (data / name).write_text(content, encoding="utf-8")
    return data


def assert_one_line_error(err: str, message: str, where: Path) -> None:
    """stderr ends with the one-line error; any lines before it are the run's log lines (a run that fails
    before it has validated keeps them out of its folder; a log.txt that exists has them)."""
    *before, last = err.splitlines()
    assert last.startswith("minbert: error: ") and message in last and "Traceback" not in err
    assert not any(line.startswith("minbert: error") for line in before), before
    logged = "".join(p.read_text() for p in where.rglob("log.txt"))
    assert not logged or all(line in logged for line in before), before


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_bad_row_is_a_counted_skip_in_the_run_log(case, tmp_path, small_data_dir, tiny_backbone, capsys):
    name, content, message = ROW_CASES[case]
    data = data_with(tmp_path, small_data_dir, name, content)
    assert main(tiny_train(data, tmp_path / "run", tiny_backbone)) == 0
    log = (tmp_path / "run" / "log.txt").read_text()
    assert f"skipped {data / message}" in log
    assert f"{data / name}: " in log and ", 1 skipped" in log
    assert "Traceback" not in capsys.readouterr().err
    # strict mode turns the same row into a one-line error before training
    assert main(tiny_train(data, tmp_path / "strict", tiny_backbone, "--set", "data.strict=true")) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, message, tmp_path / "strict")


@pytest.mark.parametrize("case", sorted(FATAL_CASES))
def test_bad_file_is_a_one_line_error_before_training(case, tmp_path, small_data_dir, tiny_backbone, capsys):
    name, content, message = FATAL_CASES[case]
    data = data_with(tmp_path, small_data_dir, name, content)
    assert main(tiny_train(data, tmp_path / "run", tiny_backbone)) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, message, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_very_long_sentence_is_truncated_not_an_error(tmp_path, small_data_dir, tiny_backbone):
    data = data_with(tmp_path, small_data_dir, "ids-sst-train.csv",
                     SST_HEADER + GOOD + "2\tlong\t" + "very " * 20_000 + "long .\t4\n")
    assert main(tiny_train(data, tmp_path / "run", tiny_backbone)) == 0
    assert "ids-sst-train.csv: 3 rows, 3 kept, 0 skipped" in (tmp_path / "run" / "log.txt").read_text()


@pytest.mark.parametrize("override,message", [
    ("train.lrr=1", "unknown key train.lrr"),
    ("train.lr=fast", "train.lr: expected float, got str 'fast'"),
    ("train.batch_size.sst=-4", "train.batch_size.sst: must be positive, got -4"),
])
def test_bad_config_is_a_one_line_error(override, message, tmp_path, small_data_dir, tiny_backbone, capsys):
    assert main(tiny_train(small_data_dir, tmp_path / "run", tiny_backbone, "--set", override)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def broken_checkpoint(tmp_path: Path, tiny_backbone: Path, how: str) -> Path:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_backbone, ckpt)
    if how == "missing weights":
        (ckpt / "model.safetensors").unlink()
    elif how == "missing vocab":
        (ckpt / "vocab.txt").unlink()
    elif how == "truncated":
        data = (ckpt / "model.safetensors").read_bytes()
        (ckpt / "model.safetensors").write_bytes(data[: len(data) // 3])
    elif how == "wrong shape":
        cfg = (ckpt / "config.json").read_text().replace('"intermediate_size": 64', '"intermediate_size": 96')
        (ckpt / "config.json").write_text(cfg)
    return ckpt


@pytest.mark.parametrize("how,message", [
    ("missing weights", "neither model.safetensors nor pytorch_model.bin found"),
    ("missing vocab", "vocab.txt: vocabulary file not found"),
    ("truncated", "model.safetensors: unreadable safetensors file"),
    ("wrong shape", "model.safetensors: tensor encoder.layer.0.intermediate.dense.weight has shape (64, 32), "
                    "expected (96, 32)"),
])
def test_bad_checkpoint_is_a_one_line_error(how, message, tmp_path, small_data_dir, tiny_backbone, capsys):
    ckpt = broken_checkpoint(tmp_path, tiny_backbone, how)
    args = tiny_train(small_data_dir, tmp_path / "run", tiny_backbone)
    args[args.index(f"model.backbone={tiny_backbone}")] = f"model.backbone={ckpt}"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("minbert: error: model.backbone: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # found before the run folder is created
