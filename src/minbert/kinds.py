"""Kinds of task output: what a head's numbers mean, declared once for each kind.

A kind turns a head's raw output into the task's units, reads predictions and probabilities off them,
names its default loss and measures how far two outputs are apart (SMART's divergence). Each task (tasks.py)
has one kind, made from its declared `kind`: classes, binary or score.
- `Classify`: class logits; prediction = argmax, probabilities = softmax, cross-entropy.
- `Binary`: one logit; prediction = logit > 0, probability = sigmoid, binary cross-entropy.
- `Regress`: a score in [min_score, max_score] (sigmoid of the raw output, scaled); mean squared error.

For distillation a kind also says what a teacher's output teaches (`soft_target`: class probabilities or a
probability at temperature T, or the score itself) and how far a student is from it (`soft_loss`: the
cross-entropy against those probabilities at the same T, times T^2 so its gradients keep their size as T
grows (Hinton et al. 2015), or the squared error to the score). At T = 1 the soft loss is the task's own
loss with the teacher's target in place of the gold label, so mixing the two losses with weights lambda and
1 - lambda has the gradient of the one loss against the mixed target (BAM!'s teacher annealing).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def _symmetric_kl(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """KL(p||q) + KL(q||p) from log-probabilities over the last dimension, averaged over the batch."""
    return ((lp.exp() * (lp - lq)).sum(-1) + (lq.exp() * (lq - lp)).sum(-1)).mean()


class TaskKind(ABC):
    name: str
    default_loss: str

    @abstractmethod
    def output(self, raw: torch.Tensor) -> torch.Tensor:
        """The head's raw output (batch, outputs) in the task's units."""

    @abstractmethod
    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """Predictions as written to the prediction files."""

    @abstractmethod
    def probabilities(self, out: np.ndarray) -> np.ndarray:
        """What an ensemble averages: class probabilities, a probability, or the score itself."""

    @abstractmethod
    def from_probabilities(self, probs: np.ndarray) -> np.ndarray:
        """Predictions from (averaged) probabilities."""

    @abstractmethod
    def divergence(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """A symmetric distance between two batches of outputs in task units, averaged over the batch."""

    @abstractmethod
    def soft_target(self, out: torch.Tensor, temperature: float) -> torch.Tensor:
        """A teacher's outputs (task units) as the target a student learns from, averageable over teachers."""

    @abstractmethod
    def soft_loss(self, out: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
        """The student's outputs (task units) against `soft_target`s, averaged over the batch."""

    def probability_columns(self, num_outputs: int) -> list[str]:
        """The columns `minbert predict` gives `probabilities` under (a classifier's are named by the task)."""
        return []


@dataclass(frozen=True)
class Classify(TaskKind):
    name: str = "classify"
    default_loss: str = "ce"

    def output(self, raw):
        return raw

    def predict(self, out):
        return out.argmax(-1)

    def probabilities(self, out):
        return torch.softmax(torch.as_tensor(np.asarray(out, dtype=np.float32)), -1).numpy()

    def from_probabilities(self, probs):
        return probs.argmax(-1)

    def divergence(self, p, q):
        return _symmetric_kl(F.log_softmax(p.float(), -1), F.log_softmax(q.float(), -1))

    def soft_target(self, out, temperature):
        return torch.softmax(out.float() / temperature, -1)

    def soft_loss(self, out, target, temperature):
        return -(target * F.log_softmax(out.float() / temperature, -1)).sum(-1).mean() * temperature ** 2


@dataclass(frozen=True)
class Binary(TaskKind):
    name: str = "binary"
    default_loss: str = "bce"

    def output(self, raw):
        return raw.squeeze(-1)

    def predict(self, out):
        return (out > 0).long()

    def probabilities(self, out):
        return torch.sigmoid(torch.as_tensor(np.asarray(out, dtype=np.float32))).numpy()

    def from_probabilities(self, probs):
        return (probs > 0.5).astype(np.int64)

    def probability_columns(self, num_outputs):
        return ["probability"]

    def divergence(self, p, q):
        def bernoulli(x):  # log-probabilities of (negative, positive)
            return torch.stack([F.logsigmoid(-x.float()), F.logsigmoid(x.float())], -1)
        return _symmetric_kl(bernoulli(p), bernoulli(q))

    def soft_target(self, out, temperature):
        return torch.sigmoid(out.float() / temperature)

    def soft_loss(self, out, target, temperature):
        return F.binary_cross_entropy_with_logits(out.float() / temperature, target) * temperature ** 2

    def similar(self, labels):
        """Which gold labels count as a similar pair (the cosine-embedding loss, pair kinds only)."""
        return labels.float() >= 0.5


@dataclass(frozen=True)
class Regress(TaskKind):
    max_score: float = 1.0
    min_score: float = 0.0
    name: str = "regress"
    default_loss: str = "mse"

    def scaled(self, unit):
        """A value in [0, 1] (a sigmoid, a cosine) as a score in [min_score, max_score]."""
        return unit * (self.max_score - self.min_score) + self.min_score

    def unit(self, score):
        """A score as its place in [0, 1] along the range."""
        return (score - self.min_score) / (self.max_score - self.min_score)

    def output(self, raw):
        return self.scaled(torch.sigmoid(raw.squeeze(-1)))

    def predict(self, out):
        return out

    def probabilities(self, out):
        return np.asarray(out, dtype=np.float32)

    def from_probabilities(self, probs):
        return probs

    def divergence(self, p, q):
        return F.mse_loss(p.float(), q.float())

    def soft_target(self, out, temperature):
        return out.float()  # a score has no temperature

    def soft_loss(self, out, target, temperature):
        return F.mse_loss(out.float(), target)

    def similar(self, labels):
        """Which gold labels count as a similar pair: at least half the scale (the cosine-embedding loss)."""
        return labels.float() >= (self.min_score + self.max_score) / 2


KINDS = {"classify": Classify, "binary": Binary, "regress": Regress}
