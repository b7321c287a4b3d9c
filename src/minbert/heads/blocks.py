"""Layers a head may stack: a CNN over the token states, and an MLP.

- `ConvBlock`: Conv1d over time (kernel k, as many filters as the hidden size, 'same' padding), GELU,
  optionally added back to its input (residual, He et al. 2016); padded positions are zeroed before the
  convolution so they never leak into real ones. With zero weights and a residual it is the identity.
- `mlp`: n hidden layers (Linear, GELU, dropout) of a given width, as in the seed reports' MLP[n] heads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Module):
    def __init__(self, hidden_size: int, kernel: int, residual: bool):
        super().__init__()
        assert kernel % 2 == 1, f"cnn_kernel must be odd to keep the sequence length (config validation), got {kernel}"
        self.conv = nn.Conv1d(hidden_size, hidden_size, kernel, padding=kernel // 2)
        self.residual = residual

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        y = F.gelu(self.conv((hidden * m).transpose(1, 2)).transpose(1, 2))
        return hidden + y if self.residual else y


def mlp(width_in: int, hidden: int, layers: int, dropout: float) -> tuple[nn.Module, int]:
    """The MLP and the width it outputs (`width_in` unchanged when `layers` is 0)."""
    parts: list[nn.Module] = []
    width = width_in
    for _ in range(layers):
        parts += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*parts), width
