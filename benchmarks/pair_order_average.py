"""A pair task's dev score with each pair given in the file's order, swapped, and the two probabilities averaged
(a prediction-time use of both sentence orders). docs/results/distillation.md, "Both sentence orders".

    python benchmarks/pair_order_average.py RUN_DIR [--task para|sts] [--data-dir DIR]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from minbert.data.batching import encode_examples
from minbert.data.loading import read_split, resolve_data_dir
from minbert.data.readers import Example
from minbert.evaluate import predict_set
from minbert.runs import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--task", default="para", choices=["para", "sts"])
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    cfg, model, tokenizer = load_run(args.run_dir)
    task = model.tasks[args.task]
    rows = read_split(task, "dev", resolve_data_dir(args.data_dir), cfg.data.strict, print, cfg.data.dev_limit)
    probs = []
    for ordered in (rows, [Example(r.id, r.texts[::-1], r.label) for r in rows]):
        data = encode_examples(ordered, tokenizer, model.joint_input(args.task))
        outputs, _ = predict_set(model, args.task, data, tokenizer, cfg.eval.batch_size, next(model.parameters()).device)
        probs.append(np.asarray(task.kind.probabilities(outputs)).reshape(-1))
    labels = np.array([r.label for r in rows], dtype=float)

    def score(p: np.ndarray) -> float:  # Quora accuracy at 0.5, STS Pearson r
        return float(((p > 0.5) == labels).mean()) if args.task == "para" else float(np.corrcoef(p, labels)[0, 1])

    print(f"{args.run_dir} {args.task} dev: file order {score(probs[0]):.4f}, swapped {score(probs[1]):.4f}, "
          f"averaged {score((probs[0] + probs[1]) / 2):.4f}")


if __name__ == "__main__":
    with torch.no_grad():
        main()
