"""The metrics a task may declare, by name: scikit-learn's and scipy's, each with the kinds of output it fits.

A task's metrics take its predictions and gold labels as numpy arrays: class indices for `classify` and
`binary` tasks (index 1 is the positive class of a binary task), scores for `regress` tasks. Pearson and
Spearman correlations of a constant prediction are undefined; they count as 0 (no correlation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(accuracy_score(gold, pred))


def f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """F1 of the positive class (index 1)."""
    return float(f1_score(gold, pred, average="binary", pos_label=1, zero_division=0.0))


def macro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(f1_score(gold, pred, average="macro", zero_division=0.0))


def mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(matthews_corrcoef(gold, pred))


def _constant(pred: np.ndarray, gold: np.ndarray) -> bool:
    return len(pred) < 2 or np.std(pred) == 0 or np.std(gold) == 0


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    return 0.0 if _constant(pred, gold) else float(pearsonr(pred, gold).statistic)


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    return 0.0 if _constant(pred, gold) else float(spearmanr(pred, gold).statistic)


@dataclass(frozen=True)
class Metric:
    fn: Callable[[np.ndarray, np.ndarray], float]
    kinds: tuple[str, ...]  # the kinds of output (kinds.py) it measures
    two_classes: bool = False  # needs exactly two classes (F1 of the positive class)
    title: str = ""


METRICS: dict[str, Metric] = {
    "accuracy": Metric(accuracy, ("classify", "binary"), title="acc"),
    "f1": Metric(f1, ("classify", "binary"), two_classes=True, title="F1"),
    "macro_f1": Metric(macro_f1, ("classify", "binary"), title="macro F1"),
    "mcc": Metric(mcc, ("classify", "binary"), title="MCC"),
    "pearson": Metric(pearson, ("regress",), title="r"),
    "spearman": Metric(spearman, ("regress",), title="rho"),
}
DEFAULT_METRIC = {"classify": "accuracy", "binary": "accuracy", "regress": "pearson"}


def metric_problem(name: str, kind: str, classes: int | None) -> str | None:
    """Why metric `name` cannot measure a task of this kind (with this many classes), or None."""
    if name not in METRICS:
        return f"unknown metric {name!r} (known: {', '.join(METRICS)})"
    metric = METRICS[name]
    if kind not in metric.kinds:
        return f"metric {name} does not fit a task of kind {kind} (it measures {' or '.join(metric.kinds)} tasks)"
    if metric.two_classes and kind == "classify" and classes is not None and classes != 2:
        return f"metric {name} needs two classes (the F1 of the positive one); this task has {classes}"
    return None
