"""Real write failures, not mocks: every command that writes runs in a subprocess under a file-size limit
(`RLIMIT_FSIZE`: a write past it fails with EFBIG, for any user) and, where the tests run as root, on a small
tmpfs mounted for the test (a real ENOSPC). Each must exit 3 with one line `minbert: error: cannot write PATH:
...`, no traceback, no temporary file left, and every earlier complete file byte-identical."""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "minbert"
MB = 1_000_000
LOGS = ("log.txt", "steps.jsonl", "evaluate.log", "grad_cosine.jsonl")  # append-only: earlier lines must stay


def run_args(out: Path, backbone: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "--data-dir", str(data), "--out", str(out), "--set", f"model.backbone={backbone}",
            "--set", "train.epochs=2", "--set", "train.schedule.steps_per_epoch=6", "--set", "train.checkpoint_every=2",
            "--set", "train.batch_size={sst: 4, para: 4, sts: 4}", "--set", "train.threads=1",
            "--set", "eval.test_predictions=false", "--set", "train.log_every=1", *extra]


def minbert(args: list[str], limit: int | None = None, **kw) -> subprocess.CompletedProcess:
    """`python -m minbert ARGS` in a subprocess, under a file-size limit of `limit` bytes when given."""
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "-m", "minbert", *args], cwd=REPO, capture_output=True, text=True,
                          preexec_fn=limited if limit else None, **kw)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (the lock file left out) by its relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def assert_write_failure(proc: subprocess.CompletedProcess, names: str, *folders_before: tuple[Path, dict]) -> str:
    """Exit 3, the last line of stderr one `minbert: error: cannot write PATH` naming a path that matches
    `names`, no traceback, no temporary file, every earlier file byte-identical (a log may have grown)."""
    err = proc.stderr
    assert proc.returncode == 3, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.rstrip("\n").splitlines()[-1]
    assert last.startswith("minbert: error: cannot write "), last
    assert re.search(names, last.split(":")[2]), last
    assert last.count("minbert: error:") == 1
    print(last)  # the messages docs/design/reliability.md quotes (pytest -s)
    for folder, before in folders_before:
        left = [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".part", ".old"))]
        assert not left, left
        after = tree(folder)
        for name, data in before.items():
            if Path(name).name in LOGS:
                assert after[name].startswith(data), name
            else:
                assert after.get(name) == data, f"{name} changed"
    return last


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    """A finished tiny run, written normally."""
    run = tmp_path_factory.mktemp("trained") / "run"
    proc = minbert(run_args(run, tiny_backbone, small_data_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


@pytest.fixture(scope="module")
def paused(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    """A run paused by SIGTERM after its first checkpoint (what `train --resume` continues)."""
    run = tmp_path_factory.mktemp("paused") / "run"
    args = run_args(run, tiny_backbone, small_data_dir, "--set", "train.schedule.steps_per_epoch=400",
                    "--set", "train.checkpoint_every=1")
    proc = subprocess.Popen([sys.executable, "-m", "minbert", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "last" / "trainer_state.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 143
    return run


def copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


# ---- each command under a file-size limit (EFBIG) ----

def test_train_under_a_file_size_limit(tmp_path, tiny_backbone, small_data_dir):
    out = tmp_path / "run"
    proc = minbert(run_args(out, tiny_backbone, small_data_dir), limit=MB)
    last = assert_write_failure(proc, r"/run/(last|best)$", (out, {}))
    assert "the file size limit is exceeded (ulimit -f) (EFBIG); nothing was written" in last
    assert f"continue with: minbert train --resume {out}" in last


def test_train_resume_under_a_file_size_limit(paused, tmp_path):
    run = copy(paused, tmp_path / "run")
    before = tree(run)
    proc = minbert(["train", "--resume", str(run)], limit=MB)
    last = assert_write_failure(proc, r"/run/(last|best)$", (run, before))
    assert "the previous last/ checkpoint is intact" in last or "the previous best/ checkpoint is intact" in last


def test_predict_output_under_a_file_size_limit(trained, small_data_dir, tmp_path):
    out = tmp_path / "preds.csv"
    out.write_text("an earlier file\n")
    before = tree(tmp_path)
    proc = minbert(["predict", str(trained), "--task", "sst", "--input", str(small_data_dir / "ids-sst-dev.csv"),
                    "--output", str(out)], limit=200)
    last = assert_write_failure(proc, r"preds\.csv$", (tmp_path, before), (trained, tree(trained)))
    assert "the previous preds.csv is intact" in last


def test_evaluate_out_under_a_file_size_limit(trained, small_data_dir, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("a user's file\n")
    before, run_before = tree(out), tree(trained)
    proc = minbert(["evaluate", str(trained), "--data-dir", str(small_data_dir), "--out", str(out)], limit=800)
    assert_write_failure(proc, r"/eval/", (out, before), (trained, run_before))


def test_report_under_a_file_size_limit(trained, small_data_dir, tmp_path):
    run = copy(trained, tmp_path / "run")
    before = tree(run)
    proc = minbert(["report", str(run), "--data-dir", str(small_data_dir)], limit=2000)
    assert_write_failure(proc, r"/run/report/", (run, before))


def test_export_under_a_file_size_limit(trained, tmp_path):
    out = tmp_path / "export"
    assert minbert(["export", str(trained), "--out", str(out), "--format", "sentence-transformers"]).returncode == 0
    before = tree(out)
    proc = minbert(["export", str(trained), "--out", str(out), "--overwrite"], limit=MB)
    last = assert_write_failure(proc, r"/export/model\.safetensors$", (out, before))
    assert f"the earlier files in {out} are as they were" in last


def test_ensemble_under_a_file_size_limit(trained, small_data_dir, tmp_path):
    other = copy(trained, tmp_path / "other")
    out = tmp_path / "ensemble"
    assert minbert(["ensemble", str(trained), str(other), "--out", str(out),
                    "--data-dir", str(small_data_dir)]).returncode == 0
    before = tree(out)
    proc = minbert(["ensemble", str(trained), str(other), "--out", str(out), "--data-dir", str(small_data_dir)],
                   limit=1000)
    assert_write_failure(proc, r"/ensemble/", (out, before))


@pytest.mark.parametrize("command", ["recipe", "sweep"])
def test_recipe_and_sweep_under_a_file_size_limit(command, tiny_backbone, small_data_dir, tmp_path):
    sets = [f"model.backbone={tiny_backbone}", "train.epochs=1", "train.schedule.steps_per_epoch=4",
            "train.batch_size={sst: 4, para: 4, sts: 4}", "train.threads=1", "eval.test_predictions=false"]
    if command == "recipe":
        config = write_yaml(tmp_path / "a.yaml", {"train": {"epochs": 1}})
        spec = write_yaml(tmp_path / "recipe.yaml", {"runs": {"a": {"config": str(config), "set": sets}}})
    else:
        spec = write_yaml(tmp_path / "sweep.yaml", {"grid": {"train.lr": [1e-4]}, "set": sets})
    out = tmp_path / "out"
    proc = minbert([command, str(spec), "--out", str(out), "--data-dir", str(small_data_dir)], limit=MB)
    last = assert_write_failure(proc, r"/out/", (out, {}))
    assert f"rerun the same minbert {command} command to continue" in last


# ---- a real full disk: a small tmpfs (root only) ----

@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 48 MB mounted for the test (real ENOSPC); skipped, saying why, when it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a tmpfs needs root to mount; the file-size-limit tests cover the same writers")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves `leave` bytes free on `disk`."""
    stat = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {**load_file(folder / "model.safetensors"), **{f"heads.{k}": v for k, v in
                                                          load_file(folder / "heads.safetensors").items()}}


def test_a_full_disk_stops_the_run_and_resume_ends_equal_to_an_uninterrupted_run(small_disk, trained, tmp_path,
                                                                                  tiny_backbone, small_data_dir):
    run = small_disk / "run"
    filler = fill(small_disk, 22 * MB)  # room for best/ and one last/, not for the next last/ beside it
    proc = minbert(run_args(run, tiny_backbone, small_data_dir))
    last = assert_write_failure(proc, r"/run/(last|best)$", (run, {}))
    assert "the disk is full (ENOSPC); the previous last/ checkpoint is intact" in last
    assert f"continue with: minbert train --resume {run}" in last
    filler.unlink()
    done = minbert(["train", "--resume", str(run)])
    assert done.returncode == 0, done.stderr[-2000:]
    for folder in ("best", "last"):
        ref, got = weights(trained / folder), weights(run / folder)
        assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref), folder
    dev = [json.loads(line)["dev"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert dev == [json.loads(line)["dev"] for line in (trained / "metrics.jsonl").read_text().splitlines()]


def test_predict_onto_a_full_disk(small_disk, trained, small_data_dir):
    out = small_disk / "preds.csv"
    out.write_text("an earlier file\n")
    fill(small_disk, 0)
    before = tree(small_disk)
    proc = minbert(["predict", str(trained), "--task", "sst", "--input", str(small_data_dir / "ids-sst-dev.csv"),
                    "--output", str(out)])
    last = assert_write_failure(proc, r"preds\.csv$", (small_disk, before))
    assert "the disk is full (ENOSPC); the previous preds.csv is intact" in last


def onto_full_disk(command: str, disk: Path, trained: Path, paused: Path, backbone: Path, data: Path
                   ) -> tuple[list[str], str, Path]:
    """(the command's arguments, the path its error must name, the folder it writes) for `command` writing onto
    `disk`; an earlier output or run is put there first where the command replaces or continues one."""
    sets = [f"model.backbone={backbone}", "train.epochs=1", "train.schedule.steps_per_epoch=4",
            "train.batch_size={sst: 4, para: 4, sts: 4}", "train.threads=1", "eval.test_predictions=false"]
    out = disk / "out"
    if command == "train":
        return run_args(out, backbone, data), r"/out", out
    if command == "train --resume":
        return ["train", "--resume", str(copy(paused, out))], r"/out", out
    if command == "evaluate --out":
        return ["evaluate", str(trained), "--data-dir", str(data), "--out", str(out)], r"/out", out
    if command == "report":
        return ["report", str(copy(trained, out)), "--data-dir", str(data)], r"/out", out
    if command == "export":
        return ["export", str(trained), "--out", str(out)], r"/out", out
    if command == "ensemble":
        return ["ensemble", str(trained), str(trained), "--out", str(out), "--data-dir", str(data)], r"/out", out
    spec = disk.parent / f"{command}.yaml"
    if command == "recipe":
        config = write_yaml(disk.parent / "a.yaml", {"train": {"epochs": 1}})
        write_yaml(spec, {"runs": {"a": {"config": str(config), "set": sets}}})
    else:
        write_yaml(spec, {"grid": {"train.lr": [1e-4]}, "set": sets})
    return [command, str(spec), "--out", str(out), "--data-dir", str(data)], r"/out", out


@pytest.mark.parametrize("command", ["train", "train --resume", "evaluate --out", "report", "export", "ensemble",
                                     "recipe", "sweep"])
def test_each_command_onto_a_full_disk(command, small_disk, trained, paused, tiny_backbone, small_data_dir):
    args, names, out = onto_full_disk(command, small_disk, trained, paused, tiny_backbone, small_data_dir)
    fill(small_disk, 0)
    before, run_before = tree(small_disk), tree(trained)
    proc = minbert(args)
    last = assert_write_failure(proc, names, (small_disk, before), (trained, run_before))
    assert "the disk is full (ENOSPC)" in last


# ---- no writer outside the boundary ----

DIRECT_WRITES = re.compile(r"(?<!writes)\.write_text\(|(?<!writes)\.write_bytes\(|\bopen\([^)]*[\"'](w|a|x)b?\+?[\"']|\.open\([\"'](w|a|x)"
                           r"|\bsave_file\(|\.savefig\(|\btorch\.save\(|\bjson\.dump\(|shutil\.copy")
ALLOWED = {  # file: why it may write directly
    "writes.py": "the boundary itself",
    "training/setup.py": "check_writable's probe file (a temporary file of its own, inside writes.failures)",
    "tools/lanes.py": "a child's standard output, opened for the child (inside writes.failures)",
}


def direct_writes() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        name = str(path.relative_to(SRC))
        if name in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if DIRECT_WRITES.search(code):
                found.append(f"src/minbert/{name}:{number}: {line.strip()}")
    return found


def test_every_writer_goes_through_the_boundary():
    """A new `write_text`, `open(..., "w")`, `save_file`, `savefig`, `torch.save`, ... outside writes.py fails here,
    naming file:line: write it with minbert.writes, so that a full disk is one line and leaves nothing half written."""
    assert direct_writes() == []
    for line in ('path.write_text("x")', 'open(p, "w")', 'open(p, "ab")', 'p.open("a")', 'fig.savefig(p)',
                 'save_file(t, p)', 'torch.save(m, p)'):
        assert DIRECT_WRITES.search(line), line  # the scan sees each kind of writer
