"""The Python API: `minbert.train(...)` trains a run and returns its best dev metrics; `minbert.load(RUN_DIR)`
gives a `Predictor` (predict.py) with `.predict(task, texts)` and `.encode(texts)`.

    import minbert
    metrics = minbert.train(out="runs/x", **{"train.epochs": 1})
    predictor = minbert.load("runs/x")

Overrides are dotted config keys, as with `minbert train --set`, whose values are Python objects.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def default_run_dir(config: str | os.PathLike | None) -> Path:
    """runs/<config file's name>, or runs/default without a config file (as `minbert train`)."""
    return Path("runs") / (Path(config).stem if config else "default")


def train(config: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
          data_dir: str | os.PathLike | None = None, overwrite: bool = False, **overrides: Any) -> dict[str, float]:
    """Train `config` (a YAML file; None: the defaults) with `overrides` (dotted keys, e.g.
    `**{"train.epochs": 1}`) into `out` (default runs/<config name>); returns the best dev metrics.
    An `out` that holds a run is refused (`RunFolderError`) unless `overwrite`, as `minbert train --overwrite`."""
    from .schema import load_config
    from .training.run import train as train_run

    cfg = load_config(config, values={k: _plain(v) for k, v in overrides.items()})
    run_dir = Path(out) if out is not None else default_run_dir(config)
    return train_run(cfg, run_dir, None if data_dir is None else str(data_dir), overwrite=overwrite)


def load(run_dir: str | os.PathLike, batch_size: int | None = None):
    """The run's best checkpoint as a `Predictor`."""
    from .predict import Predictor

    return Predictor.load(run_dir, batch_size)


def _plain(value: Any) -> Any:
    """Paths as strings and tuples as lists, the types a config file would hold."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
