"""`minbert ablate`: variants (with `extends` and budgets) over seeds, mean ± std per variant checked against
the runs' own best_metrics.json, finished runs reused, a killed run continued from its checkpoint (against an
uninterrupted one), bad variants refused before any run."""
import json
import random
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minbert.tools.ablate import plan
from minbert.cli import main
from test_resume import progress, signal_when, weights

REPO = Path(__file__).resolve().parents[1]


ABLATION = """
title: tiny table
seeds: [1, 2]
set:
  model.backbone: {backbone}
  train.epochs: 1
  train.schedule.until: fixed_steps
  train.schedule.steps_per_epoch: 2
  train.combine.log_cosine_every: 1
  eval.test_predictions: false
budget:
  train.schedule.steps_per_epoch: 1
report: {{source: "Table 9, l. 1-3", split: dev, rows: {{siamese: {{sst: 0.5, line: 3}}}}}}
variants:
  base: {{}}
  siamese: {{model.pair_encoding: siamese, budget: {{train.batch_size: {{para: 4}}}}}}
  siamese + cls: {{extends: siamese, model.pooling: cls}}
"""


def write(tmp_path, backbone, text=ABLATION):
    path = tmp_path / "a.yaml"
    path.write_text(text.format(backbone=backbone))
    return path


def test_extends_and_budgets_build_each_variant(tmp_path, tiny_backbone):
    path = write(tmp_path, tiny_backbone)
    _, runs = plan(path, False, None, None, [])
    assert [(n, s) for n, s, _ in runs] == [("base", 1), ("base", 2), ("siamese", 1), ("siamese", 2),
                                           ("siamese + cls", 1), ("siamese + cls", 2)]
    cfg = {n: c for n, s, c in runs}
    assert cfg["siamese + cls"].model.pair_encoding == "siamese" and cfg["siamese + cls"].model.pooling == "cls"
    assert cfg["siamese"].model.pooling == "mean" and cfg["base"].model.pair_encoding == "cross"
    assert cfg["siamese"].train.schedule.steps_per_epoch == 2 and cfg["siamese"].train.batch_size["para"] == 32
    _, runs = plan(path, True, 1, ["siamese + cls"], [])
    (name, seed, c), = runs
    assert (name, seed) == ("siamese + cls", 1)
    assert c.train.schedule.steps_per_epoch == 1 and c.train.batch_size["para"] == 4  # inherited variant budget


def test_ablate_tabulates_mean_and_std_over_seeds(tmp_path, tiny_backbone, small_data_dir):
    path = write(tmp_path, tiny_backbone)
    out = tmp_path / "out"
    args = ["ablate", str(path), "--out", str(out), "--data-dir", str(small_data_dir), "--budget"]
    assert main(args + ["--only", "base", "siamese"]) == 0
    report = json.loads((out / "ablation.json").read_text())
    assert [r["variant"] for r in report["rows"]] == ["base", "siamese"]
    for row in report["rows"]:
        runs = [json.loads((out / row["variant"] / f"seed-{s}" / "best_metrics.json").read_text()) for s in (1, 2)]
        for key in ("sst", "para", "sts", "overall"):
            values = [r[key] for r in runs]
            assert row["metrics"][key]["mean"] == pytest.approx(statistics.fmean(values))
            assert row["metrics"][key]["std"] == pytest.approx(statistics.stdev(values))
    table = (out / "ablation.md").read_text()
    assert "# tiny table" in table and "--budget" in table and table.count("\n| ") == 3
    m = report["rows"][1]["metrics"]["overall"]
    assert f"{m['mean']:.3f} ± {m['std']:.3f}" in table
    # Δ: siamese's mean overall minus base's (its reference: it extends nothing), "in spread" within the stds summed
    overall = {v: [json.loads((out / v / f"seed-{s}" / "best_metrics.json").read_text())["overall"] for s in (1, 2)]
               for v in ("base", "siamese")}
    delta = statistics.fmean(overall["siamese"]) - statistics.fmean(overall["base"])
    inside = abs(delta) <= statistics.stdev(overall["siamese"]) + statistics.stdev(overall["base"])
    siamese_row = next(line for line in table.splitlines() if line.startswith("| siamese |"))
    assert f"| {delta:+.3f} vs base{', in spread' if inside else ''} |" in siamese_row
    assert "| 0.500 / – / – (l. 3) |" in siamese_row and "Table 9, l. 1-3, dev" in table
    assert f"--out {out}" in table
    # s/step and the cosine columns: each run's own metrics.jsonl and grad_cosine.jsonl, averaged over its seeds
    header = next(line for line in table.splitlines() if line.startswith("| variant |"))
    rule = table.splitlines()[table.splitlines().index(header) + 1]
    assert all(line.count(" | ") == header.count(" | ") for line in table.splitlines() if line.startswith("| "))
    assert rule.count("---|") == header.count(" | ") + 1  # one rule cell a column
    for row in report["rows"]:
        per_seed, cos = [], {}
        for s in (1, 2):
            run = out / row["variant"] / f"seed-{s}"
            epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            per_seed.append(sum(e["train_seconds"] for e in epochs) / epochs[-1]["updates"])
            logged = [json.loads(x)["cosine"] for x in (run / "grad_cosine.jsonl").read_text().splitlines()]
            assert logged and all(-1 <= v <= 1 for c in logged for v in c.values())
            for pair in logged[0]:
                cos.setdefault(pair, []).append(statistics.fmean(c[pair] for c in logged))
        assert row["step_seconds"]["mean"] == pytest.approx(statistics.fmean(per_seed))
        assert row["cosines"] == pytest.approx({p: statistics.fmean(v) for p, v in cos.items()})
        line = next(x for x in table.splitlines() if x.startswith(f"| {row['variant']} |"))
        for pair, value in row["cosines"].items():
            assert f"cos {pair}" in header and f"| {value:+.3f} |" in line
    before = (out / "base" / "seed-1" / "ablation_result.json").stat().st_mtime_ns
    assert main(args + ["--seeds", "1"]) == 0  # base seed 1 reused; siamese + cls trained
    assert (out / "base" / "seed-1" / "ablation_result.json").stat().st_mtime_ns == before
    rows = json.loads((out / "ablation.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["base", "siamese", "siamese + cls"] and rows[2]["seeds"] == [1]
    cls_row = next(line for line in (out / "ablation.md").read_text().splitlines() if line.startswith("| siamese + cls |"))
    assert cls_row.endswith("| `model.pooling=\"cls\"` |") and "vs siamese" in cls_row  # its own change, its reference
    result = out / "siamese" / "seed-1" / "ablation_result.json"
    stored = json.loads(result.read_text())
    del stored["config"]["train"]["compile"]  # as if written before minbert had this setting (at its default)
    result.write_text(json.dumps(stored))
    stamp = result.stat().st_mtime_ns
    assert main(args + ["--seeds", "1", "--only", "siamese"]) == 0
    assert result.stat().st_mtime_ns == stamp  # still reused
    assert main(args + ["--seeds", "1", "--only", "base", "--set", "train.lr=1e-3"]) == 0  # changed: trained again
    assert (out / "base" / "seed-1" / "ablation_result.json").stat().st_mtime_ns != before


@pytest.mark.parametrize("variants,message", [
    ("  a: {extends: b}\n  b: {extends: a}\n", "extends itself"),
    ("  a: {extends: nope}\n", "extends unknown variant 'nope'"),
    ("  a: {model.pooling: median}\n", "variant 'a': model.pooling: 'median' is not one of"),
    ("  a: {}\nreport: {rows: {a: {sst: 52.0, line: 4}}}\n", "report.rows.a.sst: expected a figure in [-1, 1]"),
    ("  a: {}\nreport: {rows: {a: {sst: 0.52}}}\n", "report.rows.a.line: expected the report's line number"),
    ("  a: {}\nreport: {rows: {b: {sst: 0.52, line: 4}}}\n", "report.rows.b: no variant named 'b'"),
])
def test_bad_variants_fail_before_any_run(tmp_path, capsys, variants, message):
    path = tmp_path / "a.yaml"
    path.write_text("variants:\n" + variants)
    assert main(["ablate", str(path), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs" / "ablations").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_ablation_files_are_valid_in_both_sizes(path):
    for budget in (False, True):
        meta, runs = plan(path, budget, None, None, [])
        assert runs and len(runs) == len(meta["deltas"]) * len(meta["seeds"])


REPORTS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


@pytest.mark.skipif(not REPORTS.is_dir(), reason="the seed reports are not beside the repository")
@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs" / "ablations").glob("0*.yaml")),
                         ids=lambda p: p.stem)
def test_each_report_figure_is_on_the_line_it_cites(path):
    meta, _ = plan(path, True, None, None, [])
    text = next(REPORTS.glob(f"{path.name[:3]}_*.txt")).read_text().splitlines()
    rows = {name: row for name, row in meta["reports"].items() if row}
    assert set(rows) == set(meta["deltas"])  # every row of the table has the report's figures
    for name, row in rows.items():
        printed = [float(x) for x in re.findall(r"-?\d+\.\d+", text[row["line"] - 1])]
        for task in ("sst", "para", "sts"):
            if task in row:
                assert any(abs(row[task] - x) < 5e-4 for x in printed), (name, task, text[row["line"] - 1])


def killed_ablation(path: Path, out: Path, data: Path, run: Path, target: int) -> None:
    """Start `minbert ablate` in a real process and SIGKILL it once its run has checkpointed step `target`."""
    proc = subprocess.Popen([sys.executable, "-m", "minbert", "ablate", str(path), "--out", str(out),
                             "--data-dir", str(data)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    signal_when(proc, lambda: progress(run)[1] >= target)  # one epoch
    proc.wait()
    assert not (run / "ablation_result.json").exists()


def test_a_killed_run_continues_from_its_checkpoint(tmp_path, tiny_backbone, small_data_dir):
    text = ABLATION.replace("seeds: [1, 2]", "seeds: [1]").replace("steps_per_epoch: 2", "steps_per_epoch: 12") \
        .replace("train.epochs: 1", "train.epochs: 1\n  train.checkpoint_every: 1\n  train.threads: 1")
    text = re.sub(r"report: .*\n", "", text[:text.index("  siamese:")])  # one variant, one seed: "base/seed-1"
    path = write(tmp_path, tiny_backbone, text)
    common = ["--data-dir", str(small_data_dir)]
    reference = tmp_path / "uninterrupted"
    assert main(["ablate", str(path), "--out", str(reference), *common]) == 0

    out = tmp_path / "killed"
    run = out / "base" / "seed-1"
    killed_ablation(path, out, small_data_dir, run, random.Random().randint(2, 9))
    again = subprocess.run([sys.executable, "-m", "minbert", "ablate", str(path), "--out", str(out), *common],
                           capture_output=True, text=True, cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"continuing it from {run / 'last'}" in again.stderr and "resumed from" in (run / "log.txt").read_text()
    ref_run = reference / "base" / "seed-1"
    ref, got = weights(ref_run / "best"), weights(run / "best")  # the killed run ends as if never killed
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    ref_result, result = (json.loads((r / "ablation_result.json").read_text()) for r in (ref_run, run))
    assert result["metrics"] == ref_result["metrics"] and result["config"] == ref_result["config"]
    assert json.loads((out / "ablation.json").read_text())["rows"][0]["metrics"] == \
        json.loads((reference / "ablation.json").read_text())["rows"][0]["metrics"]

    killed_ablation(path, tmp_path / "changed", small_data_dir, tmp_path / "changed" / "base" / "seed-1", 2)
    changed = subprocess.run([sys.executable, "-m", "minbert", "ablate", str(path), "--out", str(tmp_path / "changed"),
                              *common, "--set", "train.lr=1e-3"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert changed.returncode == 0, changed.stderr
    assert "cannot continue it" in changed.stderr and "train.lr" in changed.stderr  # a changed config starts over
    assert "resumed from" not in (tmp_path / "changed" / "base" / "seed-1" / "log.txt").read_text()


def test_lanes_train_runs_side_by_side_pause_on_one_sigint_and_end_as_one_process_would(
        tmp_path, tiny_backbone, small_data_dir):
    """`--lanes 2`: each run in a child process; one SIGINT while two train pauses both at a step with last/
    saved (exit 130); the rerun continues them, and the table ends with the metrics one process gives, run for
    run; each child's output in DIR/VARIANT/seed-S.log; a third run trains nothing."""
    text = ABLATION.replace("steps_per_epoch: 2", "steps_per_epoch: 40")  # long enough to be caught running
    path = write(tmp_path, tiny_backbone, text.replace("train.epochs: 1", "train.epochs: 1\n  train.checkpoint_every: 1"))
    common = [str(path), "--data-dir", str(small_data_dir), "--only", "base", "siamese", "--seeds", "1",
              "--set", "train.threads=1"]
    serial, out = tmp_path / "serial", tmp_path / "lanes"
    assert main(["ablate", *common, "--out", str(serial)]) == 0
    lanes = [sys.executable, "-m", "minbert", "ablate", *common, "--out", str(out), "--lanes", "2"]
    proc = subprocess.Popen(lanes, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs = [out / "base" / "seed-1", out / "siamese" / "seed-1"]
    signal_when(proc, lambda: min(progress(r)[1] for r in runs) >= 2, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "base/seed-1, siamese/seed-1 paused" in err and "rerun the same minbert ablate command" in err, err
    for run in runs:
        assert "interrupted at epoch" in run.with_suffix(".log").read_text()
        assert not (run / "ablation_result.json").exists()

    again = subprocess.run(lanes, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("lanes: started") == 2
    for run in runs:
        assert "continuing it from" in run.with_suffix(".log").read_text()
        got, ref = (json.loads((d / run.parent.name / "seed-1" / "ablation_result.json").read_text()) for d in (out, serial))
        assert got["metrics"] == ref["metrics"] and got["config"] == ref["config"]
    rows = {d: json.loads((d / "ablation.json").read_text())["rows"] for d in (serial, out)}
    assert [r["metrics"] for r in rows[serial]] == [r["metrics"] for r in rows[out]]
    settled = subprocess.run(lanes, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert settled.returncode == 0 and "lanes: started" not in settled.stderr
    assert settled.stderr.count("done before") == 2, settled.stderr
