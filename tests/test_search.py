"""`minbert sweep` with a search space: Optuna's TPE with median pruning on real (tiny) runs, its outputs; a search
killed with SIGKILL and rerun; two worker processes on one SQLite study; two processes sharing a study on a real
PostgreSQL server; bad spaces, storages and a study of another search as one-line errors before anything is
written."""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.schema import load_config

optuna = pytest.importorskip("optuna", reason="minbert[search] (Optuna) is not installed")

REPO = Path(__file__).resolve().parents[1]


def space_file(tmp_path: Path, backbone: Path, space: str, search: str, steps: int = 4, epochs: int = 1,
               extra: tuple[str, ...] = ()) -> Path:
    path = tmp_path / "space.yaml"
    sets = [f"model.backbone={backbone}", f"train.epochs={epochs}", "train.schedule.until=fixed_steps",
            f"train.schedule.steps_per_epoch={steps}", "train.batch_size={sst: 4, para: 4, sts: 4}",
            "eval.test_predictions=false", "train.threads=1", *extra]
    path.write_text("set:\n" + "".join(f"  - {json.dumps(s)}\n" for s in sets) + f"space:\n{space}\nsearch: {search}\n")
    return path


def minbert(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "minbert", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finished(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return err


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: (p / "best" / "heads.safetensors").stat().st_mtime_ns for p in sorted(folder.glob("trial-*"))
            if (p / "best").is_dir()}


def test_tpe_with_pruning_ranks_trials_and_reruns_train_nothing(tmp_path, tiny_backbone, small_data_dir, capsys):
    space = space_file(tmp_path, tiny_backbone, "  train.lr: {low: 1.0e-6, high: 1.0e-2, log: true}\n"
                       "  model.dropout: {low: 0.0, high: 0.5}\n  model.pooling: {choice: [mean, cls]}\n",
                       "{trials: 5, sampler: tpe, seed: 3, pruner: median, startup_trials: 1}",
                       steps=6, extra=("train.eval_every=2",))
    out = tmp_path / "out"
    assert main(["sweep", str(space), "--out", str(out), "--data-dir", str(small_data_dir)]) == 0
    summary = json.loads((out / "search.json").read_text())
    rows = summary["trials"]
    assert len(rows) == 5 and {r["state"] for r in rows} <= {"complete", "pruned"}
    assert summary["counts"]["complete"] + summary["counts"]["pruned"] == 5
    ranked = [r["score"] for r in rows if r["state"] == "complete"]
    assert ranked == sorted(ranked, reverse=True) and summary["best"]["score"] == ranked[0]
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{out / 'study.db'}")
    for t in study.trials:  # each evaluation reported; a pruned trial stopped at the evaluation that pruned it
        run = out / f"trial-{t.number:04d}"
        assert (run / "best_metrics.json").is_file() and (run / "best").is_dir()
        best = json.loads((run / "best_metrics.json").read_text())
        assert max(t.intermediate_values.values()) == pytest.approx(t.value if t.value is not None else best["overall"])
        if t.state == optuna.trial.TrialState.PRUNED:
            assert max(t.intermediate_values) < 6 and t.user_attrs["updates"] == max(t.intermediate_values)
            assert "the search pruned this run" in (run / "log.txt").read_text()
        else:
            assert sorted(t.intermediate_values) == [2, 4, 6]
    assert any(r["state"] == "pruned" for r in rows), rows  # the median pruner stopped a losing trial
    table = (out / "search.md").read_text()
    assert table.count("\n| ") == 6 and "pruned" in table and (out / "figures" / "history.png").stat().st_size > 1000
    best_cfg = load_config(out / "best.yaml")
    assert best_cfg.train.lr == pytest.approx(summary["best"]["params"]["train.lr"])
    # the same command again: every trial is done, so none is trained and none is added
    before = mtimes(out)
    capsys.readouterr()
    assert main(["sweep", str(space), "--out", str(out), "--data-dir", str(small_data_dir)]) == 0
    assert len(optuna.load_study(study_name="space", storage=f"sqlite:///{out / 'study.db'}").trials) == 5
    assert mtimes(out) == before and "search: trial" not in capsys.readouterr().err


def test_a_fixed_seed_draws_the_same_trials(tmp_path, tiny_backbone, small_data_dir):
    space = space_file(tmp_path, tiny_backbone, "  train.lr: {low: 1.0e-5, high: 1.0e-3, log: true}\n"
                       "  train.combine.name:\n    choice: {sum: {}, cagrad: {train.combine.c: {low: 0.1, high: 0.9}}}\n",
                       "{trials: 3, sampler: tpe, seed: 7, pruner: none, startup_trials: 2}", steps=2)
    drawn = []
    for name in ("a", "b"):
        assert main(["sweep", str(space), "--out", str(tmp_path / name), "--data-dir", str(small_data_dir)]) == 0
        drawn.append([r["params"] for r in sorted(json.loads((tmp_path / name / "search.json").read_text())["trials"],
                                                  key=lambda r: r["trial"])])
    assert drawn[0] == drawn[1]
    for params in drawn[0]:  # CAGrad's c is drawn only when CAGrad is chosen
        assert ("train.combine.c" in params) == (params["train.combine.name"] == "cagrad")


def test_a_search_killed_with_sigkill_continues_on_rerun(tmp_path, tiny_backbone, small_data_dir):
    space = space_file(tmp_path, tiny_backbone, "  train.lr: {low: 1.0e-5, high: 1.0e-3, log: true}\n",
                       "{trials: 3, sampler: random, seed: 0, pruner: none}", steps=10, epochs=2,
                       extra=("train.checkpoint_every=1",))
    out = tmp_path / "out"
    args = ("sweep", str(space), "--out", str(out), "--data-dir", str(small_data_dir))
    proc = minbert(*args)
    deadline = time.time() + 300
    while not (out / "trial-0001" / "last").is_dir():  # trial 0 done, trial 1 part-way with a checkpoint
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "trial-0001" / "best_metrics.json").exists()
    before = mtimes(out)
    err = finished(minbert(*args))
    assert "search: trial 1 did not finish; queued again (it continues trial-0001)" in err
    assert "continuing it from" in err
    summary = json.loads((out / "search.json").read_text())
    assert summary["counts"] == {"complete": 3, "pruned": 0, "failed": 1, "running": 0}
    failed = [r for r in summary["trials"] if r["state"] == "failed"]
    assert failed[0]["trial"] == 1 and "queued again" in failed[0]["note"]
    # trial 2 re-ran trial 1 in trial-0001; trial 3 is new
    assert sorted(p.name for p in out.glob("trial-*")) == sorted({r["run"] for r in summary["trials"]}) == [
        "trial-0000", "trial-0001", "trial-0003"]
    assert mtimes(out)["trial-0000"] == before["trial-0000"]  # a finished trial is never trained again
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{out / 'study.db'}")
    retried = [t for t in study.trials if t.user_attrs.get("retry_of") == 1]
    assert len(retried) == 1 and retried[0].params == study.trials[1].params
    assert retried[0].state == optuna.trial.TrialState.COMPLETE


def test_two_workers_share_one_sqlite_study(tmp_path, tiny_backbone, small_data_dir):
    space = space_file(tmp_path, tiny_backbone, "  train.lr: {low: 1.0e-5, high: 1.0e-3, log: true}\n",
                       "{trials: 4, sampler: random, seed: 0, pruner: none}", steps=4)
    out = tmp_path / "out"
    assert main(["sweep", str(space), "--out", str(out), "--data-dir", str(small_data_dir), "--workers", "2"]) == 0
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # two processes, neither this one
    assert len({t.params["train.lr"] for t in study.trials}) == 4  # the two workers never draw the same values
    assert str(os.getpid()) not in {t.user_attrs["worker"].rpartition(":")[2] for t in study.trials}
    assert len(json.loads((out / "search.json").read_text())["trials"]) == 4
    assert (out / "worker-1.log").is_file() and (out / "worker-2.log").is_file()


BAD = {
    "an unknown key": ("  train.lrr: {low: 1.0e-5, high: 1.0e-3}\n", "train.lrr"),
    "an empty range": ("  train.lr: {low: 1.0e-3, high: 1.0e-5}\n", "train.lr: the range 0.001..1e-05 is empty"),
    "a value the config refuses": ("  model.dropout: {low: 0.0, high: 1.5}\n", "model.dropout"),
    "a bad choice": ("  model.pooling: {choice: [mean, median]}\n", "model.pooling: 'median' is not one of"),
    "a bad section key": ("  train.combine.name:\n    choice: {sum: {}, cagrad: {train.combine.cc: 0.5}}\n",
                          "train.combine.cc"),
    "a list": ("  tasks: [sst]\n", "a list is ambiguous"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_space_is_one_line_before_anything_is_written(case, tmp_path, capsys):
    space, message = BAD[case]
    path = tmp_path / "s.yaml"
    path.write_text(f"space:\n{space}")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minbert: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_grid_sampler_takes_choices_only_and_grid_files_take_no_search_flags(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("space:\n  train.lr: {low: 1.0e-5, high: 1.0e-3}\nsearch: {sampler: grid}\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "the grid sampler takes choices and fixed values only" in capsys.readouterr().err
    path.write_text("grid:\n  train.lr: [1.0e-4]\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--workers", "2"]) == 2
    assert "--workers is for a search space" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path, tiny_backbone, small_data_dir, capsys):
    space = space_file(tmp_path, tiny_backbone, "  train.lr: {low: 1.0e-5, high: 1.0e-3}\n", "{trials: 1}")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url, why in ((f"postgresql://u:secret@127.0.0.1:{port}/db", "OperationalError"),
                     ("nosuchdb://x", "cannot open it"), (f"sqlite:///{tmp_path}/missing/dir/s.db", "cannot open it")):
        code = main(["sweep", str(space), "--out", str(tmp_path / "out"), "--data-dir", str(small_data_dir),
                     "--storage", url])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and why in err and "secret" not in err, err
    assert not (tmp_path / "out").exists()


# ---- a real PostgreSQL server: a throwaway cluster in a temporary folder, on 127.0.0.1 only ----
def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture
def postgres():
    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's initdb is missing under /usr/lib/postgresql/*/bin (.ci/run installs it)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    folder = Path(tempfile.mkdtemp(prefix="minbert-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_processes_share_a_study_on_a_real_postgresql_server(postgres, tmp_path, tiny_backbone, small_data_dir,
                                                                   capsys):
    if not any(importlib.util.find_spec(m) for m in ("psycopg", "psycopg2")):
        pytest.skip("no PostgreSQL driver (pip install 'minbert[search]' installs psycopg)")
    space = space_file(tmp_path, tiny_backbone, "  train.lr: {low: 1.0e-5, high: 1.0e-3, log: true}\n",
                       "{trials: 4, sampler: tpe, seed: 1, pruner: median, startup_trials: 2}", steps=4)
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
    procs = [minbert("sweep", str(space), "--out", str(m), "--data-dir", str(small_data_dir), "--storage", postgres,
                     "--study", "shared") for m in machines]
    for proc in procs:
        finished(proc)
    study = optuna.load_study(study_name="shared", storage=postgres)
    assert len(study.trials) == 4 and all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    runs = sorted(p.name for m in machines for p in m.glob("trial-*"))
    assert runs == [f"trial-{n:04d}" for n in range(4)]  # each trial trained once, on one of the two
    assert len({t.params["train.lr"] for t in study.trials}) == 4  # the two processes never draw the same values
    for m in machines:
        assert len(json.loads((m / "search.json").read_text())["trials"]) == 4  # both see the whole study
    # the same study name for another search: refused, nothing written
    other = tmp_path / "other.yaml"
    other.write_text(space.read_text().replace("1.0e-3", "2.0e-3"))
    assert main(["sweep", str(other), "--out", str(tmp_path / "c"), "--data-dir", str(small_data_dir),
                 "--storage", postgres, "--study", "shared"]) == 2
    assert "study 'shared' in postgresql://postgres@127.0.0.1" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_without_optuna_a_search_is_one_line_and_a_grid_still_runs(tmp_path):
    """A Python where `import optuna` fails (its module entry None, as for a package that is not installed)."""
    space = tmp_path / "s.yaml"
    space.write_text("space:\n  train.lr: {low: 1.0e-5, high: 1.0e-3}\n")
    code = ("import sys; sys.modules['optuna'] = None; from minbert.cli import main; "
            f"sys.exit(main(['sweep', {str(space)!r}, '--out', {str(tmp_path / 'out')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr == (
        "minbert: error: a search space needs Optuna, which is not installed: pip install 'minbert[search]'\n")
    assert not (tmp_path / "out").exists()
