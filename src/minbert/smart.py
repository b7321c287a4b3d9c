"""SMART regularisation (Jiang et al. 2020, "SMART: Robust and Efficient Fine-Tuning ... through
Principled Regularized Optimization"), chosen by `train.smart` (off when lambda_s = mu = 0).

- Smoothness-inducing adversarial regulariser: perturb the embedding output x by delta ~ N(0, sigma^2),
  take `steps` ascent steps on D(f(x + delta), f(x)) (normalised by the gradient's max norm, step size
  `step_size`, projected onto the infinity-ball of radius `epsilon`), then add lambda_s * D_sym(f(x + delta), f(x))
  to the task loss. D is the task kind's divergence (kinds.py): the symmetric KL for classification heads
  (softmax over classes, or a Bernoulli for the one-logit paraphrase head), the squared error for regression.
- Bregman proximal point: mu * D(f(x; theta), f(x; theta_teacher)), where the teacher's weights follow
  theta by an exponential moving average (`momentum`) after every optimizer step.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .model import MultitaskModel
from .settings import Settings, register, setting


@register("train.smart")
@dataclass
class SmartSettings(Settings):
    """SMART's settings (train.smart); off while lambda_s and mu are both 0. Defaults are the paper's."""

    lambda_s: float = setting(0.0, "weight of the smoothness-inducing adversarial regulariser", check="non_negative")
    sigma: float = setting(1e-5, "std of the initial embedding noise", check="non_negative")
    step_size: float = setting(1e-3, "ascent step", check="non_negative")
    epsilon: float = setting(1e-5, "radius of the perturbation's infinity-ball", check="non_negative")
    steps: int = setting(1, "ascent steps T", check="non_negative")
    mu: float = setting(0.0, "weight of the Bregman proximal point term (momentum teacher)", check="non_negative")
    momentum: float = setting(0.99, "EMA factor of the teacher's weights", check="unit")


@contextmanager
def perturbed_embeddings(model: MultitaskModel, deltas: list[torch.Tensor]):
    """Add deltas[k] to the embedding output of the k-th encoder call inside the block."""
    calls = {"k": 0}

    def hook(module, inputs, output):
        delta = deltas[calls["k"]]
        calls["k"] += 1
        return output + delta

    handle = model.encoder.embeddings.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def embedding_shapes(model: MultitaskModel, inputs: list[dict[str, torch.Tensor]]) -> list[tuple[int, ...]]:
    h = model.encoder.config.hidden_size
    return [(*x["input_ids"].shape, h) for x in inputs]


class NoRegulariser:
    teacher = None

    def extra_loss(self, model: MultitaskModel, task: str, inputs: list, out: torch.Tensor) -> torch.Tensor | None:
        return None

    def after_step(self, model: MultitaskModel) -> None:
        pass


class Smart(NoRegulariser):
    def __init__(self, cfg, model: MultitaskModel):
        self.cfg = cfg
        self.teacher = None
        if cfg.mu > 0:
            self.teacher = copy.deepcopy(model)
            for p in self.teacher.parameters():
                p.requires_grad_(False)

    def adversarial_loss(self, model: MultitaskModel, task: str, inputs: list, out: torch.Tensor) -> torch.Tensor:
        cfg, kind = self.cfg, model.tasks[task].kind
        device = out.device
        deltas = [(torch.randn(s, device=device) * cfg.sigma).requires_grad_() for s in embedding_shapes(model, inputs)]
        target = out.detach()
        for _ in range(cfg.steps):
            with perturbed_embeddings(model, deltas):
                d = kind.divergence(model(task, inputs), target)
            grads = torch.autograd.grad(d, deltas)
            deltas = [(delta + cfg.step_size * g / (g.abs().amax(dim=(-2, -1), keepdim=True) + 1e-12))
                      .clamp(-cfg.epsilon, cfg.epsilon).detach().requires_grad_()
                      for delta, g in zip(deltas, grads)]
        with perturbed_embeddings(model, [d.detach() for d in deltas]):
            return kind.divergence(model(task, inputs), out)

    def extra_loss(self, model: MultitaskModel, task: str, inputs: list, out: torch.Tensor) -> torch.Tensor | None:
        total = None
        if self.cfg.lambda_s > 0:
            total = self.cfg.lambda_s * self.adversarial_loss(model, task, inputs, out)
        if self.teacher is not None:
            self.teacher.train(model.training)
            with torch.no_grad():
                teacher_out = self.teacher(task, inputs)
            bregman = self.cfg.mu * model.tasks[task].kind.divergence(out, teacher_out)
            total = bregman if total is None else total + bregman
        return total

    @torch.no_grad()
    def after_step(self, model: MultitaskModel) -> None:
        if self.teacher is None:
            return
        for t, p in zip(self.teacher.parameters(), model.parameters()):
            t.lerp_(p, 1.0 - self.cfg.momentum)


def build_regulariser(cfg, model: MultitaskModel) -> NoRegulariser:
    return Smart(cfg, model) if (cfg.lambda_s > 0 or cfg.mu > 0) else NoRegulariser()
