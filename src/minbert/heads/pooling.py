"""Pooling: token states (batch, length, hidden) and the attention mask -> one vector per input.

Mask-aware: padded positions never change the result. `cls+mean` concatenates the two (twice as wide).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..settings import names


def pool_cls(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]


def pool_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def pool_max(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(1)


def pool_cls_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.cat([pool_cls(hidden, mask), pool_mean(hidden, mask)], dim=-1)


POOLING: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = names("model.pooling", {
    "cls": pool_cls, "mean": pool_mean, "max": pool_max, "cls+mean": pool_cls_mean,
})
POOLED_WIDTH: dict[str, int] = {"cls": 1, "mean": 1, "max": 1, "cls+mean": 2}  # in units of the hidden size
