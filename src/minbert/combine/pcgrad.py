"""`pcgrad` (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"), minbert's own: each task's gradient on
the shared encoder comes from its own backward pass (its own batch, no retain_graph); for each task i, in a
random order over the others j, if g_i . g_j < 0 then g_i -= (g_i . g_j / |g_j|^2) g_j; the projected gradients
are summed.

It is computed from the Gram matrix G_ij = g_i . g_j: every projected g_i is g_i minus a combination of the
originals, so its coefficients follow from G alone and the sum is sum_j w_j g_j. (torchjd's PCGrad,
`torchjd-pcgrad` in aggregators.py, gives the same weights for the same orders.)"""
from __future__ import annotations

import torch

from .base import CombineSettings, Combiner, combiner


def pcgrad_weights(gram: torch.Tensor, orders: list[list[int]]) -> torch.Tensor:
    """Weights w with sum_i PCGrad(g_i) = sum_j w_j g_j; `orders[i]` is the order in which i meets the others."""
    n = gram.shape[0]
    coef = torch.zeros(n, n, dtype=gram.dtype)  # projected g_i = g_i - sum_j coef[i, j] g_j
    for i in range(n):
        for j in orders[i]:
            dot = gram[i, j] - coef[i] @ gram[:, j]  # (current g_i) . g_j
            if dot < 0 and gram[j, j] > 0:
                coef[i, j] += dot / gram[j, j]
    return 1.0 - coef.sum(0)


@combiner("pcgrad", CombineSettings)
class PCGrad(Combiner):
    reduce_each_task = True

    def needs_capture(self) -> bool:
        return True

    def combine(self, gram: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        n = gram.shape[0]
        orders = []
        for i in range(n):
            others = [j for j in range(n) if j != i]
            perm = torch.randperm(len(others), generator=self.generator).tolist()
            orders.append([others[k] for k in perm])
        return pcgrad_weights(gram, orders)
