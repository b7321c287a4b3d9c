"""Step time of each seed system (configs/seeds/*.yaml) relative to configs/default.yaml, measured in one process:
the systems take turns, each running its next few schedule steps (forward, backward, combiner, regulariser and
optimizer update, as `minbert train` runs them), so that every system sees the same load and a ratio is fair
where the full trainings ran at different times beside different neighbours.

Each system is built as its training builds it (its own config over the full training data, seed 11711), at an
epoch where its encoder is trained (staged freezing's head-only epochs are cheaper, and show in the training
minutes instead). Steps are taken in plan order, so a schedule whose steps carry different tasks (random
subsets) is sampled as it runs. Nothing is saved but the JSON result.

Usage: python benchmarks/seeds_step_times.py [--threads 1] [--steps 4] [--rounds 6]
       [--out results/seeds/step_times.json] [--set KEY=VALUE ...] [CONFIG ...]
CONFIG defaults to configs/default.yaml, every configs/seeds/*.yaml and configs/best-cpu.yaml; the first is the
1.00x base. Results are keyed by the config file's name (default, 000-minibert-unleashed, ..., best-cpu).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from minbert.schema import load_config
from minbert.tools.bench import timed
from minbert.training.run import check_inputs
from minbert.training.setup import encoder_trainable
from minbert.training.trainer import Trainer


class Stepper:
    """Runs a trainer's schedule steps in plan order, `k` at a time, from an epoch where the encoder trains."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        cfg = trainer.cfg
        epoch = next((e for e in range(1, cfg.train.epochs + 1) if encoder_trainable(cfg, e)), 1)
        trainer.progress.epoch = epoch
        trainer.begin_epoch()
        self.plan = trainer.schedule.plan(epoch)
        self.at = 0

    def run(self, k: int) -> None:
        for _ in range(k):
            self.trainer.train_step(self.plan[self.at % len(self.plan)])
            self.at += 1


def build(config: Path, sets: list[str], root: Path) -> Trainer:
    cfg = load_config(config, sets)
    data_path, backbone, _ = check_inputs(cfg, None)
    return Trainer(cfg, root / config.stem, data_path, lambda line: None, backbone=backbone)


def measure(configs: list[Path], sets: list[str], steps: int, rounds: int, log) -> dict:
    """Seconds per schedule step of each config (median over rounds, one warm-up round dropped)."""
    with tempfile.TemporaryDirectory() as tmp:
        steppers = {}
        for config in configs:
            log(f"building {config}")
            steppers[config.stem] = Stepper(build(config, sets, Path(tmp)))
        times: dict[str, list[float]] = {name: [] for name in steppers}
        for r in range(1 + rounds):
            for name, stepper in steppers.items():
                t = timed(lambda: stepper.run(steps)) / steps
                if r >= 1:
                    times[name].append(t)
            log(f"round {r}: " + ", ".join(f"{n} {v[-1]:.2f} s" for n, v in times.items() if v))
    base = statistics.median(times[configs[0].stem])
    return {"base": configs[0].stem, "threads": torch.get_num_threads(), "steps_per_turn": steps, "rounds": rounds,
            "systems": {name: {"seconds_per_step": statistics.median(v), "ratio": statistics.median(v) / base,
                               "rounds": v} for name, v in times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the seed runs trained with one each)")
    ap.add_argument("--steps", type=int, default=4, help="schedule steps per turn")
    ap.add_argument("--rounds", type=int, default=6, help="timed turns per system, after one warm-up turn")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every config")
    ap.add_argument("--out", type=Path, default=Path("results/seeds/step_times.json"))
    args = ap.parse_args()
    configs = args.configs or [Path("configs/default.yaml"), *sorted(Path("configs/seeds").glob("*.yaml")),
                               Path("configs/best-cpu.yaml")]
    sets = [f"train.threads={args.threads}", "data.dev_limit=8", "eval.test_predictions=false", *args.set]
    result = measure(configs, sets, args.steps, args.rounds, lambda line: print(line, file=sys.stderr, flush=True))
    result["command"] = "python benchmarks/seeds_step_times.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({n: round(s["ratio"], 3) for n, s in result["systems"].items()}))


if __name__ == "__main__":
    main()
