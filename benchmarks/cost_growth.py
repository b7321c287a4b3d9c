"""Cost growth of minbert's encoder (forward+backward, training mode) with sequence length and batch size:
median seconds per step over a grid, written as JSON and a two-panel plot (tokens/s against length for
each batch size, and against batch size for each length).

Usage: python benchmarks/cost_growth.py [--lengths 16 32 64 128] [--batches 8 16 32 64] [--reps 3]
           [--threads 1] [--out docs/assets/cost-growth]   # writes OUT.json and OUT.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
import torch

from minbert.tools.bench import take_turns
from minbert.encoder import BertModel

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", nargs="+", type=int, default=[16, 32, 64, 128])
    ap.add_argument("--batches", nargs="+", type=int, default=[8, 16, 32, 64])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="docs/assets/cost-growth")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = BertModel.from_pretrained(None).train()
    rows = []
    for n in args.lengths:
        for b in args.batches:
            ids = torch.randint(1000, model.config.vocab_size, (b, n))

            def step():
                model(input_ids=ids).last_hidden_state.pow(2).mean().backward()
                model.zero_grad(set_to_none=True)

            s = take_turns({"step": step}, args.reps)["step"]
            rows.append({"length": n, "batch": b, "s/step": s, "tokens/s": n * b / s, "seq/s": b / s})
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(
        {"threads": args.threads, "reps": args.reps, "rows": rows}, indent=1) + "\n")
    fig, (a, c) = plt.subplots(1, 2, figsize=(10, 4))
    for b in args.batches:
        pts = [r for r in rows if r["batch"] == b]
        a.plot([r["length"] for r in pts], [r["tokens/s"] for r in pts], marker="o", label=f"batch {b}")
    for n in args.lengths:
        pts = [r for r in rows if r["length"] == n]
        c.plot([r["batch"] for r in pts], [r["tokens/s"] for r in pts], marker="o", label=f"length {n}")
    for ax, x in ((a, "sequence length"), (c, "batch size")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(x)
        ax.set_ylabel("tokens/s (forward+backward)")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(f"minbert encoder, all-MiniLM-L6-v2, {args.threads} thread(s), median of {args.reps}")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)


if __name__ == "__main__":
    main()
