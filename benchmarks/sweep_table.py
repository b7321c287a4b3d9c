"""A markdown table of a recipe sweep (benchmarks/recipe_sweep_gpu.sh): each variant's best dev epoch, read
from its training log, with the overrides that define it, read from the sweep script; best overall first.

Usage: python benchmarks/sweep_table.py SWEEP_DIR... > table.md
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("recipe_sweep_gpu.sh")
DONE = re.compile(r"^training done in (\d+) s; best dev \(epoch (\d+)\): (.*)$", re.M)


def variants() -> dict[str, str]:
    """name -> its arguments, with the shell variables of the script spelled out."""
    text = SCRIPT.read_text()
    names = dict(re.findall(r"^(\w+)='(.*)'$", text, re.M))
    names.update(re.findall(r'^(\w+)="(.*)"$', text, re.M))
    out = {}
    for name, args in re.findall(r"^\s+([\w.+-]+)\) echo \"(.*)\" ;;$", text, re.M):
        out[name] = re.sub(r"\$(\w+)", lambda m: names.get(m.group(1), m.group(0)), args)
    return out


def main() -> None:
    defs = variants()
    rows = []
    for folder in map(Path, sys.argv[1:]):
        for log in sorted(folder.glob("*.log")):
            m = DONE.search(log.read_text())
            if not m:
                continue
            scores = dict(kv.split(" ") for kv in m.group(3).split(", "))
            rows.append((float(scores.get("overall", "-inf")), log.stem, m.group(2), scores))  # single-task: last
    print("| variant | SST | Quora | STS | overall | best epoch | arguments of `minbert train` |")
    print("|---|---|---|---|---|---|---|")
    for overall, name, epoch, s in sorted(rows, key=lambda r: -r[0]):
        args = defs.get(name, "?").replace("|", "\\|")
        print(f"| {name} | {s.get('sst', '–')} | {s.get('para', '–')} | {s.get('sts', '–')} | {s.get('overall', '–')} "
              f"| {epoch} | `{args}` |")


if __name__ == "__main__":
    main()
