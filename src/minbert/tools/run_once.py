"""One run of `minbert ablate` or `minbert sweep`, in the tool's own run folder.

A run that an earlier attempt left unfinished (killed, or paused by a signal) continues from its `last/`
checkpoint when its config is unchanged, as `minbert train --resume` would; otherwise (no checkpoint, a
changed config, a checkpoint that cannot be read) it is trained again from the start, replacing the folder.
Its time counts the earlier attempts' work up to their checkpoint (training and evaluation, from the
checkpoint's per-epoch records) plus this attempt's wall time, so a run continued over several sittings
reports about what one sitting would have taken.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from ..backbone import CheckpointError
from ..config import Config
from ..training.interrupts import TrainingInterrupted
from ..training.state import recover_interrupted_swap
from ..training.trainer import resume, train


def checkpointed_seconds(last: Path) -> float:
    """The training and evaluation seconds that the checkpoint in `last` holds (0 when it records none)."""
    try:
        state = json.loads((last / "trainer_state.json").read_bytes().decode("utf-8"))
        seconds = sum(e.get("train_seconds", 0) + e.get("eval_seconds", 0) for e in state["history"])
        return float(seconds + state["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0.0


def train_or_continue(cfg: Config, run_dir: Path, data_dir: str | None, log, again: str,
                      may_continue: bool = True) -> tuple[dict, int]:
    """Train `cfg` in `run_dir`, continuing an unfinished earlier attempt when `may_continue` (the caller
    knows the folder holds no finished run); returns the best dev metrics and the run's seconds. `again` is
    the command to rerun, named in the line of a paused run."""
    start = time.time()
    try:
        if may_continue and (run_dir / "config.yaml").is_file():
            recover_interrupted_swap(run_dir / "last")  # a kill between the two renames of a checkpoint save
            if (run_dir / "last").is_dir():
                before = checkpointed_seconds(run_dir / "last")
                log(f"  continuing it from {run_dir / 'last'} ({before:.0f} s of it done before)")
                try:
                    return resume(run_dir, copy.deepcopy(cfg), data_dir=data_dir), round(before + time.time() - start)
                except CheckpointError as e:  # changed config, unreadable checkpoint: nothing was written
                    log(f"  cannot continue it ({e}); training it from the start")
                    start = time.time()
        return train(cfg, run_dir, data_dir, overwrite=True), round(time.time() - start)
    except TrainingInterrupted as e:
        e.hint = f"rerun {again} to continue (finished runs are kept; this one continues from its last checkpoint)"
        raise
