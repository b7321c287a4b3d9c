"""The experiments layer under `minbert ablate` and `minbert sweep`: where a table's base config is, whether one of
its runs is already done, and training (or continuing) one run in the tool's own run folder.

A run is done when its result file (`ablation_result.json`, `sweep_result.json`) parses, has the fields the tool
needs and records the config wanted now; a result that cannot be read is named in a warning line and the run
is trained again, never a traceback. A run that an earlier attempt left unfinished (killed, or paused by a signal) continues from its `last/`
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

from ..errors import ConfigError, CheckpointError, WriteError
from ..schema import Config, build_config
from ..training.interrupts import TrainingInterrupted
from ..training.state import recover_interrupted_swap
from ..training.run import resume, train


def resolve_base(path: Path, base: str | None) -> Path | None:
    """A base config named in a sweep or ablation file: relative to that file, else to the working directory."""
    if base is None:
        return None
    return path.parent / base if (path.parent / base).is_file() else Path(base)


def same_config(earlier: dict | None, wanted: dict) -> bool:
    """Whether a finished run used this config; settings added to minbert since then count at their defaults."""
    try:
        return earlier is not None and build_config(earlier).to_dict() == wanted
    except ConfigError:  # a setting that no longer exists
        return False


def read_result(path: Path, fields: dict[str, type | tuple[type, ...]], log) -> dict | None:
    """A run's result file as a mapping with `fields` of their types, or None when there is none, or when it
    cannot be used (then a warning line through `log`: the run is trained again)."""
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        log(f"warning: {path}: unreadable ({type(e).__name__}); training that run again")
        return None
    if not isinstance(result, dict) or not all(isinstance(result.get(k), t) and not isinstance(result.get(k), bool)
                                               for k, t in fields.items()):
        log(f"warning: {path}: not a whole result (expected the fields {', '.join(fields)}); training that run again")
        return None
    return result


def finished_result(path: Path, fields: dict[str, type | tuple[type, ...]], wanted: dict, log) -> dict | None:
    """The result of a run done before with the config `wanted`, or None when it is to be trained."""
    result = read_result(path, fields, log)
    return result if result is not None and same_config(result.get("config"), wanted) else None


def checkpointed_seconds(last: Path) -> float:
    """The training and evaluation seconds that the checkpoint in `last` holds (0 when it records none)."""
    try:
        state = json.loads((last / "trainer_state.json").read_bytes().decode("utf-8"))
        seconds = sum(e.get("train_seconds", 0) + e.get("eval_seconds", 0) for e in state["history"])
        return float(seconds + state["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0.0


def train_or_continue(cfg: Config, run_dir: Path, data_dir: str | None, log, again: str,
                      may_continue: bool = True, on_eval=None) -> tuple[dict, int]:
    """Train `cfg` in `run_dir`, continuing an unfinished earlier attempt when `may_continue` (the caller
    knows the folder holds no finished run); returns the best dev metrics and the run's seconds. `again` is
    the command to rerun, named in the line of a paused run; `on_eval`: the trainer's hook (a search's pruner)."""
    start = time.time()
    try:
        if may_continue and (run_dir / "config.yaml").is_file():
            recover_interrupted_swap(run_dir / "last")  # a kill between the two renames of a checkpoint save
            if (run_dir / "last").is_dir():
                before = checkpointed_seconds(run_dir / "last")
                log(f"  continuing it from {run_dir / 'last'} ({before:.0f} s of it done before)")
                try:
                    return resume(run_dir, copy.deepcopy(cfg), data_dir=data_dir, on_eval=on_eval), round(before + time.time() - start)
                except CheckpointError as e:  # changed config, unreadable checkpoint: nothing was written
                    log(f"  cannot continue it ({e}); training it from the start")
                    start = time.time()
        return train(cfg, run_dir, data_dir, overwrite=True, on_eval=on_eval), round(time.time() - start)
    except TrainingInterrupted as e:
        e.hint = f"rerun {again} to continue (finished runs are kept; this one continues from its last checkpoint)"
        raise
    except WriteError as e:
        raise e.advise(todo=f"once it can be written (free space), rerun {again} to continue (finished runs are "
                            "kept; this one continues from its last checkpoint)") from e
