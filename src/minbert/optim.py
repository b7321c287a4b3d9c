"""AdamW (Loshchilov & Hutter 2019): Adam with bias correction and decoupled weight decay, written here.

The update follows `torch.optim.AdamW`: p <- p - lr*wd*p, then p <- p - lr * m_hat / (sqrt(v_hat) + eps).
`AdamW._update` is that update written out, one tensor at a time. With `fused=True` (the default where
torch has the kernel: CPU and CUDA) the same update runs as torch's fused multi-tensor kernel, one pass
over each parameter's memory instead of about ten: on the 2-core CPU a step over all-MiniLM-L6-v2's
parameters is 4.6x faster than the written-out update and 7.8x torch's default CPU AdamW
(docs/design/performance.md). Both paths are checked against `torch.optim.AdamW` in tests/test_optim.py.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Callable, Iterable

import torch

from .settings import names

if TYPE_CHECKING:  # annotations only: the optimizer needs neither
    from .schema import Config
    from .model import MultitaskModel

FUSED_DEVICES = ("cpu", "cuda")
FUSED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class AdamW(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, fused: bool | None = None):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or weight_decay < 0:
            raise ValueError(f"invalid AdamW settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.fused = hasattr(torch, "_fused_adamw_") if fused is None else fused

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            fusable = defaultdict(list)  # (device, dtype) -> parameters for the fused kernel
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                fused = self.fused and p.device.type in FUSED_DEVICES and p.dtype in FUSED_DTYPES
                state = self._state_of(p, p.device if fused else torch.device("cpu"))
                state["step"] += 1
                if fused:
                    fusable[(p.device, p.dtype)].append(p)
                else:
                    self._update(p, state, group)
            for params in fusable.values():
                self._fused_update(params, group)
        return loss

    def _state_of(self, p: torch.Tensor, step_device: torch.device) -> dict:
        """p's moments, and its step count as a float32 tensor on `step_device` (the fused kernel reads it on
        the parameter's device; a state saved with an int count, or loaded onto the CPU, is converted)."""
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, device=step_device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        elif not torch.is_tensor(state["step"]) or state["step"].device != step_device:
            state["step"] = torch.as_tensor(state["step"], dtype=torch.float32, device=step_device)
        return state

    @staticmethod
    def _update(p: torch.Tensor, state: dict, group: dict) -> None:
        """The update, written out."""
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        t, m, v = state["step"].item(), state["exp_avg"], state["exp_avg_sq"]
        p.mul_(1 - lr * wd)  # decoupled weight decay
        m.lerp_(p.grad, 1 - beta1)
        v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        step_size = lr / (1 - beta1 ** t)
        denom = (v / (1 - beta2 ** t)).sqrt_().add_(eps)
        p.addcdiv_(m, denom, value=-step_size)

    def _fused_update(self, params: list[torch.Tensor], group: dict) -> None:
        """The same update for many tensors at once, by torch's fused kernel (steps already counted)."""
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        torch._fused_adamw_(
            params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
            [], [s["step"] for s in states], lr=float(group["lr"]), beta1=beta1, beta2=beta2,
            weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False, maximize=False)


OPTIMIZERS = names("train.optimizer", {
    "adamw": AdamW,  # minbert's own
    "torch_adamw": torch.optim.AdamW,
})


def build_optimizer(name: str, groups: list[dict], **kwargs) -> torch.optim.Optimizer:
    assert name in OPTIMIZERS, f"config validation lets no unknown optimizer through: {name!r}"
    return OPTIMIZERS[name](groups, **kwargs)


# learning-rate factor after warm-up, as a function of the fraction of the post-warm-up steps done
LR_DECAYS = names("train.lr_decay", {
    "linear": lambda done: max(0.0, 1.0 - done),
    "cosine": lambda done: 0.5 * (1.0 + math.cos(math.pi * min(1.0, done))),
    "constant": lambda done: 1.0,
})


def lr_lambda(total_steps: int, warmup: float, decay: str, epoch_starts: list[int] | None = None,
              milestones: list[int] | None = None, gamma: float = 0.1):
    """Linear warm-up over the first `warmup` fraction of the steps, then the named decay; times gamma
    for each milestone epoch already finished (MultiStepLR). `epoch_starts[e-1]` = first step of epoch e."""
    warm = int(total_steps * warmup)
    after = LR_DECAYS[decay]

    def factor(step: int) -> float:
        f = (step + 1) / warm if step < warm else after((step - warm) / max(1, total_steps - warm))
        if milestones:
            epoch = sum(1 for start in epoch_starts if start <= step)
            f *= gamma ** sum(1 for m in milestones if epoch > m)
        return f
    return factor


def layer_depths(model: MultitaskModel) -> dict[int, int]:
    """Parameter id -> how many layers lie above it, under layer-wise learning-rate decay: 0 for the top encoder
    layer (and the pooler, and each private copy of it), L - i for layer i of L counted from 1, L for the
    embeddings. A private copy of layer i sits where the layer it copies sits."""
    layers = model.encoder.encoder.layer
    depth = {id(p): len(layers) for p in model.encoder.embeddings.parameters()}
    for i, layer in enumerate(layers):
        depth.update({id(p): len(layers) - 1 - i for p in layer.parameters()})
    for head in model.heads.values():
        for i, layer in enumerate(head.private):
            depth.update({id(p): len(head.private) - 1 - i for p in layer.parameters()})
    return depth


def parameter_groups(model: MultitaskModel, cfg: Config) -> list[dict]:
    """The encoder and each task head with its own learning rate, each split into decayed weights and
    undecayed biases / LayerNorm weights; a head's private encoder layers learn at the encoder's rate. With
    `train.layer_decay` d, the encoder's rate is further split by depth: lr * d^depth (see `layer_depths`).
    Frozen parameters are included: they get no gradient, so no update."""
    parts = [("encoder", list(model.encoder.named_parameters()), cfg.train.lr)]
    for task, head in model.heads.items():
        lr = (cfg.train.head_lrs or {}).get(task, cfg.train.head_lr or cfg.train.lr)
        named = list(head.named_parameters())
        parts.append((f"head:{task}", [(n, p) for n, p in named if not n.startswith("private.")], lr))
        parts.append((f"private:{task}", [(n, p) for n, p in named if n.startswith("private.")], cfg.train.lr))
    if cfg.train.layer_decay is not None:
        depth = layer_depths(model)
        split = []
        for name, named, lr in parts:
            if name == "encoder" or name.startswith("private:"):
                for d in sorted({depth.get(id(p), 0) for _, p in named}):
                    split.append((name if d == 0 else f"{name}@-{d}", [(n, p) for n, p in named
                                  if depth.get(id(p), 0) == d], lr * cfg.train.layer_decay ** d))
            else:
                split.append((name, named, lr))
        parts = split
    groups = []
    for name, named, lr in parts:
        decay = [p for n, p in named if p.ndim >= 2 and "LayerNorm" not in n]
        no_decay = [p for n, p in named if not (p.ndim >= 2 and "LayerNorm" not in n)]
        groups += [g for g in ({"name": name, "params": decay, "lr": lr, "weight_decay": cfg.train.weight_decay},
                               {"name": name, "params": no_decay, "lr": lr, "weight_decay": 0.0}) if g["params"]]
    return groups
