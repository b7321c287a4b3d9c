"""Combining the tasks' gradients of one step. Chosen by `train.combine.name`.

- `sum`: the gradient of the summed losses (each task's backward adds into .grad).
- `weighted`: the gradient of sum_t lambda_t * loss_t.
- `pcgrad` (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"): each task's gradient on the
  shared encoder comes from its own backward pass (its own batch, no retain_graph); for each task i,
  in a random order over the others j, if g_i . g_j < 0 then g_i -= (g_i . g_j / |g_j|^2) g_j; the
  projected gradients are summed. Heads keep their own gradients.

PCGrad is computed from the Gram matrix G_ij = g_i . g_j: every projected g_i is g_i minus a
combination of the originals, so its coefficients follow from G alone and the sum is
sum_j w_j g_j. Memory: one flattened gradient per task, nothing else. The same Gram matrix gives
the pairwise cosines between task gradients, recorded every `log_cosine_every` steps.
"""
from __future__ import annotations

import itertools

import torch


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


def cosines(gram: torch.Tensor, tasks: list[str]) -> dict[str, float]:
    norms = gram.diagonal().clamp(min=1e-30).sqrt()
    return {f"{tasks[i]}/{tasks[j]}": float(gram[i, j] / (norms[i] * norms[j]))
            for i, j in itertools.combinations(range(len(tasks)), 2)}


class Combiner:
    """Receives each task's loss of a step (`backward`), then settles the gradients (`finish`)."""

    def __init__(self, shared: list[torch.nn.Parameter], cfg, seed: int):
        self.shared, self.cfg = shared, cfg
        self.generator = torch.Generator().manual_seed(seed)
        self.capture = False  # capture per-task shared gradients this step (for cosines / pcgrad)
        self.grads: dict[str, torch.Tensor] = {}
        self._carry: torch.Tensor | None = None

    def weight(self, task: str) -> float:
        return 1.0

    def needs_capture(self) -> bool:
        return self.capture

    def begin(self, log_cosines: bool) -> None:
        """Start a step; with gradient accumulation, set aside what earlier steps accumulated."""
        self.capture = log_cosines
        self.grads = {}
        pending = any(p.grad is not None for p in self.shared)
        self._carry = self._take_shared() if self.needs_capture() and pending else None

    def backward(self, task: str, loss: torch.Tensor) -> None:
        (self.weight(task) * loss).backward()
        if self.needs_capture():
            g = self._take_shared()
            self.grads[task] = g + self.grads[task] if task in self.grads else g

    def finish(self) -> dict[str, float] | None:
        """Write the combined shared gradient back; return pairwise cosines if they were asked for."""
        if not self.needs_capture() or not self.grads:
            return None
        tasks = list(self.grads)
        flat = torch.stack([self.grads.pop(t) for t in tasks])
        gram = flat @ flat.T
        combined = self.combine(flat, gram)
        if self._carry is not None:
            combined += self._carry
            self._carry = None
        self._put_shared(combined)
        return cosines(gram, tasks) if self.capture and len(tasks) > 1 else None

    def combine(self, flat: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
        return flat.sum(0)

    # flattened gradient of the shared parameters: taken out of .grad, and put back
    def _take_shared(self) -> torch.Tensor:
        parts = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device)
                 for p in self.shared]
        for p in self.shared:
            p.grad = None
        return torch.cat(parts).float() if parts else torch.zeros(0)

    def _put_shared(self, flat: torch.Tensor) -> None:
        offset = 0
        for p in self.shared:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype).clone()
            offset += n


class Weighted(Combiner):
    def weight(self, task: str) -> float:
        return (self.cfg.weights or {}).get(task, 1.0)


class PCGrad(Combiner):
    def needs_capture(self) -> bool:
        return True

    def combine(self, flat: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
        n = flat.shape[0]
        if n == 1:
            return flat[0]
        orders = []
        for i in range(n):
            others = [j for j in range(n) if j != i]
            perm = torch.randperm(len(others), generator=self.generator).tolist()
            orders.append([others[k] for k in perm])
        w = pcgrad_weights(gram.double().cpu(), orders).to(flat.dtype).to(flat.device)
        return w @ flat


COMBINERS: dict[str, type[Combiner]] = {"sum": Combiner, "weighted": Weighted, "pcgrad": PCGrad}


def build_combiner(cfg, shared: list[torch.nn.Parameter], seed: int) -> Combiner:
    if cfg.name not in COMBINERS:
        raise ValueError(f"unknown combine {cfg.name!r}; choose from {sorted(COMBINERS)}")
    return COMBINERS[cfg.name](shared, cfg, seed)
