"""Pair encoding: how a sentence pair reaches the head.

- `cross`: one joint input `[CLS] a [SEP] b [SEP]`, one encoder pass (Devlin et al. 2019).
- `siamese`: each sentence encoded separately by the shared encoder into u and v, then a feature
  vector from any of u, v, |u - v|, u * v (Reimers & Gurevych 2019, Sentence-BERT).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..settings import names

PAIR_ENCODINGS = tuple(names("model.pair_encoding", ("cross", "siamese")))

PAIR_FEATURES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = names("model.features", {
    "u": lambda u, v: u,
    "v": lambda u, v: v,
    "abs_diff": lambda u, v: (u - v).abs(),
    "product": lambda u, v: u * v,
})


def pair_features(u: torch.Tensor, v: torch.Tensor, names: list[str]) -> torch.Tensor:
    return torch.cat([PAIR_FEATURES[n](u, v) for n in names], dim=-1)
