"""Everything a killed run needs to continue exactly, written without pickle and atomically.

A training checkpoint folder holds the model (encoder `model.safetensors` + `heads.safetensors`, as
`best/` does), `trainer_state.safetensors` (optimizer moments, RNG states) and `trainer_state.json`
(epoch, step, scheduler, the sampler's position, metrics so far, the step log's loss sums, the config it was
trained with).
Folders are written under a temporary name and renamed into place, so a kill or a full disk during
a save leaves the previous checkpoint whole.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..checkpoints import CheckpointError


class DiskError(OSError):
    """The run directory cannot be written (not writable, or the disk is full)."""


def atomic_folder(folder: Path, write: Callable[[Path], None]) -> None:
    """Run `write(tmp)` into a fresh temporary folder, fsync it, then swap it in for `folder`."""
    tmp = folder.with_name(folder.name + ".tmp")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        why = "the disk is full" if e.errno == errno.ENOSPC else str(e)
        kept = f"; the previous {folder.name}/ checkpoint is intact" if folder.exists() else ""
        raise DiskError(f"cannot write checkpoint {folder}: {why}{kept}") from e
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def recover_interrupted_swap(folder: Path) -> None:
    """If a kill fell between the two renames of `atomic_folder`, put the previous checkpoint back."""
    old = folder.with_name(folder.name + ".old")
    if not folder.exists() and old.exists():
        old.rename(folder)
    shutil.rmtree(folder.with_name(folder.name + ".tmp"), ignore_errors=True)


def _split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by a reference, collecting the tensors by name."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().contiguous().cpu()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {str(k): _split_tensors(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    # JSON turns the integer keys of `state` into strings and tuples into lists
    state = dict(state)
    state["state"] = {int(k): v for k, v in state["state"].items()}
    for group in state["param_groups"]:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict(state)


def write_trainer_state(folder: Path, state: dict) -> None:
    """Split `state` into tensors (safetensors) and everything else (JSON) inside `folder`."""
    tensors: dict[str, torch.Tensor] = {}
    plain = _split_tensors(state, "s", tensors)
    save_file(tensors, str(folder / "trainer_state.safetensors"))
    (folder / "trainer_state.json").write_text(json.dumps(plain) + "\n")


def read_trainer_state(folder: Path) -> dict:
    js, st = folder / "trainer_state.json", folder / "trainer_state.safetensors"
    for f in (js, st):
        if not f.is_file():
            raise CheckpointError(f"{f}: missing, cannot resume from {folder}")
    try:
        plain = json.loads(js.read_text())
        tensors = load_file(str(st))
    except (json.JSONDecodeError, OSError, SafetensorError) as e:
        raise CheckpointError(f"{folder}: unreadable trainer state ({e})") from e
    return _join_tensors(plain, tensors)
