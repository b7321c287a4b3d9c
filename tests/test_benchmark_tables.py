"""The scripts that write the README's results table, the recipe-sweep table and the seed systems' table, on
hand-made run folders and logs, checked against figures computed here (numpy's sample std, the logs' own
numbers) and, for the seed reports' figures, against the reports' own lines; and benchmarks/ablations.sh's choice of
what to train, with a stub in place of minbert."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def script(name: str, *args) -> list[str]:
    out = subprocess.run([sys.executable, str(BENCH / name), *map(str, args)], check=True, capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if line.startswith("|")]


def fake_run(folder: Path, scores: dict, seconds: list[tuple[float, float]]) -> Path:
    folder.mkdir(parents=True)
    (folder / "best_metrics.json").write_text(json.dumps({**scores, "epoch": 2}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"train_seconds": t, "eval_seconds": e}) + "\n"
                                                  for t, e in seconds))
    return folder


def test_results_table_means_stds_ensembles_and_frozen_row(tmp_path):
    seeds = [{"sst": 0.48, "para": 0.84, "sts": 0.88, "overall": 0.756},
             {"sst": 0.50, "para": 0.85, "sts": 0.87, "overall": 0.760},
             {"sst": 0.46, "para": 0.86, "sts": 0.89, "overall": 0.752}]
    runs = [fake_run(tmp_path / f"seed-{i}", s, [(600.0, 60.0), (1200.0, 60.0)]) for i, s in enumerate(seeds)]
    frozen = fake_run(tmp_path / "frozen", {"sst": 0.4, "para": 0.7, "sts": 0.84, "overall": 0.67}, [(300.0, 60.0)])
    ensembles = []
    for name, members in (("ens-a", runs[:2]), ("ens-b", runs)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ensemble_metrics.json").write_text(json.dumps(
            {"members": [str(m) for m in members], "dev": {"sst": 0.49, "para": 0.855, "sts": 0.885, "overall": 0.761}}))
        ensembles += ["--ensemble", tmp_path / name]
    old = [fake_run(tmp_path / "runs" / "old" / f"seed-{i}", {"sst": 0.47 + i / 100, "para": 0.84, "sts": 0.88,
                                                             "overall": 0.75}, [(60.0, 0.0)]) for i in range(2)]
    (tmp_path / "ens-old").mkdir()
    (tmp_path / "ens-old" / "ensemble_metrics.json").write_text(json.dumps(
        {"members": [str(m) for m in old], "dev": {"sst": 0.48, "para": 0.84, "sts": 0.88, "overall": 0.75}}))
    ensembles += ["--ensemble", tmp_path / "ens-old"]
    rows = script("results_table.py", *runs, *ensembles, "--frozen", frozen,
                  "--other", "older recipe=" + ",".join(map(str, old)))
    cells = [c.strip() for c in rows[2].split("|")[1:-1]]
    assert cells[0].startswith("minbert best-cpu, 3 seeds")
    for task, cell in zip(("sst", "para", "sts", "overall"), cells[1:5]):
        values = np.array([s[task] for s in seeds])
        assert cell == f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
    assert cells[5] == "32 ± 0"  # (600 + 60 + 1200 + 60) s = 32 min, the same for each seed
    ens = [r for r in rows if "ensemble" in r]
    assert len(ens) == 3 and "of seed-0, seed-1 |" in ens[0] and "of seed-0, seed-1, seed-2 |" in ens[1]
    assert "of old/seed-0, old/seed-1 |" in ens[2]  # the folders under runs/ name a moved member
    other = next(r for r in rows if r.startswith("| older recipe"))
    assert other.startswith("| older recipe, 2 seeds (mean ± std) | 0.475 ± 0.007 | 0.840 ± 0.000 |")
    assert "| 0.490 | 0.855 | 0.885 | 0.761 |" in ens[1]
    frozen_row = next(r for r in rows if "encoder frozen" in r)
    assert "| 0.400 | 0.700 | 0.840 | 0.670 | 6 |" in frozen_row


def test_results_table_reads_a_run_kept_as_its_metrics_history_and_an_ensemble_metrics_file(tmp_path):
    epochs = [{"sst": 0.49, "para": 0.84, "sts": 0.86, "overall": 0.750},
              {"sst": 0.47, "para": 0.86, "sts": 0.87, "overall": 0.757},
              {"sst": 0.48, "para": 0.85, "sts": 0.88, "overall": 0.757}]  # ties epoch 2: the first best is kept
    kept = tmp_path / "history" / "seed-1"
    kept.mkdir(parents=True)
    (kept / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "dev": d, "train_seconds": 540.0,
                                                            "eval_seconds": 60.0}) + "\n" for i, d in enumerate(epochs)))
    made = tmp_path / "some_metrics.json"
    made.write_text(json.dumps({"members": ["runs/a", "runs/b"],
                                "dev": {"sst": 0.5, "para": 0.86, "sts": 0.88, "overall": 0.767}}))
    rows = script("results_table.py", kept, "--ensemble", made)
    assert rows[3] == "| &nbsp;&nbsp;seed-1 (epoch 2) | 0.470 | 0.860 | 0.870 | 0.757 | 30 |"
    assert "of a, b | 0.500 | 0.860 | 0.880 | 0.767 |" in rows[4]


def test_sweep_table_orders_by_overall_and_names_each_variants_arguments(tmp_path):
    logs = {"mix": "sst 0.4823, para 0.8278, sts 0.8785, overall 0.7498",
            "best": "sst 0.4986, para 0.8467, sts 0.8791, overall 0.7616",
            "para_only": "para 0.8512"}
    for name, scores in logs.items():
        (tmp_path / f"{name}.log").write_text(f"epoch 1: ...\ntraining done in 100 s; best dev (epoch 2): {scores}\n")
    (tmp_path / "crashed.log").write_text("Traceback ...\n")  # no result line: left out
    rows = script("sweep_table.py", tmp_path)[2:]
    assert [r.split("|")[1].strip() for r in rows] == ["best", "mix", "para_only"]
    assert "| 0.4986 | 0.8467 | 0.8791 | 0.7616 | 2 | `--config configs/best-cpu.yaml` |" in rows[0]
    # the script's shell variables are spelled out in the arguments column
    assert "--set 'model.heads={sts: {pair_encoding: siamese" in rows[1] and "$" not in rows[1]
    assert "| – | 0.8512 | – | – | 2 |" in rows[2]


def seed_run(folder: Path, dev: dict, epochs: list[tuple[float, int | None]]) -> Path:
    """A run folder as training leaves it: best_metrics.json and one metrics.jsonl record per epoch."""
    folder.mkdir(parents=True)
    (folder / "best_metrics.json").write_text(json.dumps({**dev, "epoch": len(epochs)}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": i + 1, "train_seconds": t, "eval_seconds": 30.0, **({"steps": n} if n else {})}) + "\n"
        for i, (t, n) in enumerate(epochs)))
    return folder


def dev(sst: float, para: float, sts: float) -> dict:
    return {"sst": sst, "para": para, "sts": sts, "overall": (sst + para + (sts + 1) / 2) / 3}


def test_seeds_table_rows_per_system_report_figures_minutes_and_step_times(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("000-unleashed", "002-adapt", "004-robust"):
        (configs / f"{name}.yaml").write_text("tasks: [sst, para, sts]\n")
    results = tmp_path / "results"
    seeds = [dev(0.50, 0.84, 0.87), dev(0.48, 0.85, 0.88)]
    seed_run(results / "000-unleashed", seeds[0], [(1200.0, 800), (1500.0, 800)])
    seed_run(results / "000-unleashed" / "seed-11712", seeds[1], [(1300.0, 800), (1400.0, 800)])
    seed_run(results / "002-adapt", dev(0.47, 0.83, 0.86), [(3000.0, 800), (3300.0, 800)])
    step_times = tmp_path / "step_times.json"
    step_times.write_text(json.dumps({"base": "default", "systems": {
        name: {"seconds_per_step": 2.0 * r, "ratio": r} for name, r in
        (("default", 1.0), ("000-unleashed", 1.234), ("002-adapt", 3.456))}}))
    default = seed_run(tmp_path / "default", dev(0.50, 0.827, 0.861), [(1248.8, None), (1793.1, None)])
    best_cpu = seed_run(tmp_path / "best-cpu", dev(0.489, 0.857, 0.880), [(3547.9, 1400), (3971.8, 1400)])
    doc = tmp_path / "docs" / "SEEDS.md"
    args = ["--results", results, "--configs", configs, "--default", default, "--best-cpu", best_cpu, "--step-times", step_times]
    rows = script("seeds_table.py", *args)
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in rows[2:]}
    unleashed = cells["`000-unleashed`"]
    assert unleashed[0] == "miniBert Unleashed, Table 2 last row (l. 162)"
    assert unleashed[1] == f"0.520 / 0.848 / 0.870 / {(0.520 + 0.848 + (0.870 + 1) / 2) / 3:.3f}"
    for task, cell in zip(("sst", "para", "sts", "overall"), unleashed[2:6]):
        values = np.array([s[task] for s in seeds])
        assert cell == f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
    assert unleashed[6] == "2"
    assert unleashed[7] == "45 ± 0"  # 2,700 s of training loop each (evaluation left out)
    assert unleashed[8] == "1.23×"  # the ratio benchmarks/seeds_step_times.py measured
    adapt = cells["`002-adapt`"]
    assert adapt[2:] == ["0.470", "0.830", "0.860", f"{(0.47 + 0.83 + 0.93) / 3:.3f}", "1", "105",
                         "3.46×"]
    assert cells["`004-robust`"][2:] == ["not run", "", "", "", "", "", ""]  # no figures for a system not run
    default_row = next(v for k, v in cells.items() if k.startswith("default (`configs/default.yaml`)"))
    assert default_row[2:] == ["0.500", "0.827", "0.861", f"{dev(0.50, 0.827, 0.861)['overall']:.3f}", "1", "51",
                               "1.00×"]
    best_row = next(v for k, v in cells.items() if k.startswith("best-cpu"))
    assert best_row[-2:] == ["125", "–"]  # not in the step-time measurement

    doc.parent.mkdir()
    doc.write_text("# Seeds\n\nBefore.\n\n<!-- seeds-table: written by benchmarks/seeds_table.py, do not edit by "
                   "hand -->\n| stale |\n<!-- /seeds-table -->\n\nAfter.\n")
    script("seeds_table.py", *args, "--doc", doc)
    text = doc.read_text()
    assert text.startswith("# Seeds\n\nBefore.\n\n") and text.endswith("<!-- /seeds-table -->\n\nAfter.\n")
    assert "| stale |" not in text and [line for line in text.splitlines() if line.startswith("|")] == rows


REPORTS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


@pytest.mark.skipif(not REPORTS.is_dir(), reason="the seed reports are not beside the repository")
def test_the_seed_reports_figures_are_on_the_lines_they_cite():
    sys.path.insert(0, str(BENCH))
    try:
        from results_table import SEED_REPORTS
    finally:
        sys.path.remove(str(BENCH))
    for key, (label, figures) in SEED_REPORTS.items():
        line = int(re.search(r"l\. (\d+)", label).group(1))
        text = next(REPORTS.glob(f"{key}_*.txt")).read_text().splitlines()[line - 1]
        found, want = re.findall(r"\d\.\d{3}", text), [f"{v:.3f}" for v in figures]
        assert any(found[i:i + 3] == want for i in range(len(found))), (key, text)  # SST, Quora, STS in a row


def test_ablations_doc_replaces_each_tables_block_and_keeps_the_prose(tmp_path):
    results = tmp_path / "results"
    for name, rows in (("000-a", ["| x | 0.5 |"]), ("003-b", ["| y | 0.6 |", "| z | 0.7 |"])):
        (results / name).mkdir(parents=True)
        (results / name / "ablation.md").write_text(f"# Table {name}\n\nCommand: `minbert ablate {name}`.\n\n"
                                                   "| variant | overall |\n|---|---|\n" + "\n".join(rows) + "\n")
    doc = tmp_path / "ABLATIONS.md"
    begin = "<!-- ablation 000-a: written by benchmarks/ablations_doc.py from results/ablations/000-a/, do not edit by hand -->"
    doc.write_text(f"# Ablations\n\n## A\n\n{begin}\n| stale |\n<!-- /ablation 000-a -->\n\nReading of A.\n")
    subprocess.run([sys.executable, str(BENCH / "ablations_doc.py"), "--results", str(results), "--doc", str(doc)],
                   check=True, capture_output=True)
    text = doc.read_text()
    assert "| stale |" not in text and "Reading of A." in text and text.startswith("# Ablations\n\n## A\n\n")
    a = text[text.index(begin):text.index("<!-- /ablation 000-a -->")]
    assert "Command: `minbert ablate 000-a`." in a and "| x | 0.5 |" in a and "Table 000-a" not in a
    assert text.index("Reading of A.") < text.index("## Table 003-b")  # a new table goes at the end, with its title
    assert "| y | 0.6 |\n| z | 0.7 |\n<!-- /ablation 003-b -->" in text


def test_ablations_sh_skips_a_published_table_and_trains_only_what_it_lacks(tmp_path):
    """benchmarks/ablations.sh in a fresh clone (published tables, no runs): nothing trained, no table rewritten;
    a table that lacks a run gets the ablate call of the pass that plans it. minbert is a stub that logs its calls."""
    repo = BENCH.parent
    names = ["001-gradient-surgery-mlm", "002-adapt-bert"]
    results = tmp_path / "results"
    for name in names:
        (results / name).mkdir(parents=True)
        for f in ("ablation.json", "ablation.md"):
            (results / name / f).write_bytes((repo / "results/ablations" / name / f).read_bytes())
    doc = tmp_path / "ABLATIONS.md"
    doc.write_text((repo / "docs/results/ablations.md").read_text())
    calls = tmp_path / "calls"
    stub = tmp_path / "minbert"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    stub.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "MINBERT": str(stub), "PYTHON": sys.executable, "ABL_RUNS": str(tmp_path / "runs"),
           "ABL_RESULTS": str(results), "ABL_DOC": str(doc)}
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} | {doc: doc.read_bytes()}

    done = subprocess.run(["bash", str(BENCH / "ablations.sh"), *names], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not calls.exists()  # neither the MLM encoders of table 001 nor any run
    assert {p: p.read_bytes() for p in before} == before

    table = json.loads((results / names[1] / "ablation.json").read_text())
    dropped = table["runs"].pop()  # the table's last run: the last row's second seed
    assert dropped["seed"] == table["seeds"][1]
    (results / names[1] / "ablation.json").write_text(json.dumps(table))
    done = subprocess.run(["bash", str(BENCH / "ablations.sh"), names[1]], env=env, capture_output=True, text=True)
    assert done.returncode != 0  # the stub's failure is reported
    # the first pass (first seed) is complete; the second lacks a run, so only its ablate call is made
    assert calls.read_text() == (f"ablate configs/ablations/{names[1]}.yaml --out {tmp_path / 'runs'}/{names[1]} "
                                 "--budget --set train.threads=1\n")
    assert (results / names[1] / "ablation.md").read_bytes() == before[results / names[1] / "ablation.md"]


def fake_recipe_stub(tmp_path: Path, seeds: dict[int, dict], splits: tuple[str, ...]) -> Path:
    """A stand-in for minbert: logs its call and leaves, as `minbert recipe` would, a finished `finish` run per
    seed (its scores, config, metrics, log and the prediction files of `splits`) and the recipe's own table."""
    runs = tmp_path / "runs"
    for seed, scores in seeds.items():
        run = fake_run(runs / f"finish-{seed}", scores, [(300.0, 60.0)])
        (run / "config.yaml").write_text(f"tasks: [sst, para, sts]\ntrain:\n  seed: {seed}\n")
        (run / "log.txt").write_text(f"log of {seed}\n")
        (run / "predictions").mkdir()
        for task in ("sst", "para", "sts"):
            for split in splits:
                (run / "predictions" / f"{task}-{split}-output.csv").write_text(f"id,{task} {split} {seed}\n")
    (runs / "finish-1").mkdir()  # a folder the recipe did not write: not shipped
    (runs / "recipe.md").write_text("recipe.md")
    (runs / "recipe.json").write_text(json.dumps([{"run": "teacher-sst", "metrics": {}}, *(
        {"run": f"finish-{seed}", "metrics": scores} for seed, scores in seeds.items())]))
    stub = tmp_path / "minbert"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')
    stub.chmod(0o755)
    return stub


def test_best_model_sh_ships_each_seeds_dev_and_test_files_and_their_table(tmp_path):
    seeds = {11711: {"sst": 0.49, "para": 0.86, "sts": 0.881, "overall": 0.764},
             11712: {"sst": 0.48, "para": 0.859, "sts": 0.884, "overall": 0.761}}
    stub = fake_recipe_stub(tmp_path, seeds, ("dev", "test"))
    results = tmp_path / "results"
    env = {"PATH": "/usr/bin:/bin", "MINBERT": str(stub), "PYTHON": sys.executable, "BEST_RUNS": str(tmp_path / "runs"),
           "BEST_RESULTS": str(results), "BEST_LABEL": "shipped"}
    done = subprocess.run(["bash", str(BENCH / "best_model.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls").read_text() == (
        f"recipe configs/recipes/bam-private-finish.yaml --out {tmp_path / 'runs'} --lanes 2 "
        "--set train.threads=1 --set eval.test_predictions=true\n")
    for seed in seeds:
        run, shipped = tmp_path / "runs" / f"finish-{seed}", results / f"finish-{seed}"
        assert sorted(p.name for p in (shipped / "predictions").iterdir()) == sorted(
            f"{t}-{s}-output.csv" for t in ("sst", "para", "sts") for s in ("dev", "test"))
        for f in ("predictions/sst-test-output.csv", "predictions/sts-dev-output.csv", "best_metrics.json",
                  "config.yaml", "metrics.jsonl"):
            assert (shipped / f).read_bytes() == (run / f).read_bytes()
        assert (shipped / "train.log").read_bytes() == (run / "log.txt").read_bytes()
    rows = [line for line in (results / "RESULTS.md").read_text().splitlines() if line.startswith("|")]
    cells = [c.strip() for c in rows[2].split("|")[1:-1]]
    assert cells[0] == "shipped, 2 seeds (mean ± std)"
    for task, cell in zip(("sst", "para", "sts", "overall"), cells[1:5]):
        values = np.array([s[task] for s in seeds.values()])
        assert cell == f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
    assert (results / "recipe.md").read_text() == "recipe.md"
    assert sorted(p.name for p in results.iterdir()) == ["RESULTS.md", *(f"finish-{s}" for s in seeds), "recipe.json",
                                                         "recipe.md"]


def test_best_model_sh_refuses_runs_without_test_predictions_and_keeps_what_was_shipped(tmp_path):
    stub = fake_recipe_stub(tmp_path, {11711: {"sst": 0.49, "para": 0.86, "sts": 0.88, "overall": 0.76}}, ("dev",))
    results = tmp_path / "results"
    (results / "finish-11711").mkdir(parents=True)
    (results / "finish-11711" / "best_metrics.json").write_text("earlier")
    env = {"PATH": "/usr/bin:/bin", "MINBERT": str(stub), "PYTHON": sys.executable, "BEST_RUNS": str(tmp_path / "runs"),
           "BEST_RESULTS": str(results)}
    done = subprocess.run(["bash", str(BENCH / "best_model.sh")], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "finish-11711 has no test prediction files (sst-test-output.csv, para-test-output.csv, sts-test-output.csv)" in done.stderr
    assert [p.name for p in results.rglob("*")] == ["finish-11711", "best_metrics.json"]
    assert (results / "finish-11711" / "best_metrics.json").read_text() == "earlier"


def test_ship_runs_refuses_a_run_lacking_a_tasks_files(tmp_path):
    run = fake_run(tmp_path / "runs" / "finish-1", {"sst": 0.5}, [(1.0, 1.0)])
    (run / "config.yaml").write_text("tasks: [sst, para]\n")
    (run / "log.txt").write_text("log")
    (run / "predictions").mkdir()
    for split in ("dev", "test"):
        (run / "predictions" / f"sst-{split}-output.csv").write_text("id,x\n")
    done = subprocess.run([sys.executable, str(BENCH / "ship_runs.py"), str(tmp_path / "out"), str(run)],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "has no dev prediction files (para-dev-output.csv)" in done.stderr
    assert not (tmp_path / "out").exists()


MTL_FILE = BENCH.parent / "configs/ablations/mtl-methods.yaml"


def mtl_quarter_stub(tmp_path: Path, overall: dict[str, float], budget: bool = True) -> tuple[Path, Path]:
    """What `minbert ablate FILE --budget` leaves: two finished runs of the quarter table (one without cosines), a
    stopped one, and a table with a row for each variant of `overall` over the file's seeds; and a stub minbert."""
    runs = tmp_path / "runs"
    kept = ("metrics.jsonl", "config.yaml", "best_metrics.json", "ablation_result.json")
    for row, seed, files in (("sum", 1, (*kept, "grad_cosine.jsonl")), ("famo", 1, kept), ("famo", 2, ("metrics.jsonl",))):
        run = runs / row / f"seed-{seed}"
        run.mkdir(parents=True)
        for name in (*files, "log.txt"):
            (run / name).write_text(f"{row} {seed} {name}")
    seeds = yaml.safe_load(MTL_FILE.read_text())["seeds"]
    (runs / "ablation.md").write_text("# Methods\n\n| variant | overall |\n|---|---|\n| sum | 0.7 |\n")
    (runs / "ablation.json").write_text(json.dumps({"budget": budget, "rows": [
        {"variant": v, "seeds": seeds, "metrics": {"overall": {"mean": m}}} for v, m in overall.items()]}))
    stub = tmp_path / "minbert"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')
    stub.chmod(0o755)
    return runs, stub


def test_mtl_methods_sh_publishes_the_quarter_table_then_its_best_three_at_full_budget(tmp_path):
    variants = list(yaml.safe_load(MTL_FILE.read_text())["variants"])
    overall = {v: 0.70 for v in variants} | {"weighted (best-cpu)": 0.74, "famo": 0.73, "mgda": 0.72, "nash-mtl": 0.735}
    runs, stub = mtl_quarter_stub(tmp_path, overall)
    results, doc = tmp_path / "results", tmp_path / "mtl.md"
    kept = ("metrics.jsonl", "config.yaml", "best_metrics.json", "ablation_result.json")
    full = tmp_path / "runs-full"
    for row in ("nash-mtl", "famo", "mgda"):
        run = full / row / "seed-1"
        (run / "predictions").mkdir(parents=True)
        for name in (*kept, "grad_cosine.jsonl", "log.txt", "predictions/sst-dev-output.csv",
                     "predictions/sst-test-output.csv"):
            (run / name).write_text(f"full {row} {name}")
        (run / "config.yaml").write_text("tasks: [sst]\n")
    (full / "ablation.md").write_text("# Methods\n\n| variant | overall |\n|---|---|\n| nash-mtl | 0.76 |\n")
    (full / "ablation.json").write_text("{}")
    marker = "<!-- ablation {0}: written by benchmarks/ablations_doc.py from results/mtl-methods/{0}/, do not edit by hand -->"
    doc.write_text(f"# Methods\n\nBefore.\n\n{marker.format('quarter')}\n| stale |\n<!-- /ablation quarter -->\n\n"
                   f"Between.\n\n{marker.format('full')}\n<!-- /ablation full -->\n\nAfter.\n")
    env = {"PATH": "/usr/bin:/bin", "MINBERT": str(stub), "PYTHON": sys.executable, "MTL_RUNS": str(runs),
           "MTL_RESULTS": str(results), "MTL_DOC": str(doc)}
    done = subprocess.run(["bash", str(BENCH / "mtl_methods.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"ablate configs/ablations/mtl-methods.yaml --out {runs} --budget --lanes 2 --set train.threads=1",
        # the best three by mean overall, best-cpu's own row left out though it is the best
        f"ablate configs/ablations/mtl-methods.yaml --out {full} --only nash-mtl famo mgda --lanes 2 --set train.threads=1"]
    quarter = results / "quarter"
    assert sorted(str(p.relative_to(quarter)) for p in quarter.rglob("*") if p.is_file()) == sorted(
        ["ablation.md", "ablation.json", *(f"sum/seed-1/{f}" for f in (*kept, "grad_cosine.jsonl")),
         *(f"famo/seed-1/{f}" for f in kept)])
    assert (quarter / "sum/seed-1/grad_cosine.jsonl").read_text() == "sum 1 grad_cosine.jsonl"
    shipped = results / "full" / "nash-mtl" / "seed-1"
    assert sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*") if p.is_file()) == sorted(
        [*kept, "grad_cosine.jsonl", "train.log", "predictions/sst-dev-output.csv", "predictions/sst-test-output.csv"])
    assert (shipped / "predictions/sst-test-output.csv").read_text() == "full nash-mtl predictions/sst-test-output.csv"
    assert doc.read_text() == (
        f"# Methods\n\nBefore.\n\n{marker.format('quarter')}\n| variant | overall |\n|---|---|\n| sum | 0.7 |\n"
        f"<!-- /ablation quarter -->\n\nBetween.\n\n{marker.format('full')}\n| variant | overall |\n|---|---|\n"
        "| nash-mtl | 0.76 |\n<!-- /ablation full -->\n\nAfter.\n")


@pytest.mark.parametrize("budget, drop", [(True, "graddrop"), (False, None)])
def test_mtl_methods_sh_chooses_no_full_rows_from_an_incomplete_quarter_table(tmp_path, budget, drop):
    overall = {v: 0.7 for v in yaml.safe_load(MTL_FILE.read_text())["variants"] if v != drop}
    runs, stub = mtl_quarter_stub(tmp_path, overall, budget)
    results = tmp_path / "results"
    (results / "quarter").mkdir(parents=True)
    (results / "quarter" / "ablation.json").write_text((runs / "ablation.json").read_text())
    env = {"PATH": "/usr/bin:/bin", "MINBERT": str(stub), "PYTHON": sys.executable, "MTL_RUNS": str(runs),
           "MTL_RESULTS": str(results), "MTL_DOC": str(tmp_path / "mtl.md")}
    done = subprocess.run(["bash", str(BENCH / "mtl_methods.sh"), "full"], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "is not complete at --budget" in done.stderr
    assert ("rows lacking seeds: graddrop" in done.stderr) == bool(drop)
    assert not (tmp_path / "calls").exists()  # no full-size run started


def test_the_methods_file_runs_a_quarter_budget_with_budget_and_best_cpus_own_without():
    """configs/ablations/mtl-methods.yaml through ablate's own planning: at --budget the committed quarter runs'
    configs exactly (so they are reused), without it best-cpu's full recipe with test prediction files."""
    from minbert.config import load
    from minbert.schema import Config
    from minbert.tools.ablate import done_before, plan, run_name
    quarter = BENCH.parent / "results/mtl-methods/quarter"
    _, runs = plan(MTL_FILE, True, None, None, ["train.threads=1"])
    committed = [(name, seed, cfg) for name, seed, cfg in runs
                 if (quarter / run_name(name, seed) / "ablation_result.json").exists()]
    assert len(committed) >= 20
    for name, seed, cfg in committed:
        assert done_before(quarter / run_name(name, seed) / "ablation_result.json", cfg.to_dict(), print) is not None
    best_cpu = load(Config, BENCH.parent / "configs/best-cpu.yaml")
    _, full = plan(MTL_FILE, False, None, ["mgda"], [])
    assert [(name, seed) for name, seed, _ in full] == [("mgda", 11711), ("mgda", 11712)]
    assert full[0][2].train.schedule.subset_size == best_cpu.train.schedule.subset_size
    assert full[0][2].eval.test_predictions is True
