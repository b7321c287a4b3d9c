"""A training step, defined here only: `forward_backward` (a batch of each task of a schedule step: forward,
the task's loss, distillation and SMART terms, the combiner's backward) and `optimizer_step` (the update
that ends it: gradients summed over processes, `optimizer_update`, the weight average, the step log, the
guard against non-finite steps), both over a `Trainer`'s parts (duck-typed); and `optimizer_update`, one
optimizer update as every training loop takes it (the multi-task trainer, MLM pre-training through
`objective_step`, bench):
unscale the gradients (fp16), clip their norm, skip an update whose loss or gradient is not finite, step
the optimizer and the learning-rate schedule, clear the gradients."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import torch

from .. import writes
from ..data.batching import to_device
from ..errors import TrainingError
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


def objective_step(loss_of, micro_batches: list, optimizer: torch.optim.Optimizer, scheduler,
                   params: list[torch.Tensor], clip: float | None, accumulate: int) -> tuple[Update, list[float]]:
    """One optimizer update of a single objective (MLM pre-training): each micro-batch's loss (`loss_of(batch)`:
    its forward; None when the batch has nothing to learn) backward at 1/`accumulate`, then `optimizer_update`,
    skipped when a loss is not finite. Returns the update and the micro-batches' losses."""
    losses = []
    for batch in micro_batches:
        loss = loss_of(batch)
        if loss is None:
            continue
        (loss / accumulate).backward()
        losses.append(loss.item())
    return optimizer_update(optimizer, scheduler, params, clip, finite_loss=all(map(math.isfinite, losses))), losses


def forward_backward(t, step_tasks: list[str]) -> bool:
    """One schedule step: a batch of each listed task, one backward per task (the summed loss's gradient)."""
    finite = True
    every = t.cfg.train.combine.log_cosine_every
    t.combiner.begin(log_cosines=bool(every) and (t.progress.updates + 1) % every == 0, epoch=t.progress.epoch)
    for name in step_tasks:
        batch = t.streams[name].next(t.par.share if t.par.world > 1 else None)
        try:
            with torch.autocast(t.device.type, dtype=t.amp_dtype or torch.float32,
                                enabled=t.amp_dtype is not None):
                inputs = to_device(batch["inputs"], t.device)
                out = t.model.outputs(name, inputs)
                loss = t.model.loss(name, out, batch["labels"].to(t.device))
                loss = t.distiller.loss(name, out.value, batch["index"], loss, t.progress.updates)
                extra = t.regulariser.extra_loss(t.model, name, inputs, out.value)
            total = loss if extra is None else loss + extra
            scaled = total * batch["weight"] / t.cfg.train.accumulate
            value = loss.item()
            learned = t.combiner.backward(name, t.scaler.scale(scaled) if t.scaler else scaled, value, batch["weight"])
            if not learned and name not in t.nothing_to_learn:
                t.nothing_to_learn.add(name)
                t.log(f"task {name}: nothing to train this epoch (encoder frozen, head without parameters): "
                      "its loss is recorded, no gradient comes from it")
        except torch.OutOfMemoryError as e:
            raise TrainingError(
                f"out of memory on {t.device} with batch size {t.cfg.train.batch_size[name]} for task "
                f"{name}: lower train.batch_size.{name} and raise train.accumulate to keep the effective batch") from e
        if math.isfinite(value):
            t.progress.loss_sums[name] += value
            t.progress.loss_counts[name] += 1
        else:
            finite = False
        t.progress.examples += batch["global_size"]
        t.steplog.batch(name, value, batch["global_size"])
    cos = t.combiner.finish()
    if cos is not None and t.par.main:
        writes.append(t.run_dir / "grad_cosine.jsonl", json.dumps(
            {"update": t.progress.updates + 1, "epoch": t.progress.epoch, "step": t.progress.step, "cosine": cos}) + "\n")
    return finite

def optimizer_step(t, finite_losses: bool) -> bool:
    """Clip and step; a non-finite loss or gradient norm skips the step. Returns whether it stepped."""
    sum_gradients_over_processes(t)
    update = optimizer_update(t.optimizer, t.scheduler, t.trainable, t.cfg.train.grad_clip,
                              t.scaler, finite_losses)
    t.combiner.after_update(update.stepped)  # learned loss weights move once per update
    if update.overflow:
        return False
    if update.stepped:
        t.regulariser.after_step(t.model)
        t.progress.updates += 1
        t.average.update(t.progress.updates)
        t.steplog.update(t.progress.updates, t.progress.epoch, t.progress.step, update.lrs,
                            update.grad_norm)
        t.progress.bad_in_a_row = 0
        return True
    t.progress.bad_in_a_row += 1
    t.progress.bad_total += 1
    t.log(f"warning: non-finite loss or gradient at epoch {t.progress.epoch} step {t.progress.step}: step skipped "
             f"({t.progress.bad_in_a_row} in a row, {t.progress.bad_total} in all)")
    if t.progress.bad_in_a_row >= t.cfg.train.max_bad_steps:
        raise TrainingError(
            f"stopped: {t.progress.bad_in_a_row} non-finite steps in a row (epoch {t.progress.epoch}, step {t.progress.step}); "
            f"the last good checkpoint is {t.run_dir / 'last'} (try a lower train.lr)")
    return False

def sum_gradients_over_processes(t) -> None:
    """Data-parallel: sum the accumulated gradients over the processes (the encoder gradients of a combiner
    that keeps the tasks' gradients apart were summed task by task already)."""
    if t.par.world == 1:
        return
    done = set(map(id, t.combiner.shared)) if t.combiner.reduce is not None else set()
    params = [p for p in t.trainable if id(p) not in done]
    for p, g in zip(params, t.par.sum_gradients([p.grad for p in params], params)):
        p.grad = g
