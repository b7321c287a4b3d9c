"""Task heads: pooling of token states, pair encoding (cross-encoder or Siamese), and the output layer.

Each technique is a named entry of a small registry, chosen from the config:
pooling `cls | mean | max` (mask-aware), pair encoding `cross` ([CLS] a [SEP] b [SEP], one pass;
Devlin et al. 2019) or `siamese` (shared encoder, features (u, v, |u-v|); Reimers & Gurevych 2019).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .encoder import BertModel


def pool_cls(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]


def pool_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def pool_max(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(1)


POOLING: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cls": pool_cls, "mean": pool_mean, "max": pool_max,
}

# pair encoding -> (whether the pair is tokenised as one joint input, feature width in units of hidden size)
PAIR_ENCODINGS: dict[str, tuple[bool, int]] = {"cross": (True, 1), "siamese": (False, 3)}


class TaskHead(nn.Module):
    """Encode the task's input(s), pool, combine a pair's vectors if Siamese, dropout, linear."""

    def __init__(self, hidden_size: int, num_outputs: int, pooling: str, pair_encoding: str | None, dropout: float):
        super().__init__()
        if pooling not in POOLING:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {sorted(POOLING)}")
        if pair_encoding is not None and pair_encoding not in PAIR_ENCODINGS:
            raise ValueError(f"unknown pair_encoding {pair_encoding!r}; choose from {sorted(PAIR_ENCODINGS)}")
        self.pool = POOLING[pooling]
        self.pair_encoding = pair_encoding
        width = PAIR_ENCODINGS[pair_encoding][1] if pair_encoding else 1
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(width * hidden_size, num_outputs)

    @property
    def joint_input(self) -> bool:
        return self.pair_encoding is None or PAIR_ENCODINGS[self.pair_encoding][0]

    def features(self, encoder: BertModel, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        vectors = []
        for x in inputs:
            hidden = encoder(x["input_ids"], x["attention_mask"], x["token_type_ids"]).last_hidden_state
            vectors.append(self.pool(hidden, x["attention_mask"]))
        if len(vectors) == 1:
            return vectors[0]
        u, v = vectors
        return torch.cat([u, v, (u - v).abs()], dim=-1)

    def forward(self, encoder: BertModel, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        return self.out(self.dropout(self.features(encoder, inputs)))
