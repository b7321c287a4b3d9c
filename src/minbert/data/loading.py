"""Find the data directory and turn a task split into an encoded set, logging the bad-row report."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from ..tasks import Task
from ..tokenizer import Tokenizer
from .batching import EncodedSet, encode_examples
from ..errors import DataError
from .readers import Example

REPO_ROOT = Path(__file__).resolve().parents[3]


def resolve_data_dir(cli_value: str | None = None, config_value: str | None = None) -> Path:
    """--data-dir, else the config's data.dir, else $MINBERT_DATA_DIR, else ../shared/data beside the repository."""
    for candidate in (cli_value, config_value, os.environ.get("MINBERT_DATA_DIR")):
        if candidate:
            path = Path(candidate).expanduser()
            break
    else:
        path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        raise DataError(f"{path}: data directory not found (set it with --data-dir DIR or MINBERT_DATA_DIR)")
    return path


def read_split(task: Task, split: str, data_dir: Path, strict: bool, log: Callable[[str], None],
               limit: int | None = None, seed: int = 0, fraction: float | None = None) -> list[Example]:
    """Read and report one split; `limit` (or `fraction` of the rows) keeps a seeded random subset of a
    training split, or the first rows of another."""
    examples, report = task.read(data_dir, split, strict)
    log(report.summary())
    setting = f"data.{split}_limit"
    if fraction is not None:
        limit = max(1, round(fraction * len(examples)))
        setting = f"data.{split}_fraction {fraction:g}"
    if limit is not None and limit < len(examples):
        if split == "train":
            keep = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
            examples = [examples[i] for i in keep.tolist()]
        else:
            examples = examples[:limit]
        log(f"  using {limit} of its rows ({setting})")
    if not examples:
        raise DataError(f"{report.file}: no usable rows")
    return examples


def load_split(task: Task, split: str, data_dir: Path, tokenizer: Tokenizer, joint: bool, strict: bool,
               log: Callable[[str], None], limit: int | None = None, seed: int = 0,
               fraction: float | None = None) -> EncodedSet:
    """`read_split`, tokenised (one joint input per pair, or each sentence alone)."""
    return encode_examples(read_split(task, split, data_dir, strict, log, limit, seed, fraction), tokenizer, joint)
