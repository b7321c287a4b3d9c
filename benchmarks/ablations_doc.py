"""docs/results/ablations.md's tables: each results/ablations/NAME/ablation.md (as `minbert ablate` wrote it)
put between that table's markers in the doc, so the prose around them (headings, readings) stays as written.

Usage: python benchmarks/ablations_doc.py [--results results/ablations] [--doc docs/results/ablations.md]
       [--source results/ablations] [NAME ...]
NAME defaults to every folder under --results that holds an ablation.md. A table without markers in the doc yet
is added at its end, under a heading of its title.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from results_table import write_block


def markers(name: str, source: str = "results/ablations") -> tuple[str, str]:
    return (f"<!-- ablation {name}: written by benchmarks/ablations_doc.py from {source}/{name}/, "
            "do not edit by hand -->", f"<!-- /ablation {name} -->")


def table_lines(ablation_md: Path) -> tuple[str, list[str]]:
    """(title, the lines after it) of an ablation.md."""
    lines = ablation_md.read_text().splitlines()
    title = lines[0].lstrip("# ").strip() if lines and lines[0].startswith("# ") else ablation_md.parent.name
    body = lines[1:] if lines and lines[0].startswith("# ") else lines
    while body and not body[0].strip():
        body = body[1:]
    return title, body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--results", type=Path, default=Path("results/ablations"))
    ap.add_argument("--doc", type=Path, default=Path("docs/results/ablations.md"))
    ap.add_argument("--source", default="results/ablations",
                    help="the results folder as the doc's markers name it (results/mtl-methods for its doc)")
    args = ap.parse_args()
    names = args.names or sorted(p.parent.name for p in args.results.glob("*/ablation.md"))
    for name in names:
        title, body = table_lines(args.results / name / "ablation.md")
        begin, end = markers(name, args.source)
        text = args.doc.read_text() if args.doc.exists() else ""
        if begin not in text:  # a new table: its own heading before the block
            args.doc.parent.mkdir(parents=True, exist_ok=True)
            args.doc.write_text((text.rstrip() + "\n\n" if text else "# Ablation tables\n\n") + f"## {title}\n")
        write_block(args.doc, body, begin, end, "# Ablation tables")
        print(f"{args.doc}: table {name} ({sum(1 for line in body if line.startswith('| ') and not line.startswith('| variant'))} rows)")


if __name__ == "__main__":
    main()
