"""Copy finished runs into results/: each run's prediction files, best_metrics.json, config.yaml, metrics.jsonl and
its log (as train.log), into RESULTS/RUN_NAME/. Every run is checked first: one without a dev and a test-student
prediction file for each task of its config stops the copy before anything in RESULTS is replaced.

Usage: python benchmarks/ship_runs.py RESULTS RUN_DIR...   (prints the folders it wrote, one a line)
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

KEPT = ("best_metrics.json", "config.yaml", "metrics.jsonl")


def problem(run: Path) -> str | None:
    """Why `run` cannot be shipped, or None."""
    missing = [f for f in (*KEPT, "log.txt") if not (run / f).is_file()]
    if missing:
        return f"{run} is not a finished run (no {', '.join(missing)})"
    tasks = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("tasks") or []
    for split in ("dev", "test"):
        lacking = [f"{t}-{split}-output.csv" for t in tasks if not (run / "predictions" / f"{t}-{split}-output.csv").is_file()]
        if lacking or not tasks:
            return f"{run} has no {split} prediction files ({', '.join(lacking) or 'no tasks in its config'})"
    return None


def ship(run: Path, results: Path) -> Path:
    dest = results / run.name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(run / "predictions", dest / "predictions")
    for name in KEPT:
        shutil.copy2(run / name, dest / name)
    shutil.copy2(run / "log.txt", dest / "train.log")
    return dest


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    results, runs = Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]]
    problems = [p for p in map(problem, runs) if p]
    if problems:
        sys.exit("ship_runs.py: " + "; ".join(problems))
    for run in runs:
        print(ship(run, results))


if __name__ == "__main__":
    main()
