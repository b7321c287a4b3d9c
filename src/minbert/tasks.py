"""The task table: each task declared once (files, inputs, label, head size, loss, metric, prediction file).

Training, evaluation, prediction files and reports loop over this table; adding a task is one entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.stats import pearsonr

from .data.readers import Example, LabelParser, ReadReport, check_file, float_label, int_label, read_examples


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(pred == gold))


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    if np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0  # undefined for a constant prediction; count it as no correlation
    return float(pearsonr(pred, gold).statistic)


@dataclass(frozen=True)
class Task:
    name: str
    file_prefix: str  # files are {prefix}-{train,dev,test-student}.csv
    text_columns: tuple[str, ...]
    label_column: str
    parse_label: LabelParser
    num_outputs: int  # width of the head's output
    kind: str  # "classify" (class logits), "binary" (one logit), "regress" (score in [0, max_score]); losses.py
    metric_name: str
    metric: Callable[[np.ndarray, np.ndarray], float]
    prediction_header: str
    max_score: float = 1.0

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    def path(self, data_dir: Path, split: str) -> Path:
        return data_dir / f"{self.file_prefix}-{'test-student' if split == 'test' else split}.csv"

    def read(self, data_dir: Path, split: str, strict: bool = False) -> tuple[list[Example], ReadReport]:
        labeled = split != "test"
        return read_examples(self.path(data_dir, split), self.text_columns,
                             self.label_column if labeled else None, self.parse_label, strict)

    def check_file(self, data_dir: Path, split: str) -> None:
        """The split's file is present, readable, UTF-8 and has the columns `read` needs (its rows are not read)."""
        check_file(self.path(data_dir, split), self.text_columns, self.label_column if split != "test" else None)

    # ---- outputs: raw head output -> loss, predictions ----
    def output(self, raw: torch.Tensor) -> torch.Tensor:
        """The head's raw output in task units: class logits, a paraphrase logit, or a score in [0, max_score]."""
        if self.kind == "classify":
            return raw
        if self.kind == "binary":
            return raw.squeeze(-1)
        return torch.sigmoid(raw.squeeze(-1)) * self.max_score

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """Predictions as written to files: class index, 0/1, or a score."""
        if self.kind == "classify":
            return out.argmax(-1)
        if self.kind == "binary":
            return (out > 0).long()
        return out

    def format_value(self, value: float | int) -> str:
        return f"{float(value):.4f}" if self.kind == "regress" else str(int(value))


TASKS: dict[str, Task] = {
    "sst": Task("sst", "ids-sst", ("sentence",), "sentiment", int_label(0, 4), 5, "classify",
                "accuracy", accuracy, "Predicted_Sentiment"),
    "para": Task("para", "quora", ("sentence1", "sentence2"), "is_duplicate", int_label(0, 1), 1, "binary",
                 "accuracy", accuracy, "Predicted_Is_Paraphrase"),
    "sts": Task("sts", "sts", ("sentence1", "sentence2"), "similarity", float_label(0.0, 5.0), 1, "regress",
                "pearson", pearson, "Predicted_Similiary", max_score=5.0),
    "cfimdb": Task("cfimdb", "ids-cfimdb", ("sentence",), "sentiment", int_label(0, 1), 2, "classify",
                   "accuracy", accuracy, "Predicted_Sentiment"),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[name]


def overall_score(metrics: dict[str, float]) -> float | None:
    """The course's score, (sst_acc + para_acc + (sts_r + 1) / 2) / 3, when all three tasks are present."""
    if not all(k in metrics for k in ("sst", "para", "sts")):
        return None
    return (metrics["sst"] + metrics["para"] + (metrics["sts"] + 1) / 2) / 3
