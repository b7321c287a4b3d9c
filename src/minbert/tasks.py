"""The task table: each task declared once (files, inputs, label, head size, loss, metric, prediction file).

Training, evaluation, prediction files and reports loop over this table; adding a task is one entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.stats import pearsonr

from .data.readers import Example, LabelParser, ReadReport, check_file, float_label, int_label, read_examples
from .kinds import Binary, Classify, Regress, TaskKind


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
    kind: TaskKind  # what the head's output means: class logits, one logit, or a score (kinds.py)
    metric_name: str
    metric: Callable[[np.ndarray, np.ndarray], float]
    prediction_header: str
    title: str  # in tables and reports, e.g. "SST-5"
    column: str  # a table column of its dev metric, e.g. "SST acc"
    class_names: tuple[str, ...] = ()  # classifiers: what each class index means

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


TASKS: dict[str, Task] = {
    "sst": Task("sst", "ids-sst", ("sentence",), "sentiment", int_label(0, 4), 5, Classify(),
                "accuracy", accuracy, "Predicted_Sentiment", "SST-5", "SST acc",
                ("0 neg", "1 some neg", "2 neutral", "3 some pos", "4 pos")),
    "para": Task("para", "quora", ("sentence1", "sentence2"), "is_duplicate", int_label(0, 1), 1, Binary(),
                 "accuracy", accuracy, "Predicted_Is_Paraphrase", "Quora paraphrase", "Para acc",
                 ("0 different", "1 paraphrase")),
    "sts": Task("sts", "sts", ("sentence1", "sentence2"), "similarity", float_label(0.0, 5.0), 1, Regress(5.0),
                "pearson", pearson, "Predicted_Similiary", "STS", "STS r"),
    "cfimdb": Task("cfimdb", "ids-cfimdb", ("sentence",), "sentiment", int_label(0, 1), 2, Classify(),
                   "accuracy", accuracy, "Predicted_Sentiment", "CFIMDB", "CFIMDB acc",
                   ("0 negative", "1 positive")),
}


# seed report 000's sequential baseline: SST, then STS, then Quora (train.schedule.order's default)
SEQUENTIAL_ORDER = ("sst", "sts", "para")


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[name]


def overall_score(metrics: dict[str, float]) -> float | None:
    """The course's score, (sst_acc + para_acc + (sts_r + 1) / 2) / 3, when all three tasks are present."""
    if not all(k in metrics for k in ("sst", "para", "sts")):
        return None
    return (metrics["sst"] + metrics["para"] + (metrics["sts"] + 1) / 2) / 3
