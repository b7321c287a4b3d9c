"""An exponential moving average of the weights (`train.ema`): evaluated, kept as `best/` and used for the
predictions in place of the weights the optimizer left, which move with the last batches (Polyak & Juditsky
1992; the `ExponentialMovingAverage` of TensorFlow and timm's model EMA).

After optimizer update n the average moves toward the weights by 1 - d_n, where
d_n = min(decay, (1 + n) / (10 + n)): early on the average follows the weights closely (the pretrained
start is soon forgotten), later it averages over about 1 / (1 - decay) updates. Training itself never sees
the average: `applied()` swaps it into the model for a dev evaluation or a save and swaps the weights back.
The average is part of the run's checkpoint, so a resumed run averages on exactly as before.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.params = list(model.parameters())
        self.average = [p.detach().clone() for p in self.params]

    def rate(self, updates: int) -> float:
        """The weight d_n the average keeps at update `updates` (counted from 1)."""
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, updates: int) -> None:
        """After optimizer update number `updates`: average <- d * average + (1 - d) * weights."""
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - self.rate(updates))

    @contextmanager
    def applied(self):
        """Inside the block the model holds the average; after it, its own weights again (bit for bit)."""
        own = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, a in zip(self.params, self.average):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, w in zip(self.params, own):
                    p.copy_(w)

    def state(self) -> dict:
        return {"decay": self.decay, "average": self.average}

    def load_state(self, state: dict) -> None:
        average = state["average"]
        if len(average) != len(self.average) or any(a.shape != b.shape for a, b in zip(average, self.average)):
            raise ValueError(f"the weight average holds {len(average)} tensors not of this model's shapes")
        for mine, saved in zip(self.average, average):
            mine.copy_(saved)


class NoAverage:
    """`train.ema: null`: the model's own weights are evaluated and saved."""

    def update(self, updates: int) -> None:
        pass

    def applied(self):
        return nullcontext()

    def state(self) -> None:
        return None


def build_average(decay: float | None, model: nn.Module) -> WeightAverage | NoAverage:
    return NoAverage() if decay is None else WeightAverage(model, decay)
