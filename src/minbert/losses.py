"""Training losses, chosen per task by `loss` in its head settings (None: the task's own).

Each takes the head's output (a `HeadOutput`: the value in task units, and the cosine for cosine heads),
the gold labels and the task.
- `ce` (SST-5, CFIMDB), `bce` (paraphrase logit), `mse` (STS score): the tasks' defaults.
- `cosent` (Su 2022, CoSENT): for every pair (i, j) in the batch with gold_i > gold_j, penalise the
  prediction ranking them the other way: log(1 + sum exp(lambda * (s_j - s_i))), s = score / 5, lambda = 20.
- `cosine_embedding` (the seeds' CosineEmbeddingLoss, Siamese cosine heads only): 1 - cos for a positive
  pair, max(0, cos - margin) for a negative one, margin 0; paraphrase pairs are positive when duplicates,
  STS pairs when their gold score is at least half the scale (2.5): the seed reports give no mapping
  (the task kind's `similar`). The cosine is the one behind the head's value: with `cosine_scale: relu`,
  max(cos, 0), so a positive pair at cos < 0 gets no gradient.
- `ce_emd` (SST-5's classes are ordered: very negative ... very positive): cross-entropy plus the squared
  Earth Mover's Distance between the predicted class distribution and the gold class (Hou, Yu & Samaras 2016):
  sum_k (P(y <= k) - 1[gold <= k])^2, which costs a prediction more the farther its mass sits from the gold
  class; cross-entropy alone treats "positive" for "very positive" like "very negative".
- `ce_smooth` (SST-5; Szegedy et al. 2016, label smoothing): cross-entropy against the gold class given
  1 - eps of the mass and the other eps spread evenly over all classes, eps = 0.1: the loss is least at that
  target, not at a one-hot prediction, so the head is never pushed to certainty.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .settings import names

COSENT_SCALE = 20.0
LABEL_SMOOTHING = 0.1


def cross_entropy(out, labels, task) -> torch.Tensor:
    return F.cross_entropy(out.value.float(), labels.long())


def binary_cross_entropy(out, labels, task) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out.value.float(), labels.float())


def mean_squared_error(out, labels, task) -> torch.Tensor:
    return F.mse_loss(out.value.float(), labels.float())


def cosent(out, labels, task) -> torch.Tensor:
    s = task.kind.unit(out.value.float()) * COSENT_SCALE
    gold = labels.float()
    diff = s.unsqueeze(0) - s.unsqueeze(1)  # diff[i, j] = s_j - s_i
    ranked = gold.unsqueeze(1) > gold.unsqueeze(0)  # gold_i > gold_j
    terms = diff[ranked]
    return torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)


def cross_entropy_emd(out, labels, task) -> torch.Tensor:
    logits = out.value.float()
    gold = F.one_hot(labels.long(), logits.shape[-1]).float()
    emd = (torch.softmax(logits, -1).cumsum(-1) - gold.cumsum(-1)).pow(2).sum(-1).mean()
    return F.cross_entropy(logits, labels.long()) + emd


def cross_entropy_smoothed(out, labels, task) -> torch.Tensor:
    return F.cross_entropy(out.value.float(), labels.long(), label_smoothing=LABEL_SMOOTHING)


def cosine_embedding(out, labels, task) -> torch.Tensor:
    cos = out.cosine.float()
    positive = task.kind.similar(labels)
    return torch.where(positive, 1 - cos, cos.clamp(min=0.0)).mean()


@dataclass(frozen=True)
class Loss:
    kinds: tuple[str, ...]  # names of the task kinds it applies to (kinds.py)
    needs_cosine: bool  # only for heads with similarity: cosine
    fn: Callable[..., torch.Tensor]


LOSSES: dict[str, Loss] = names("model.loss", {
    "ce": Loss(("classify",), False, cross_entropy),
    "bce": Loss(("binary",), False, binary_cross_entropy),
    "mse": Loss(("regress",), False, mean_squared_error),
    "cosent": Loss(("regress",), False, cosent),
    "cosine_embedding": Loss(("binary", "regress"), True, cosine_embedding),
    "ce_emd": Loss(("classify",), False, cross_entropy_emd),
    "ce_smooth": Loss(("classify",), False, cross_entropy_smoothed),
})
