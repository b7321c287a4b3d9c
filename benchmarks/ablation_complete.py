"""Whether a copied ablation table already holds every run that `minbert ablate FILE --budget` would train.

benchmarks/ablations.sh asks this before each table, so that rerunning it in a fresh clone, whose
results/ablations/ holds the published tables but whose runs/ does not, skips what is done instead of
training it again and overwriting the published table with a partial one as runs finish.
A table counts as complete when its ablation.json was made at the budget, with the same `--set` overrides,
has a run for every (variant, seed) the file plans now (its first N seeds under --seeds N), and each
variant's settings are the ones the file gives now. It cannot see changes to the base config or to
minbert itself: to retrain a table, move its results folder away (or point ABL_RESULTS elsewhere).

Usage: python benchmarks/ablation_complete.py FILE RESULTS_DIR [--seeds N] [--set KEY=VALUE ...]
Exit 0: complete (the reason on stdout); 1: not (the reason on stdout); 2: FILE cannot be read.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from minbert.config import ConfigError
from minbert.tools.ablate import plan


def missing(file: Path, table_json: Path, n_seeds: int | None, extra: list[str]) -> str | None:
    """Why the table is not complete, or None when it is."""
    meta, runs = plan(file, True, n_seeds, None, extra)
    try:
        table = json.loads(table_json.read_text())
    except (OSError, ValueError) as e:
        return f"no table to reuse ({table_json}: {e.__class__.__name__})"
    if table.get("budget") is not True:
        return "the table was not made at the budget"
    if table.get("extra") != extra:
        return f"the table was made with --set {table.get('extra')}, not {extra}"
    done = {(r.get("variant"), r.get("seed")) for r in table.get("runs", [])}
    for name, seed, _ in runs:
        if (name, seed) not in done:
            return f"{name!r} seed {seed} is not in it"
    rows = {r.get("variant"): r for r in table.get("rows", [])}
    for name, delta in meta["deltas"].items():
        if json.loads(json.dumps(delta)) != rows.get(name, {}).get("delta"):
            return f"{name!r} has other settings in {file} now"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("results", type=Path, help="the table's folder, with its ablation.json")
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--set", action="append", default=[], dest="extra")
    args = ap.parse_args()
    try:
        why = missing(args.file, args.results / "ablation.json", args.seeds, args.extra)
    except ConfigError as e:
        print(f"ablation_complete: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"{args.results}: " + (f"complete for {args.file}" if why is None else f"to train: {why}"))
    sys.exit(0 if why is None else 1)


if __name__ == "__main__":
    main()
