"""Everything a killed run needs to continue exactly, written without pickle and atomically.

`TrainState` is a run's progress (epoch, step, counts, best score, history), and `PARTS` the run's other
stateful parts (optimizer, scheduler, samplers, RNGs, ...), each with how it saves and loads itself: the
trainer's checkpoint is these two, and what a read-back state is checked for before use comes from them too.

A training checkpoint folder holds the model (encoder `model.safetensors` + `heads.safetensors`, as
`best/` does), `trainer_state.safetensors` (optimizer moments, RNG states) and `trainer_state.json`
(epoch, step, scheduler, the sampler's position, metrics so far, the step log's loss sums, the config it was
trained with).
Folders are written under a temporary name and renamed into place, so a kill or a full disk during
a save leaves the previous checkpoint whole. Read back, the state is untrusted: a missing key, a wrong
type or a tensor that is not there is a `CheckpointError` naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .. import writes
from ..errors import CheckpointError, DiskError, WriteError  # noqa: F401  (re-exported where raised)
from ..backbone import read_safetensors


@dataclass
class TrainState:
    """A run's progress; a checkpoint's trainer_state.json holds these keys beside the optimizer, RNG and
    sampler states."""

    epoch: int = 1  # the epoch in progress
    step: int = 0  # schedule steps done in it
    updates: int = 0  # optimizer steps taken
    best_score: float = -math.inf
    best_metrics: dict = field(default_factory=dict)  # the best epoch's dev metrics and its number
    history: list = field(default_factory=list)  # one record per finished epoch (metrics.jsonl)
    bad_in_a_row: int = 0  # non-finite steps skipped in a row
    bad_total: int = 0
    loss_sums: dict = field(default_factory=dict)  # this epoch's training loss per task, summed ...
    loss_counts: dict = field(default_factory=dict)  # ... over this many batches
    examples: int = 0  # training examples this epoch
    train_seconds: float = 0.0  # and the seconds they took

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "TrainState":
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls)})

    def new_epoch(self, tasks: list[str]) -> None:
        """Reset the per-epoch totals."""
        self.loss_sums = {n: 0.0 for n in tasks}
        self.loss_counts = {n: 0 for n in tasks}
        self.examples, self.train_seconds = 0, 0.0

    def epoch_record(self, tasks: list[str], dev: dict, dev_loss: dict, eval_seconds: float) -> dict[str, Any]:
        """The line of metrics.jsonl for the epoch that ends now."""
        return {"epoch": self.epoch, "updates": self.updates,
                "train_loss": {n: self.loss_sums[n] / self.loss_counts[n] for n in tasks
                               if self.loss_counts[n]},  # a task drawn 0 times is evaluated only
                "dev": dev, "dev_loss": dev_loss, "skipped_steps": self.bad_total, "steps": self.step,
                "train_seconds": round(self.train_seconds, 1),
                "train_examples_per_second": round(self.examples / max(self.train_seconds, 1e-9), 1),
                "eval_seconds": round(eval_seconds, 1)}


def atomic_folder(folder: Path, write: Callable[[Path], None]) -> None:
    """Run `write(tmp)` into a fresh `FOLDER.tmp/`, fsync it, then swap it in for `folder` (`writes.atomic_folder`);
    a failure to write is a WriteError saying the previous checkpoint is intact."""
    writes.atomic_folder(folder, write, what=f"{folder.name}/ checkpoint")


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
            if not isinstance(obj["__tensor__"], str) or obj["__tensor__"] not in tensors:
                raise KeyError(obj["__tensor__"])
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
    for group in optimizer.param_groups:  # torch checks the groups' sizes, not the moments' shapes
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != p.shape:
                    raise ValueError(f"optimizer moment {name} has shape {tuple(value.shape)}, "
                                     f"its parameter {tuple(p.shape)}")


def write_trainer_state(folder: Path, state: dict) -> None:
    """Split `state` into tensors (safetensors) and everything else (JSON) inside `folder`."""
    tensors: dict[str, torch.Tensor] = {}
    plain = _split_tensors(state, "s", tensors)
    writes.save_safetensors(tensors, folder / "trainer_state.safetensors")
    writes.write_text(folder / "trainer_state.json", json.dumps(plain) + "\n")


@dataclass(frozen=True)
class Part:
    """One stateful part of a training run (duck-typed on the trainer's attributes): the key its state has in
    the checkpoint, that state's type, and how the part saves and loads it. A part that is not `required`
    may be absent or None (checkpoints from before it existed, or a run without it): it keeps its fresh state."""

    key: str
    kind: type | tuple[type, ...]
    save: Callable[[Any], Any]
    load: Callable[[Any, Any], None]
    required: bool = True


def _load_streams(trainer, state: dict) -> None:
    for name, stream in trainer.streams.items():
        stream.load_state(state[name])


def _load_rng(trainer, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    trainer.generator.set_state(state["batches"])
    trainer.combiner.generator.set_state(state["combine"])


def _nothing_to_load(trainer, state) -> None:
    """Recorded for the checks before a resume (the config in `resume_config`, the data in `Trainer.restore`)."""


PARTS = (
    Part("optimizer", dict, lambda t: t.optimizer.state_dict(), lambda t, s: load_optimizer_state(t.optimizer, s)),
    Part("scheduler", dict, lambda t: {k: v for k, v in t.scheduler.state_dict().items() if k != "lr_lambdas"},
         lambda t, s: t.scheduler.load_state_dict({**s, "lr_lambdas": [None] * len(t.optimizer.param_groups)})),
    Part("streams", dict, lambda t: {n: s.state() for n, s in t.streams.items()}, _load_streams),
    Part("rng", dict, lambda t: {"torch": torch.get_rng_state(), "batches": t.generator.get_state(),
                                 "combine": t.combiner.generator.get_state()}, _load_rng),
    Part("scaler", dict, lambda t: t.scaler.state_dict() if t.scaler else None,
         lambda t, s: t.scaler.load_state_dict(s) if t.scaler else None, required=False),
    Part("teacher", dict, lambda t: t.regulariser.teacher.state_dict() if t.regulariser.teacher is not None else None,
         lambda t, s: t.regulariser.teacher.load_state_dict(s), required=False),  # SMART's momentum teacher
    Part("combiner", dict, lambda t: t.combiner.state(), lambda t, s: t.combiner.load_state(s),
         required=False),  # learned loss weights, Nash-MTL's solver state
    Part("average", dict, lambda t: t.average.state(), lambda t, s: t.average.load_state(s), required=False),
    Part("steplog", dict, lambda t: t.steplog.state(), lambda t, s: t.steplog.load_state(s), required=False),
    Part("config", dict, lambda t: t.cfg.to_dict(), _nothing_to_load),
    Part("data", dict, lambda t: t.data_fingerprint(), _nothing_to_load),
)


def run_state(trainer) -> dict[str, Any]:
    """The checkpoint's state of a run: its progress and each part's state."""
    return {**trainer.progress.to_dict(), **{part.key: part.save(trainer) for part in PARTS}}


def load_run_state(trainer, state: dict[str, Any]) -> None:
    """Load each part of `state` (as `read_trainer_state` checked it) into the trainer, then its progress."""
    for part in PARTS:
        if state.get(part.key) is not None:
            part.load(trainer, state[part.key])
    if set(state["loss_sums"]) != set(trainer.cfg.tasks) or set(state["loss_counts"]) != set(trainer.cfg.tasks):
        raise KeyError(f"loss_sums / loss_counts are not of the tasks {trainer.cfg.tasks}")
    trainer.progress = TrainState.from_dict(state)


def save_checkpoint(trainer, folder: Path) -> None:
    """The run's weights (as `best/` holds them) and its state, written atomically into `folder`."""
    def write(tmp: Path) -> None:
        trainer.save_model(tmp)
        write_trainer_state(tmp, run_state(trainer))
    atomic_folder(folder, write)


def restore_checkpoint(trainer, folder: Path) -> None:
    """Load a checkpoint `save_checkpoint` wrote into the trainer, once its state is checked and the training
    data is the run's; anything that does not fit is a `CheckpointError` naming the file."""
    state = read_trainer_state(folder)
    now = trainer.data_fingerprint()
    changed = [f"{n}: {state['data'].get(n)} then, {now[n]} now" for n in now if state["data"].get(n) != now[n]]
    if changed:
        raise CheckpointError(f"{folder}: the training data differs from the run's ({'; '.join(changed)}); "
                              f"resume with the same data (--data-dir)")
    trainer.model.load(folder)
    try:
        load_run_state(trainer, state)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
        why = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise CheckpointError(f"{folder / 'trainer_state.json'}: does not fit this run ({why})") from None


NUMBER = (int, float)
# what `run_state` writes: key -> type (checked before any of it is used)
STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    **{f.name: {"int": int, "float": NUMBER, "dict": dict, "list": list}[f.type] for f in dataclasses.fields(TrainState)},
    **{part.key: part.kind for part in PARTS if part.required}}


def _state_problem(state: Any) -> str | None:
    """Why a trainer state (as read back) is not one `run_state` wrote, or None."""
    if not isinstance(state, dict):
        return f"expected a JSON object, got {type(state).__name__}"
    for key, kind in STATE_KEYS.items():
        if key not in state:
            return f"key {key!r} missing"
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            return f"{key}: expected {getattr(kind, '__name__', 'a number')}, got {type(state[key]).__name__}"
    if state["epoch"] < 1 or min(state[k] for k in ("step", "updates", "bad_in_a_row", "bad_total", "examples")) < 0:
        return "epoch, step or a count out of range"
    optimizer = state["optimizer"]
    if not isinstance(optimizer.get("state"), dict) or not isinstance(optimizer.get("param_groups"), list) \
            or not all(isinstance(g, dict) for g in optimizer["param_groups"]):
        return "optimizer: expected 'state' (an object) and 'param_groups' (a list of objects)"
    for name in ("torch", "batches", "combine"):
        t = state["rng"].get(name)
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.ndim != 1:
            return f"rng.{name}: expected a 1-D uint8 tensor (a generator state)"
    for name, stream in state["streams"].items():
        if not isinstance(stream, dict) or not isinstance(stream.get("passes_started"), int) \
                or not isinstance(stream.get("queue"), list) \
                or not all(isinstance(b, list) and all(isinstance(i, int) and i >= 0 for i in b) for b in stream["queue"]):
            return f"streams.{name}: expected a queue of batches of row numbers and passes_started"
    for key in ("loss_sums", "loss_counts", "best_metrics"):
        if not all(isinstance(v, NUMBER) for v in state[key].values()):
            return f"{key}: expected numbers"
    return None


def read_trainer_state(folder: Path) -> dict:
    """The state `write_trainer_state` wrote; anything missing, unreadable or of the wrong shape is a
    `CheckpointError` naming the file."""
    js, st = folder / "trainer_state.json", folder / "trainer_state.safetensors"
    for f in (js, st):
        if not f.is_file():
            raise CheckpointError(f"{f}: missing, cannot resume from {folder}")
    try:
        plain = json.loads(js.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or not UTF-8
        raise CheckpointError(f"{js}: unreadable trainer state ({' '.join(str(e).split())[:200]})") from None
    tensors = read_safetensors(st)
    try:
        state = _join_tensors(plain, tensors)
    except KeyError as e:
        raise CheckpointError(f"{js}: refers to tensor {e.args[0]!r}, which {st.name} does not hold") from None
    except RecursionError:
        raise CheckpointError(f"{js}: nested too deeply to be a trainer state") from None
    problem = _state_problem(state)
    if problem:
        raise CheckpointError(f"{js}: not a trainer state minbert wrote ({problem})")
    return state
