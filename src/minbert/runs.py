"""A finished run directory: its config and best checkpoint, loaded back for evaluation and prediction."""
from __future__ import annotations

from pathlib import Path

from .checkpoints import CheckpointError
from .config import Config, load_config
from .model import MultitaskModel
from .train import build_model, pick_device
from .tokenizer import Tokenizer


def load_run(run_dir: str | Path) -> tuple[Config, MultitaskModel, Tokenizer]:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.yaml)")
    best = run_dir / "best"
    if not best.is_dir():
        raise CheckpointError(f"{best}: no best checkpoint (did training finish an epoch?)")
    cfg = load_config(run_dir / "config.yaml")
    model, tokenizer = build_model(cfg, backbone=str(best))
    model.load_heads(best)
    model.to(pick_device(cfg.train.device)).eval()
    return cfg, model, tokenizer
