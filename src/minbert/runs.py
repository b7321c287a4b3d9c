"""A finished run directory: its config and best checkpoint, checked as untrusted files and loaded back for
evaluation and prediction."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, CheckpointError
from .schema import Config, load_config
from .model import MultitaskModel, build_model
from .tokenizer import Tokenizer


def check_saved_model(cfg: Config, config_file: Path, folder: Path) -> None:
    """A saved model folder fits its config: encoder weights, vocabulary and heads by their headers, and
    `model.max_length` within the folder's position embeddings; a `CheckpointError` naming the file if not."""
    from .errors import ConfigError
    from .preflight import check_backbone, check_model_folder

    try:
        _, encoder_config = check_backbone(str(folder), cfg.model.max_length, key=None)
    except ConfigError as e:
        raise CheckpointError(f"{config_file}: {e}") from None
    check_model_folder(cfg, folder, encoder_config)


def usable_device(name: str):
    """The run's device if this machine has it, else what `auto` picks (a GPU run evaluated on a laptop)."""
    from .errors import ConfigError
    from .preflight import check_device

    try:
        return check_device(name)
    except ConfigError:
        return check_device("auto")


def load_run_config(path: Path) -> Config:
    """The config.yaml of a run folder, read back as untrusted: any problem is a `CheckpointError` naming it."""
    try:
        return load_config(path, saved=True)
    except ConfigError as e:
        raise CheckpointError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None


def check_run(run_dir: str | Path) -> Config:
    """A finished run's config, its `best/` checked against it (read as untrusted, nothing loaded)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.yaml)")
    best = run_dir / "best"
    if not best.is_dir():
        raise CheckpointError(f"{best}: no best checkpoint (did training finish an epoch?)")
    cfg = load_run_config(run_dir / "config.yaml")
    check_saved_model(cfg, run_dir / "config.yaml", best)
    return cfg


def load_run(run_dir: str | Path) -> tuple[Config, MultitaskModel, Tokenizer]:
    """A finished run's best model, evaluation-ready. The caller's random stream is left where it was: building the
    model draws init weights (then overwritten), which would otherwise move a training run's dropout masks."""
    cfg = check_run(run_dir)
    with torch.random.fork_rng(devices=[]):
        model, tokenizer = build_model(cfg, backbone=str(Path(run_dir) / "best"))
    model.load_heads(Path(run_dir) / "best")
    model.to(usable_device(cfg.train.device)).eval()
    return cfg, model, tokenizer


def tasks_with_files(tasks: dict, data_path: Path, split: str, log=lambda line: None) -> list[str]:
    """The tasks (name -> Task) whose `split` file is there; the others are logged as skipped. None: a `DataError`.
    A task read from a `datasets` source counts as there when it has the split."""
    from .errors import DataError

    def there(t) -> bool:
        return t.has_split(split) and (t.spec.files is None or t.path(data_path, split).is_file())

    present = [n for n, t in tasks.items() if there(t)]
    for n, t in tasks.items():
        if n not in present:
            log(f"{t.path(data_path, split) if t.has_split(split) else f'no {split} split'} not found: task {n} skipped")
    if not present:
        raise DataError(f"{data_path}: none of the {split} files of this run's tasks {tasks} is there")
    return present


@dataclass
class TaskOutputs:
    """One task split as a run sees it: the rows, the head's outputs, probabilities, predictions, gold labels."""

    ids: list[str]
    texts: list[tuple[str, ...]]
    outputs: np.ndarray
    probs: np.ndarray
    preds: np.ndarray
    labels: np.ndarray | None


def run_outputs(cfg: Config, model: MultitaskModel, tokenizer: Tokenizer, data_path: Path, split: str,
                log=lambda line: None) -> dict[str, TaskOutputs]:
    """Every task of a loaded run on `split` (dev or test), rows in file order (dev_limit applies to dev)."""
    from .data.batching import encode_examples
    from .data.loading import read_split
    from .evaluate import predict_set

    device = next(model.parameters()).device
    out = {}
    for name, task in model.tasks.items():
        if not task.has_split(split):
            continue
        examples = read_split(task, split, data_path, cfg.data.strict, log, cfg.data.dev_limit if split == "dev" else None)
        data = encode_examples(examples, tokenizer, model.joint_input(name))
        outputs, preds = predict_set(model, name, data, tokenizer, cfg.eval.batch_size, device)
        out[name] = TaskOutputs(data.ids, [e.texts for e in examples], outputs, task.kind.probabilities(outputs),
                                preds, None if data.labels is None else data.labels.numpy())
    return out
