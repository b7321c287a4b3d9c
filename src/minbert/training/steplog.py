"""Logs while training: RUN_DIR/steps.jsonl, the progress bar's loss and learning rate, TensorBoard.

The trainer feeds a `StepLog` each batch's loss (`batch`) and each optimizer step (`update`). Every
`train.log_every` optimizer steps it writes one line of RUN_DIR/steps.jsonl:

    {"update": 50, "epoch": 1, "step": 50, "loss": {"sst": 1.58, ...}, "lr": {"encoder": 5e-05, "head:sst": ...},
     "grad_norm": 3.2, "examples_per_second": 140.3}

`loss` is each task's mean batch loss since the previous line (tasks without a batch since then are left
out), `lr` the learning rate each parameter group applied in this update (groups are named in
optim.parameter_groups), `grad_norm` this update's gradient norm before clipping, `examples_per_second`
the training examples (all processes) since the previous line over the wall time since then (dev
evaluations left out; checkpoint writes included). The bar of
the epoch shows the latest line's losses and encoder learning rate. With `train.tensorboard` the same
scalars, and each epoch's dev metrics and dev loss, go to RUN_DIR/tensorboard through
torch.utils.tensorboard, all against the optimizer-step count.

The loss sums since the last line are part of the checkpoint (`state` / `load_state`), so a resumed
run writes the same lines as an uninterrupted one, except `examples_per_second`, whose first line after
a resume covers the time since the resume. `open(updates)` drops what a killed run logged after its
checkpoint. Only the main process (rank 0 under torchrun) draws the bar and writes; nothing here draws
random numbers.
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .. import writes
from ..errors import ConfigError, WriteError

STEPS_FILE = "steps.jsonl"
TENSORBOARD_DIR = "tensorboard"


def require_tensorboard() -> None:
    """`train.tensorboard` needs the tensorboard package; say how to get it (checked before a run starts)."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("train.tensorboard: the tensorboard package is not installed; "
                          "pip install 'tensorboard>=2.10' (or set train.tensorboard=false)") from None


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The learning rate of each named parameter group (a name's decayed and undecayed halves share one)."""
    out: dict[str, float] = {}
    for i, group in enumerate(optimizer.param_groups):
        out.setdefault(group.get("name", f"group{i}"), float(group["lr"]))
    return out


class StepLog:
    def __init__(self, run_dir: Path, tasks: list[str], every: int | None, tensorboard: bool, main: bool = True):
        self.run_dir, self.tasks, self.every, self.main = run_dir, tasks, every, main
        self.tensorboard = tensorboard and main
        self.writer = None
        self.bar: tqdm | None = None
        self.postfix = ""
        self.loss_sums = {t: 0.0 for t in tasks}
        self.loss_counts = {t: 0 for t in tasks}
        self._restart_clock()

    def _restart_clock(self) -> None:
        self.examples, self.since = 0, time.perf_counter()

    # ---- the run's start and end ----
    def open(self, updates: int) -> None:
        """Start writing after `updates` optimizer steps: keep the lines (and TensorBoard events) up to it."""
        self._restart_clock()
        if not self.main:
            return
        path = self.run_dir / STEPS_FILE
        keep_until(path, updates)  # a resumed run: drop what the killed run logged after its checkpoint
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            quiet_writer_threads()
            folder = self.run_dir / TENSORBOARD_DIR
            # on a resume, TensorBoard hides the killed run's events after the checkpoint
            self.writer = self._board(SummaryWriter, str(folder), purge_step=updates + 1 if folder.exists() else None)

    def close(self) -> None:
        if self.writer is not None:
            self._board(self.writer.close)
            self.writer = None

    def _board(self, call, *args, **kwargs):
        """Call TensorBoard's writer (it writes its files itself, partly in a thread of its own); a failure to
        write is a WriteError naming RUN_DIR/tensorboard, and nothing more goes to TensorBoard."""
        try:
            return call(*args, **kwargs)
        except Exception as e:
            if not writes.is_write_failure(e):
                raise
            self.writer = None
            raise WriteError(self.run_dir / TENSORBOARD_DIR, writes.cause(e), "the run's checkpoints are intact",
                             writes.advice(e)) from e

    def progress_bar(self, total: int, initial: int, desc: str) -> tqdm:
        """The epoch's bar on standard error (rank 0 only), showing the latest line's loss and learning rate."""
        self.bar = tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, disable=not self.main,
                        mininterval=1.0 if sys.stderr.isatty() else 30.0)
        if self.postfix:
            self.bar.set_postfix_str(self.postfix, refresh=False)
        return self.bar

    # ---- fed by the trainer ----
    def batch(self, task: str, loss: float, examples: int) -> None:
        """One task batch of a step: its mean loss (a non-finite one is not counted) and its size."""
        if math.isfinite(loss):
            self.loss_sums[task] += loss
            self.loss_counts[task] += 1
        self.examples += examples

    def update(self, updates: int, epoch: int, step: int, lrs: dict[str, float], grad_norm: float) -> None:
        """After optimizer step number `updates`: a line when it is a multiple of `every`."""
        if not self.every or updates % self.every:
            return
        now = time.perf_counter()
        line = {"update": updates, "epoch": epoch, "step": step,
                "loss": {t: self.loss_sums[t] / self.loss_counts[t] for t in self.tasks if self.loss_counts[t]},
                "lr": lrs, "grad_norm": grad_norm,
                "examples_per_second": round(self.examples / max(now - self.since, 1e-9), 1)}
        self.loss_sums = {t: 0.0 for t in self.tasks}
        self.loss_counts = {t: 0 for t in self.tasks}
        self.examples, self.since = 0, now
        if not self.main:
            return
        writes.append(self.run_dir / STEPS_FILE, json.dumps(line) + "\n")
        self.postfix = " ".join(f"{t} {v:.3f}" for t, v in line["loss"].items())
        if "encoder" in lrs:
            self.postfix += f", lr {lrs['encoder']:.2e}"
        if self.bar is not None:
            self.bar.set_postfix_str(self.postfix, refresh=False)
        if self.writer is not None:
            for name, value in scalars(line).items():
                self._board(self.writer.add_scalar, name, value, updates)

    def epoch_end(self, updates: int, metrics: dict[str, float], dev_loss: dict[str, float],
                  eval_seconds: float) -> None:
        """An epoch's dev metrics and dev loss, to TensorBoard at the epoch's last optimizer step; the
        evaluation's `eval_seconds` do not count as training time."""
        self.since += eval_seconds
        if self.writer is None:
            return
        for name, value in metrics.items():
            self._board(self.writer.add_scalar, f"dev/{name}", value, updates)
        for name, value in dev_loss.items():
            self._board(self.writer.add_scalar, f"dev_loss/{name}", value, updates)
        self._board(self.writer.flush)

    # ---- checkpoints ----
    def state(self) -> dict:
        return {"loss_sums": dict(self.loss_sums), "loss_counts": dict(self.loss_counts)}

    def load_state(self, state: dict | None) -> None:
        """A checkpoint's loss sums; one written before the step log existed has none (the first line after
        the resume then covers the steps since the resume)."""
        if state:
            self.loss_sums = {t: float(state["loss_sums"].get(t, 0.0)) for t in self.tasks}
            self.loss_counts = {t: int(state["loss_counts"].get(t, 0)) for t in self.tasks}


def quiet_writer_threads() -> None:
    """TensorBoard's writer thread re-raises a failed write, which Python prints as a traceback; the same error
    reaches the trainer at the writer's next call (a WriteError), so the thread's own report is left out."""
    previous = threading.excepthook
    if getattr(previous, "minbert_quiet", False):
        return

    def hook(args) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and writes.is_write_failure(args.exc_value):
            return
        previous(args)
    hook.minbert_quiet = True
    threading.excepthook = hook


def keep_until(path: Path, updates: int) -> None:
    """Keep the lines of a JSON-lines log (steps.jsonl, grad_cosine.jsonl) written at or before optimizer
    step `updates`; a line cut short by a kill goes too."""
    if path.exists():
        kept = [r for r in path.read_text().splitlines() if logged_update(r) <= updates]
        writes.write_text(path, "".join(r + "\n" for r in kept))


def logged_update(row: str) -> float:
    """The update number of a steps.jsonl row; a row cut short by a kill counts as after any checkpoint."""
    try:
        return json.loads(row)["update"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def scalars(line: dict) -> dict[str, float]:
    """A steps.jsonl line as TensorBoard tags: loss/TASK, lr/GROUP, grad_norm, examples_per_second."""
    out = {f"loss/{t}": v for t, v in line["loss"].items()}
    out.update({f"lr/{g}": v for g, v in line["lr"].items()})
    out["grad_norm"] = line["grad_norm"]
    out["examples_per_second"] = line["examples_per_second"]
    return out
