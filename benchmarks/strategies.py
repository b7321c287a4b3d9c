"""Short real runs of every task schedule and gradient combiner on the course data, and the step-time
ratio of pcgrad and smart to the plain (sum) step on the same batches. Writes docs/results/strategies.md.

Usage:  .venv/bin/python benchmarks/strategies.py [--budget N] [--only NAME ...] [--fraction F] [--step-times STEPS]
Each run: default config, 1 epoch on a seeded random N rows per task (default 2000), dev on the first
1000 rows per task. About 30 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from minbert.tools.bench import STEP_BASE, step_rows  # noqa: E402
from minbert.schema import load_config  # noqa: E402
from minbert.training.run import train  # noqa: E402

RUNS = {  # name -> overrides of configs/default.yaml
    "round_robin until longest (over-sampling), combine sum": ["train.schedule.name=round_robin",
                                                               "train.schedule.until=longest"],
    "round_robin until shortest (under-sampling)": ["train.schedule.name=round_robin", "train.schedule.until=shortest"],
    "sequential SST -> STS -> Para": ["train.schedule.name=sequential"],
    "random_subset (Para 1000 per epoch, batch 64)": ["train.schedule.name=random_subset",
                                                      "train.schedule.subset_size={para: 1000}",
                                                      "train.batch_size.para=64"],
    "proportional": ["train.schedule.name=proportional"],
    "temperature T=2": ["train.schedule.name=temperature", "train.schedule.temperature=2.0"],
    "annealed (sqrt size -> uniform)": ["train.schedule.name=annealed"],
    "adaptive_round_robin r=1 (2 epochs)": ["train.schedule.name=adaptive_round_robin", "train.epochs=2"],
    "task_by_task (3 epochs)": ["train.schedule.name=task_by_task", "train.epochs=3"],
    "combine pcgrad (round_robin longest)": ["train.combine.name=pcgrad", "train.combine.log_cosine_every=10"],
    "combine sum + smart lambda_s=1 (round_robin longest)": ["train.smart.lambda_s=1.0"],
}
COMMON = ["train.epochs=1", "train.schedule.until=longest", "train.schedule.steps_per_epoch=null",
          "data.dev_limit=1000", "eval.test_predictions=false", "train.checkpoint_every=100000"]


def step_times(budget: int, steps: int) -> list[dict]:
    """Step time of sum, pcgrad and SMART on the same batches: `minbert bench`'s combine part."""
    return step_rows(STEP_BASE + [f"data.train_limit={budget}"], REPO / "runs" / "bench-step", steps, None)


def step_time_table(rows: list[dict], steps: int) -> list[str]:
    lines = [f"Median of {steps} steps after a warm-up step, the variants taking turns step by step in one "
             "process (`minbert.tools.bench.step_rows`); ratios to the plain (sum) step.", "",
             "| combine / regulariser | median s/step | ratio to sum |", "|---|---|---|"]
    return lines + [f"| {r['variant']} | {r['s/step']:.3f} | {r['ratio']:.2f}x |" for r in rows]


def results_table(rows: list[dict]) -> list[str]:
    lines = ["| run | dev SST | dev Quora | dev STS r | dev overall | best epoch | wall s | train examples/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["best"]
        lines.append(f"| {r['name']} | {b['sst']:.3f} | {b['para']:.3f} | {b['sts']:.3f} | {b['overall']:.3f} | "
                     f"{b['epoch']} | {r['seconds']} | {r['examples_per_second']} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=2000, help="training rows per task")
    ap.add_argument("--only", nargs="*", help="run only these names (substring match)")
    ap.add_argument("--fraction", type=float, help="instead of --budget: this share of each task's rows "
                    "(keeps the tasks' imbalance, which the size-aware samplers need); writes docs/results/strategies-fraction.md")
    ap.add_argument("--step-times", type=int, metavar="STEPS",
                    help="only measure step times (this many steps per variant); writes docs/results/step-times.md")
    args = ap.parse_args()
    if args.step_times:
        rows = step_times(args.budget, args.step_times)
        lines = ["# Step time of the gradient combiners and SMART", "",
                 f"Command: `.venv/bin/python benchmarks/strategies.py --budget {args.budget} --step-times {args.step_times}` on the 2-core "
                 "CPU development machine, all-MiniLM-L6-v2, configs/default.yaml batches (SST 16, Quora 32, "
                 "STS 16), one round-robin step = one batch of each task, forward + backward + AdamW.", ""]
        (REPO / "docs" / "results" / "step-times.md").write_text("\n".join(lines + step_time_table(rows, args.step_times)) + "\n")
        print(json.dumps(rows))
        return
    budget = f"data.train_fraction={args.fraction}" if args.fraction else f"data.train_limit={args.budget}"
    rows = []
    for name, extra in RUNS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        cfg = load_config(REPO / "configs" / "default.yaml", COMMON + [budget, *extra])
        run = REPO / "runs" / "strategies" / name.split(" ")[0].replace("/", "-") / str(len(rows))
        t0 = time.time()
        best = train(cfg, run, None, overwrite=True)  # this benchmark's own folder: a rerun replaces it
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rows.append({"name": name, "best": best, "seconds": round(time.time() - t0),
                     "examples_per_second": history[-1]["train_examples_per_second"]})
        print(json.dumps(rows[-1]), flush=True)
    if args.fraction:
        lines = [f"Command: `.venv/bin/python benchmarks/strategies.py --fraction {args.fraction} --only ...`: as "
                 f"docs/results/strategies.md but on a seeded random {args.fraction:.0%} of each task's training rows, "
                 "so the tasks keep their sizes' ratio.", ""] + results_table(rows)
        (REPO / "docs" / "results" / "strategies-fraction.md").write_text("\n".join(lines) + "\n")
        return
    times = step_times(args.budget, 8)
    lines = ["# Training strategies: short real runs", "",
             f"Command: `.venv/bin/python benchmarks/strategies.py --budget {args.budget}` on the 2-core CPU "
             "development machine (no GPU), all-MiniLM-L6-v2, configs/default.yaml (cross-encoded pairs, mean "
             "pooling, batch sizes SST 16 / Quora 32 / STS 16, lr 5e-5, heads 1e-3) with these changes: "
             f"1 epoch (unless noted) on a seeded random {args.budget} training rows per task; dev on the "
             "first 1,000 dev rows per task (SST has 1,101). Small budgets: these figures compare the "
             "strategies with each other at equal data, they are not the full-data scores.", "",
            ] + results_table(rows)
    lines += ["", "## Step time (same batches, one round-robin step = one batch of each task)", ""]
    lines += step_time_table(times, 8)
    (REPO / "docs" / "results" / "strategies.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(times))


if __name__ == "__main__":
    main()
