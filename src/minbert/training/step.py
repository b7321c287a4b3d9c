"""One optimizer update, the same in every training loop (the multi-task trainer, MLM pre-training, bench):
unscale the gradients (fp16), clip their norm, skip an update whose loss or gradient is not finite, step
the optimizer and the learning-rate schedule, clear the gradients."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .steplog import learning_rates


@dataclass
class Update:
    stepped: bool  # the optimizer stepped (False: skipped, non-finite)
    grad_norm: float  # the gradient norm before clipping
    lrs: dict[str, float] = field(default_factory=dict)  # the rates this update used, per parameter group name
    overflow: bool = False  # an fp16 overflow: the grad scaler skipped the step and lowered its scale


def optimizer_update(optimizer: torch.optim.Optimizer, scheduler, params: list[torch.Tensor], clip: float | None,
                     scaler: torch.amp.GradScaler | None = None, finite_loss: bool = True) -> Update:
    """Clip and step the accumulated gradients of `params`; `scheduler` moves on only when the step is taken."""
    if scaler:
        scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(params, clip or math.inf).item()
    update = Update(stepped=finite_loss and math.isfinite(norm), grad_norm=norm)
    if scaler and finite_loss and not math.isfinite(norm):
        scaler.step(optimizer)  # the scaler sees the overflow, skips the step and lowers its scale
        scaler.update()
        update.overflow = True
    elif update.stepped:
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        update.lrs = learning_rates(optimizer)  # this update's rates, before the schedule moves on
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return update
