"""docs/results/seeds.md's table: the seed reports' best systems (configs/seeds/) as minbert trained them on this CPU,
each beside the report's own figures, with the default and best-cpu runs as reference rows.

Usage: python benchmarks/seeds_table.py [--results results/seeds] [--configs configs/seeds]
       [--default results/default] [--best-cpu results/best-cpu] [--base RUN_DIR] [--doc docs/results/seeds.md]

A system NAME (configs/seeds/NAME.yaml) has the runs results/seeds/NAME/ (seed 11711) and
results/seeds/NAME/seed-*/ (more seeds); one without them is marked "not run", with no figures. From the runs'
own files: dev figures from best_metrics.json (or metrics.jsonl's best epoch, as training picks it); training
minutes = the sum of metrics.jsonl's train_seconds (the training loop; dev evaluation and prediction files
excluded); step time = training seconds per schedule step (metrics.jsonl's `steps`), pooled over a system's
runs, divided by the same for the base run (--base, else the default run); "–" where a run recorded no steps.
The reports' figures are results_table.SEED_REPORTS (their lines cited). With --doc the table replaces the
block between the markers below in that file (created if missing); without, it is printed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from minbert.tasks import overall_score
from results_table import SEED_REPORTS, TASKS, best, fmt

BEGIN = "<!-- seeds-table: written by benchmarks/seeds_table.py, do not edit by hand -->"
END = "<!-- /seeds-table -->"
NOTE = ("minbert's figures: the best dev epoch of each run (mean ± std over seeds where there are several); "
        "training minutes: the training loop's seconds from metrics.jsonl (dev evaluation and prediction files "
        "excluded); step time: training seconds per schedule step, over all of a system's runs, divided by the "
        "base run's (– where a run's metrics.jsonl has no step counts). The reports' overall is the course's "
        "(sst + para + (sts + 1) / 2) / 3 of their three figures; 001, 003 and 004 printed a plain mean instead.")
HEADER = ("| system | report's best row (bert-base) | report SST / Quora / STS / overall | SST acc | Quora acc "
          "| STS r | overall | seeds | training (min) | step time vs default |")


def epochs(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def train_minutes(run: Path) -> float:
    return sum(r.get("train_seconds", 0.0) for r in epochs(run)) / 60


def seconds_per_step(runs: list[Path]) -> float | None:
    """Training seconds per schedule step over all the runs' epochs; None if an epoch recorded no steps."""
    rows = [r for run in runs for r in epochs(run)]
    if not rows or any("steps" not in r for r in rows):
        return None
    return sum(r["train_seconds"] for r in rows) / sum(r["steps"] for r in rows)


def system_runs(folder: Path) -> list[Path]:
    """A system's runs: its folder (seed 11711) and its seed-*/ folders, those with a metrics.jsonl."""
    found = [folder, *sorted(folder.glob("seed-*"))]
    return [r for r in found if (r / "metrics.jsonl").is_file()]


def minbert_cells(runs: list[Path], base: float | None) -> str:
    scores = [best(r) for r in runs]
    step = seconds_per_step(runs)
    ratio = f"{step / base:.2f}×" if step is not None and base else "–"
    return (" | ".join(fmt([s[t] for s in scores]) for t in TASKS) + f" | {len(runs)} | "
            + fmt([train_minutes(r) for r in runs], 0) + f" | {ratio} |")


def report_cells(name: str) -> str:
    label, figures = SEED_REPORTS[name[:3]]
    overall = overall_score(dict(zip(TASKS, figures)))
    return f"{label} | " + " / ".join(f"{v:.3f}" for v in (*figures, overall))


def table(results: Path, configs: Path, default: Path, best_cpu: Path, base_run: Path | None) -> list[str]:
    base_run = base_run or default
    base = seconds_per_step([base_run]) if (base_run / "metrics.jsonl").is_file() else None
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for config in sorted(configs.glob("*.yaml")):
        name = config.stem
        runs = system_runs(results / name)
        cells = minbert_cells(runs, base) if runs else "not run | | | | | | |"
        lines.append(f"| `{name}` | {report_cells(name)} | {cells}")
    refs = [("default (`configs/default.yaml`)", default), ("best-cpu (`configs/best-cpu.yaml`, seed 11711)", best_cpu)]
    if base_run != default:
        refs.append(("default, trained beside the systems (the step-time base)", base_run))
    for label, run in refs:
        if (run / "metrics.jsonl").is_file():
            lines.append(f"| {label}, `{run}` | | | {minbert_cells([run], base)}")
    return lines + ["", NOTE]


def write_block(doc: Path, lines: list[str]) -> None:
    """Put the table between the markers of `doc`, keeping the rest; a new file gets a title and the block."""
    block = "\n".join([BEGIN, *lines, END])
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        text = head + block + rest.partition(END)[2]
    else:
        text = (text.rstrip() + "\n\n" if text else "# The seed reports' systems on this CPU\n\n") + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results/seeds"))
    ap.add_argument("--configs", type=Path, default=Path("configs/seeds"))
    ap.add_argument("--default", type=Path, default=Path("results/default"))
    ap.add_argument("--best-cpu", type=Path, default=Path("results/best-cpu"))
    ap.add_argument("--base", type=Path, help="the run whose seconds per step are 1.00× (default: --default)")
    ap.add_argument("--doc", type=Path, help="write the table into this Markdown file instead of printing it")
    args = ap.parse_args()
    lines = table(args.results, args.configs, args.default, args.best_cpu, args.base)
    if args.doc:
        write_block(args.doc, lines)
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
