"""Setting up a run: the run log, seeds, the device, a writable folder, the training and dev sets, and what
each epoch trains (staged freezing).

Used by the trainer and by the other commands that write a run (MLM pre-training).
"""
from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..schema import Config
from ..data.batching import EncodedSet, encode_examples
from ..data.loading import load_split, read_split
from ..data.readers import Example
from .. import writes
from ..tasks import Task


class RunLog:
    """Prints a line on standard error (standard output carries only a command's JSON result) and appends
    it to RUN_DIR/log.txt; with `hold`, lines are kept in memory until `start()` (a run that has not
    validated yet writes nothing into its folder)."""

    def __init__(self, path: Path, hold: bool = False):
        self.path = path
        self.held: list[str] | None = [] if hold else None

    def __call__(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        if self.held is not None:
            self.held.append(line)
            return
        writes.append(self.path, line + "\n")

    def start(self, fresh: bool = False) -> None:
        """Write the held lines (into a new log.txt when `fresh`) and append from now on."""
        held, self.held = self.held or [], None
        text = "".join(line + "\n" for line in held)
        if fresh or not self.path.exists():
            writes.write_text(self.path, text)
        else:
            writes.append(self.path, text)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_writable(run_dir: Path) -> None:
    """Create `run_dir` and write a probe file into it (a new name: it replaces nothing), or raise WriteError."""
    with writes.failures(run_dir, writes.NOTHING, "choose another --out, or free space and run the command again"):
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-") as probe:
            probe.write(b"ok")
            probe.flush()


def training_examples(cfg: Config, task: Task, data_path: Path, log: Callable[[str], None]) -> list[Example]:
    """The training rows a run of `cfg` learns `task` from: the file, less a held-out fold (data.folds / data.fold),
    then a random subset (data.train_limit / train_fraction, drawn with train.seed); with data.both_orders each
    pair also swapped."""
    held_out = (cfg.data.folds, cfg.data.fold) if cfg.data.folds is not None else None
    rows = read_split(task, "train", data_path, cfg.data.strict, log, cfg.data.train_limit, cfg.train.seed,
                      cfg.data.train_fraction, held_out)
    if cfg.data.both_orders and task.is_pair:  # each pair once more, its sentences swapped (same label)
        rows += [Example(f"{r.id}:swapped", r.texts[::-1], r.label) for r in rows]
    return rows


def task_sets(cfg: Config, model, tokenizer, data_path: Path, log: Callable[[str], None], taught_tasks: set[str]
              ) -> tuple[dict[str, EncodedSet], dict[str, EncodedSet], dict[str, list[Example]]]:
    """Each task's training and dev sets, encoded as its head reads them (a pair jointly or one sentence at a
    time), and the training rows of the tasks in `taught_tasks` (their teachers score those rows)."""
    train_sets, dev_sets, taught = {}, {}, {}
    for name, task in model.tasks.items():
        joint = model.joint_input(name)
        rows = training_examples(cfg, task, data_path, log)
        train_sets[name] = encode_examples(rows, tokenizer, joint)
        if name in taught_tasks:
            taught[name] = rows
        dev_sets[name] = load_split(task, "dev", data_path, tokenizer, joint, cfg.data.strict, log, cfg.data.dev_limit)
    return train_sets, dev_sets, taught


def trained_part(cfg: Config, epoch: int) -> str:
    """Staged freezing: what learns in this epoch, `all`, `private` (heads and their private layers) or `heads`
    (`freeze_encoder` = heads only, throughout; after the last stage, the last stage's part)."""
    if cfg.train.freeze_encoder:
        return "heads"
    end = 0
    for stage in cfg.train.freeze_stages or []:
        end += stage.epochs
        if epoch <= end:
            return stage.train
    return cfg.train.freeze_stages[-1].train if cfg.train.freeze_stages else "all"


def encoder_trainable(cfg: Config, epoch: int) -> bool:
    """Is the shared encoder trained in this epoch?"""
    return trained_part(cfg, epoch) == "all"


def schedule_line(cfg: Config, steps: int, per_task: dict[str, int], total_updates: int, parameters: int) -> str:
    """The log line that says what a run will train: its schedule, steps, batch sizes and size."""
    return (f"schedule {cfg.train.schedule.name}, combine {cfg.train.combine.name}: {steps} steps in "
            f"epoch 1 ({', '.join(f'{n}: {per_task.get(n, 0)} examples' for n in cfg.tasks)}), {cfg.train.epochs} epochs, "
            f"{total_updates} optimizer steps; batch sizes {{{', '.join(f'{n}: {cfg.train.batch_size[n]}' for n in cfg.tasks)}}}; "
            f"{parameters:,} parameters")
