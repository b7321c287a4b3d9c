"""Find the data directory and turn a task split into an encoded set, logging the bad-row report."""
from __future__ import annotations

import hashlib
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
EVAL_SUBSET_SEED = 0  # data.dev_limit's rows: one random subset of each file, the same for every run and train.seed
FOLD_SEED = 1  # data.folds: one random partition of each training file, the same for every run and train.seed


def rows_fingerprint(ids: list[str]) -> str:
    """Rows and a hash of their ids: what a checkpoint records of its training set (a resume, a teacher compare it)."""
    return f"{len(ids)} rows, ids {hashlib.sha1(' '.join(ids).encode()).hexdigest()[:12]}"


def fold_of_rows(n: int, folds: int) -> torch.Tensor:
    """Each of `n` rows' fold (0 .. folds-1): a random partition drawn with FOLD_SEED, folds as equal as can be."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(FOLD_SEED))
    fold = torch.empty(n, dtype=torch.long)
    fold[order] = torch.arange(n) % folds
    return fold


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
               limit: int | None = None, seed: int = 0, fraction: float | None = None,
               held_out: tuple[int, int] | None = None) -> list[Example]:
    """Read and report one split; `held_out` = (folds, fold): a training split without that fold's rows; `limit` (or `fraction` of the rows) keeps a random subset in file order: of a
    training split drawn with `seed` (train.seed), of another split always the same rows (`EVAL_SUBSET_SEED`),
    so every run is scored on the same dev rows. Not the first rows: the course's dev files are ordered (SST
    dev's first 500 rows hold 6 of its 139 class-0 sentences)."""
    examples, report = task.read(data_dir, split, strict)
    log(report.summary())
    if held_out is not None and split == "train":
        folds, fold = held_out
        keep_rows = (fold_of_rows(len(examples), folds) != fold).nonzero().flatten().tolist()
        examples = [examples[i] for i in keep_rows]
        log(f"  without fold {fold} of {folds} (data.fold): {len(examples)} rows")
    setting = f"data.{split}_limit"
    if fraction is not None:
        limit = max(1, round(fraction * len(examples)))
        setting = f"data.{split}_fraction {fraction:g}"
    if limit is not None and limit < len(examples):
        draw = torch.Generator().manual_seed(seed if split == "train" else EVAL_SUBSET_SEED)
        keep = torch.randperm(len(examples), generator=draw)[:limit].sort().values
        examples = [examples[i] for i in keep.tolist()]
        log(f"  using a random {limit} of its rows ({setting}{'' if split == 'train' else ', the same rows in every run'})")
    if not examples:
        raise DataError(f"{report.file}: no usable rows")
    return examples


def load_split(task: Task, split: str, data_dir: Path, tokenizer: Tokenizer, joint: bool, strict: bool,
               log: Callable[[str], None], limit: int | None = None, seed: int = 0,
               fraction: float | None = None, held_out: tuple[int, int] | None = None) -> EncodedSet:
    """`read_split`, tokenised (one joint input per pair, or each sentence alone)."""
    return encode_examples(read_split(task, split, data_dir, strict, log, limit, seed, fraction, held_out), tokenizer,
                           joint)
