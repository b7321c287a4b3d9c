"""The README results table: dev scores of several seeds of one recipe (mean ± std), their ensemble, the
frozen-encoder baseline, next to the bar of issue 7 and the seed reports' best dev figures.

Usage: python benchmarks/results_table.py RUN_DIR... [--label NAME] [--ensemble DIR|FILE]... [--frozen RUN_DIR]
       [--other LABEL=RUN_DIR,RUN_DIR...]... > RESULTS.md
Every minbert figure is read from the runs' own files (best_metrics.json, metrics.jsonl,
ensemble_metrics.json); the other rows are published figures, cited.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from minbert.tasks import overall_score
from minbert.evaluate import selection_score

TASKS = ("sst", "para", "sts", "overall")

# ../shared/seeds/, each report's best multi-task row (SST acc, Quora acc, STS r), bert-base-sized encoders, as
# printed at the line given; the one place these figures are kept (benchmarks/seeds_table.py reads them too).
SEED_REPORTS = {
    "000": ("miniBert Unleashed, Table 2 last row (l. 162)", (0.520, 0.848, 0.870)),
    "001": ("gradient surgery row (l. 154; split not labelled)", (0.669, 0.487, 0.380)),
    "002": ("Adapt BERT, full fine-tuning + SMART (Table 5, l. 186)", (0.528, 0.862, 0.841)),
    "003": ("RRO + HP + CS (Table 1, l. 224; split not labelled)", (0.497, 0.864, 0.387)),
    "004": ("modified cos-sim + hyper-parameters (dev table, l. 185)", (0.493, 0.776, 0.692)),
}

# Published dev figures; the seed reports' overall is the course's, computed from their three figures (001, 003
# and 004 printed a plain mean of the three instead).
REFERENCES = [
    ("bar of issue 7: three single-task all-MiniLM-L6-v2 models, plain transformers loop", (0.482, 0.850, 0.860, 0.754)),
    ("target of issue 7", (0.52, 0.88, 0.88, 0.786)),
    *((f"seed {key} {label}", (*figures, overall_score(dict(zip(TASKS, figures)))))
      for key, (label, figures) in SEED_REPORTS.items()),
]


def write_block(doc: Path, lines: list[str], begin: str, end: str, title: str) -> None:
    """Put `lines` between the markers `begin` and `end` of `doc`, keeping the rest; without the markers the
    block goes at the end (a new file starts with `title`)."""
    block = "\n".join([begin, *lines, end])
    text = doc.read_text() if doc.exists() else ""
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        text = head + block + rest.partition(end)[2]
    else:
        text = (text.rstrip() + "\n\n" if text else title + "\n\n") + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def run_wall_seconds(run_dir: Path) -> float:
    """Training plus evaluation seconds over the run's epochs, as the run recorded them."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in rows)


def best(run_dir: Path) -> dict[str, float]:
    """The run's best dev figures: best_metrics.json, or, for a run kept as its metrics.jsonl alone (results/history/),
    the first epoch with the top selection score, as training picks it (max keeps the first of equals)."""
    if (run_dir / "best_metrics.json").exists():
        return json.loads((run_dir / "best_metrics.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    top = max(rows, key=lambda r: selection_score(r["dev"], [t for t in TASKS if t != "overall"]))
    return {**top["dev"], "epoch": top["epoch"]}


def ensemble_metrics(path: Path) -> dict:
    """An ensemble's ensemble_metrics.json, given as the file or as the ensemble's output folder."""
    return json.loads((path if path.is_file() else path / "ensemble_metrics.json").read_text())


def member_name(run_dir: Path) -> str:
    """A run's folder name, with the folders between runs/ and it (runs/old/seed-1 -> old/seed-1)."""
    parts = run_dir.parts
    return "/".join(parts[parts.index("runs") + 1:]) if "runs" in parts[:-1] else run_dir.name


def fmt(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seeds_row(label: str, runs: list[Path]) -> str:
    """One recipe's seeds as a row: mean ± sample std of each task and of the wall minutes."""
    scores = [best(r) for r in runs]
    return (f"| {label}, {len(runs)} seeds (mean ± std) | " + " | ".join(fmt([s[t] for s in scores]) for t in TASKS)
            + f" | {fmt([run_wall_seconds(r) / 60 for r in runs], 0)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--label", default="minbert best-cpu", help="the runs' recipe, as the first row names it")
    ap.add_argument("--ensemble", type=Path, action="append", default=[],
                    help="an ensemble's output folder or its metrics file (repeatable)")
    ap.add_argument("--frozen", type=Path)
    ap.add_argument("--other", action="append", default=[], metavar="LABEL=RUN_DIR,RUN_DIR...",
                    help="another recipe's seeds as one mean ± std row (repeatable)")
    args = ap.parse_args()

    print("| model | SST acc | Quora acc | STS r | overall | wall (min) |")
    print("|---|---|---|---|---|---|")
    print(seeds_row(args.label, args.runs))
    for run in args.runs:
        s = best(run)
        print(f"| &nbsp;&nbsp;{run.name} (epoch {s.get('epoch', '?')}) | "
              + " | ".join(f"{s[t]:.3f}" for t in TASKS) + f" | {run_wall_seconds(run) / 60:.0f} |")
    for other in args.other:
        label, _, dirs = other.partition("=")
        print(seeds_row(label, [Path(d) for d in dirs.split(",")]))
    for folder in args.ensemble:
        made = ensemble_metrics(folder)
        members = ", ".join(member_name(Path(m)) for m in made["members"])
        print(f"| minbert ensemble (averaged probabilities / scores) of {members} | "
              + " | ".join(f"{made['dev'][t]:.3f}" for t in TASKS) + " | |")
    if args.frozen:
        s = best(args.frozen)
        print("| same recipe, encoder frozen (heads only) | " + " | ".join(f"{s[t]:.3f}" for t in TASKS)
              + f" | {run_wall_seconds(args.frozen) / 60:.0f} |")
    for label, values in REFERENCES:
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + " | |")


if __name__ == "__main__":
    main()
