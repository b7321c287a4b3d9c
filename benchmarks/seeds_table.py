"""docs/results/seeds.md's table: the seed reports' best systems (configs/seeds/) as minbert trained them on this CPU,
each beside the report's own figures, with the default and best-cpu runs as reference rows.

Usage: python benchmarks/seeds_table.py [--results results/seeds] [--configs configs/seeds]
       [--default results/default] [--best-cpu results/best-cpu-config] [--step-times results/seeds/step_times.json]
       [--doc docs/results/seeds.md]

A system NAME (configs/seeds/NAME.yaml) has the runs results/seeds/NAME/ (seed 11711) and
results/seeds/NAME/seed-*/ (more seeds); one without them is marked "not run", with no figures. From the runs'
own files: dev figures from best_metrics.json (or metrics.jsonl's best epoch, as training picks it); training
minutes = the sum of metrics.jsonl's train_seconds (the training loop; dev evaluation and prediction files
excluded). Step time vs default: the ratio benchmarks/seeds_step_times.py measured for the config's name (the
systems taking turns in one process, so under the same load), "–" where it has none.
The reports' figures are results_table.SEED_REPORTS (their lines cited). With --doc the table replaces the
block between the markers below in that file (created if missing); without, it is printed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from minbert.tasks import overall_score
from results_table import SEED_REPORTS, TASKS, best, fmt, write_block

BEGIN = "<!-- seeds-table: written by benchmarks/seeds_table.py, do not edit by hand -->"
END = "<!-- /seeds-table -->"
NOTE = ("minbert's figures: the best dev epoch of each run (mean ± std over seeds where there are several); "
        "training minutes: the training loop's seconds from metrics.jsonl (dev evaluation and prediction files "
        "excluded; the runs shared the machine with other work, so minutes compare loosely); step time: seconds per "
        "schedule step relative to the default's, measured with the systems taking turns in one process "
        "(`benchmarks/seeds_step_times.py`, results/seeds/step_times.json; – where not measured). The reports' overall is the course's "
        "(sst + para + (sts + 1) / 2) / 3 of their three figures; 001, 003 and 004 printed a plain mean instead.")
HEADER = ("| system | report's best row (bert-base) | report SST / Quora / STS / overall | SST acc | Quora acc "
          "| STS r | overall | seeds | training (min) | step time vs default |")


def epochs(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def train_minutes(run: Path) -> float:
    return sum(r.get("train_seconds", 0.0) for r in epochs(run)) / 60


def system_runs(folder: Path) -> list[Path]:
    """A system's runs: its folder (seed 11711) and its seed-*/ folders, those with a metrics.jsonl."""
    found = [folder, *sorted(folder.glob("seed-*"))]
    return [r for r in found if (r / "metrics.jsonl").is_file()]


def step_ratios(path: Path) -> dict[str, float]:
    """Config name -> step time relative to the base, from benchmarks/seeds_step_times.py's JSON ({} if absent)."""
    if not path.is_file():
        return {}
    return {name: s["ratio"] for name, s in json.loads(path.read_text())["systems"].items()}


def minbert_cells(runs: list[Path], ratio: float | None) -> str:
    scores = [best(r) for r in runs]
    return (" | ".join(fmt([s[t] for s in scores]) for t in TASKS) + f" | {len(runs)} | "
            + fmt([train_minutes(r) for r in runs], 0) + f" | {'–' if ratio is None else f'{ratio:.2f}×'} |")


def report_cells(name: str) -> str:
    label, figures = SEED_REPORTS[name[:3]]
    overall = overall_score(dict(zip(TASKS, figures)))
    return f"{label} | " + " / ".join(f"{v:.3f}" for v in (*figures, overall))


def table(results: Path, configs: Path, default: Path, best_cpu: Path, step_times: Path) -> list[str]:
    ratios = step_ratios(step_times)
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for config in sorted(configs.glob("*.yaml")):
        name = config.stem
        runs = system_runs(results / name)
        cells = minbert_cells(runs, ratios.get(name)) if runs else "not run | | | | | | |"
        lines.append(f"| `{name}` | {report_cells(name)} | {cells}")
    refs = [("default", "default (`configs/default.yaml`)", default),
            ("best-cpu", "best-cpu (`configs/best-cpu.yaml`, seed 11711)", best_cpu)]
    for name, label, run in refs:
        if (run / "metrics.jsonl").is_file():
            lines.append(f"| {label}, `{run}` | | | {minbert_cells([run], ratios.get(name))}")
    return lines + ["", NOTE]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results/seeds"))
    ap.add_argument("--configs", type=Path, default=Path("configs/seeds"))
    ap.add_argument("--default", type=Path, default=Path("results/default"))
    ap.add_argument("--best-cpu", type=Path, default=Path("results/best-cpu-config"))
    ap.add_argument("--step-times", type=Path, default=Path("results/seeds/step_times.json"),
                    help="benchmarks/seeds_step_times.py's result")
    ap.add_argument("--doc", type=Path, help="write the table into this Markdown file instead of printing it")
    args = ap.parse_args()
    lines = table(args.results, args.configs, args.default, args.best_cpu, args.step_times)
    if args.doc:
        write_block(args.doc, lines, BEGIN, END, "# The seed reports' systems on this CPU")
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
