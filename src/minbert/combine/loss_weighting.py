"""Loss weightings: each task's loss is scaled by a weight w_t before its backward, so the step costs what `sum`
costs (no per-task gradients kept, except GradNorm's norms). Weights that are learned move once per optimizer
update, from the mean loss of each task over the update's batches (summed over the processes when data-
parallel), with their own small Adam (Kingma & Ba 2015); they are part of the checkpoint.

- `uw`, uncertainty weighting (Kendall, Gal & Cipolla 2018, "Multi-Task Learning Using Uncertainty to Weigh
  Losses"), in LibMTL's form: the objective sum_t L_t / (2 exp(s_t)) + s_t / 2 with s_t = log sigma_t^2 learned,
  so w_t = exp(-s_t) / 2 and dObjective/ds_t = (1 - exp(-s_t) L_t) / 2 (at rest: exp(s_t) = L_t).
- `dwa`, dynamic weight average (Liu, Johns & Davison 2019, "End-to-End Multi-Task Learning with Attention",
  eq. 7): w_t(k) = T_n exp(r_t(k-1) / T) / sum_i exp(r_i(k-1) / T), r_t(k-1) = L_t(k-1) / L_t(k-2), L_t(k) the
  task's mean training loss over epoch k and T_n the number of tasks; 1 for the first two epochs.
- `gradnorm` (Chen et al. 2018, "GradNorm: Gradient Normalization for Adaptive Loss Balancing"), as LibMTL
  writes it: w = T_n softmax(xi); G_t = |grad of w_t L_t| over the shared encoder (from the step's Gram matrix,
  so the tasks' gradients are kept apart as for PCGrad); r_t = Ltilde_t / mean(Ltilde), Ltilde_t = L_t / L_t(0);
  xi descends sum_t |G_t - mean(G) r_t^alpha| with the target held constant.
- `rlw`, random loss weighting (Lin et al. 2022, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
  Multi-Task Learning"): w = softmax(z), z ~ N(0, I) drawn each optimizer update (LibMTL's RLW).
- `famo` (Liu et al. 2023, "FAMO: Fast Adaptive Multitask Optimization"): z = softmax(xi); the step descends
  sum_t z_t log L_t / c with c = sum_i z_i / L_i, i.e. w_t = z_t / (c L_t); after the update xi descends
  -delta^T z(xi) (Adam with weight decay gamma) with delta_t = log L_t(before) - log L_t(after). As its reference
  code does between updates, "after" is the next update's losses; here c uses the last update's mean losses (a
  task's loss is backpropagated before the step's other tasks are seen).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..settings import setting
from .base import CombineSettings, Combiner, combiner


class Adam:
    """Adam (Kingma & Ba 2015, with PyTorch's L2 weight decay) on a small float64 vector."""

    def __init__(self, x: torch.Tensor, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps=1e-8):
        self.x, self.lr, self.wd, self.betas, self.eps = x, lr, weight_decay, betas, eps
        self.m, self.v, self.t = torch.zeros_like(x), torch.zeros_like(x), 0

    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        grad = grad + self.wd * self.x
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat, v_hat = self.m / (1 - b1 ** self.t), self.v / (1 - b2 ** self.t)
        self.x.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))

    def state(self) -> dict:
        return {"x": self.x.clone(), "m": self.m.clone(), "v": self.v.clone(), "t": self.t}

    def load_state(self, state: dict) -> None:
        for k in ("x", "m", "v"):
            if state[k].shape != self.x.shape:
                raise ValueError(f"combine state {k} has shape {tuple(state[k].shape)}, not {tuple(self.x.shape)}")
            getattr(self, k).copy_(state[k])
        self.t = int(state["t"])


def means_of(sums: torch.Tensor) -> torch.Tensor:
    return torch.where(sums[1] > 0, sums[0] / sums[1].clamp(min=1e-300), torch.full_like(sums[0], math.nan))


class LossWeighting(Combiner):
    """Records each task's mean loss over an optimizer update (`means` at `after_update`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        assert self.tasks, "a loss weighting needs the run's tasks"
        self.index = {t: i for i, t in enumerate(self.tasks)}
        self._sums = torch.zeros(2, len(self.tasks), dtype=torch.float64)  # sum of share * loss, sum of shares

    def observe(self, task: str, value: float, share: float) -> None:
        if math.isfinite(value):
            self._sums[0, self.index[task]] += share * value
            self._sums[1, self.index[task]] += share

    def take_sums(self) -> torch.Tensor:
        """The update's (sum of share * loss, sum of shares) per task, summed over the processes."""
        sums, self._sums = self._sums, torch.zeros_like(self._sums)
        if self.sum_over is not None:
            device = self.shared[0].device
            sums = self.sum_over([sums.to(device)], [sums.to(device)])[0].cpu()
        return sums

    def take_means(self) -> torch.Tensor:
        """Each task's mean loss over the update's batches (nan: not seen), over all the processes."""
        return means_of(self.take_sums())

    def weights(self) -> torch.Tensor:
        return torch.ones(len(self.tasks), dtype=torch.float64)

    def weight(self, task: str) -> float:
        return float(self.weights()[self.index[task]])

    def after_update(self, stepped: bool) -> None:
        means = self.take_means()
        if stepped:
            self.learn(means)

    def learn(self, means: torch.Tensor) -> None:
        """Move the weights after an update whose tasks' mean losses are `means`."""


@dataclass
class LearnedSettings(CombineSettings):
    lr: float = setting(0.01, "learning rate of the weights' own Adam (the papers share the network's; minbert's "
                              "encoder rate would leave them near their start)", check="positive")


@combiner("uw", LearnedSettings)
class Uncertainty(LossWeighting):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opt = Adam(torch.zeros(len(self.tasks), dtype=torch.float64), self.cfg.lr)  # s_t = log sigma_t^2

    def weights(self) -> torch.Tensor:
        return 0.5 * torch.exp(-self.opt.x)

    def learn(self, means: torch.Tensor) -> None:
        seen = ~means.isnan()
        grad = torch.where(seen, 0.5 - 0.5 * torch.exp(-self.opt.x) * means.nan_to_num(), torch.zeros_like(means))
        self.opt.step(grad)

    def state(self) -> dict:
        return {"adam": self.opt.state(), "sums": self._sums.clone()}

    def load_state(self, state: dict) -> None:
        self.opt.load_state(state["adam"])
        self._sums.copy_(state["sums"])


@dataclass
class DWASettings(CombineSettings):
    temperature: float = setting(2.0, "T of the softmax over the loss ratios (the paper's 2)", check="positive")


@combiner("dwa", DWASettings)
class DynamicWeightAverage(LossWeighting):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.history: list[torch.Tensor] = []  # each finished epoch's mean losses
        self.current = torch.zeros(2, len(self.tasks), dtype=torch.float64)  # this epoch's sums, shares
        self.at_epoch = 1
        self._w = torch.ones(len(self.tasks), dtype=torch.float64)

    def begin(self, log_cosines: bool, epoch: int = 1) -> None:
        super().begin(log_cosines, epoch)
        if epoch != self.at_epoch:  # an epoch ended: its means join the history, the weights move
            self.history.append(means_of(self.current))
            self.current, self.at_epoch = torch.zeros_like(self.current), epoch
            self._w = dwa_weights(self.history, self.cfg.temperature)

    def weights(self) -> torch.Tensor:
        return self._w

    def after_update(self, stepped: bool) -> None:
        self.current += self.take_sums()  # the epoch's mean is over all its batches, skipped updates included

    def state(self) -> dict:
        return {"history": [h.clone() for h in self.history], "current": self.current.clone(),
                "at_epoch": self.at_epoch, "sums": self._sums.clone()}

    def load_state(self, state: dict) -> None:
        self.history = [h.to(torch.float64) for h in state["history"]]
        self.current.copy_(state["current"])
        self._sums.copy_(state["sums"])
        self.at_epoch = int(state["at_epoch"])
        self._w = dwa_weights(self.history, self.cfg.temperature) if self.history else self._w


def dwa_weights(history: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Liu et al. 2019, eq. 7, from the epochs' mean losses (a task unseen in either epoch: ratio 1)."""
    n = history[0].numel()
    if len(history) < 2:
        return torch.ones(n, dtype=torch.float64)
    r = (history[-1] / history[-2]).nan_to_num(nan=1.0, posinf=1.0)
    return n * torch.softmax(r / temperature, dim=0)


@dataclass
class GradNormSettings(LearnedSettings):
    alpha: float = setting(1.5, "the restoring force's asymmetry (the paper's 1.5 on NYUv2; LibMTL's default)",
                           check="non_negative")


@combiner("gradnorm", GradNormSettings)
class GradNorm(LossWeighting):
    reduce_each_task = True  # the norms are of the gradients summed over the processes

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opt = Adam(torch.zeros(len(self.tasks), dtype=torch.float64), self.cfg.lr)  # xi
        self.initial = torch.full((len(self.tasks),), math.nan, dtype=torch.float64)  # L_t(0)
        self.norms = torch.full((len(self.tasks),), math.nan, dtype=torch.float64)  # this update's G_t / w_t

    def needs_capture(self) -> bool:
        return True

    def weights(self) -> torch.Tensor:
        return len(self.tasks) * torch.softmax(self.opt.x, dim=0)

    def combine(self, gram: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        w = self.weights()
        for i, t in enumerate(tasks):  # the captured gradients are of w_t L_t
            k = self.index[t]
            self.norms[k] = gram[i, i].clamp(min=0).sqrt() / w[k]
        return torch.ones(gram.shape[0], dtype=gram.dtype)  # the weights were applied to the losses

    def learn(self, means: torch.Tensor) -> None:
        self.initial = torch.where(self.initial.isnan(), means, self.initial)
        seen = ~(means.isnan() | self.norms.isnan() | self.initial.isnan())
        if seen.sum() >= 1:
            self.opt.step(gradnorm_gradient(self.opt.x, self.norms, means, self.initial, seen, self.cfg.alpha))
        self.norms.fill_(math.nan)

    def state(self) -> dict:
        return {"adam": self.opt.state(), "initial": self.initial.clone(), "norms": self.norms.clone(),
                "sums": self._sums.clone()}

    def load_state(self, state: dict) -> None:
        self.opt.load_state(state["adam"])
        self.initial.copy_(state["initial"])
        self.norms.copy_(state["norms"])
        self._sums.copy_(state["sums"])


def gradnorm_gradient(xi, norms, losses, initial, seen, alpha) -> torch.Tensor:
    """d/dxi of sum_t |w_t n_t - mean(w n) r_t^alpha| (target constant), w = T_n softmax(xi), over the `seen` tasks."""
    xi = xi.detach().clone().requires_grad_(True)
    w = len(xi) * torch.softmax(xi, dim=0)
    g = (w * norms.nan_to_num())[seen]
    ratio = (losses / initial)[seen]
    target = (g.mean() * (ratio / ratio.mean()) ** alpha).detach()
    (g - target).abs().sum().backward()
    return xi.grad.detach()


@combiner("rlw", CombineSettings)
class RandomLossWeighting(LossWeighting):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._w = self.draw()

    def draw(self) -> torch.Tensor:
        return torch.softmax(torch.randn(len(self.tasks), generator=self.generator, dtype=torch.float64), dim=0)

    def weights(self) -> torch.Tensor:
        return self._w

    def after_update(self, stepped: bool) -> None:
        self.take_means()
        self._w = self.draw()  # resumes exactly: drawn from the combiner's generator (in the checkpoint)

    def state(self) -> dict:
        return {"weights": self._w.clone()}

    def load_state(self, state: dict) -> None:
        self._w = state["weights"].to(torch.float64)


@dataclass
class FAMOSettings(CombineSettings):
    lr: float = setting(0.025, "learning rate of the logits' Adam (FAMO's reference code: 0.025)", check="positive")
    gamma: float = setting(0.01, "weight decay of the logits (FAMO's reference code: 0.01)", check="non_negative")
    eps: float = setting(1e-8, "added to each loss before its logarithm (FAMO's reference code)", check="positive")


@combiner("famo", FAMOSettings)
class FAMO(LossWeighting):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opt = Adam(torch.zeros(len(self.tasks), dtype=torch.float64), self.cfg.lr, self.cfg.gamma)  # xi
        self.last = torch.full((len(self.tasks),), math.nan, dtype=torch.float64)  # the last update's mean losses
        self.value: float | None = None  # the loss of the batch being backpropagated (this process's, or all's)

    def backward(self, task, loss, value=None, share=1.0) -> bool:
        """The base's backward (so the per-task gradients are captured when cosines are logged), its weight that
        of this batch's loss: `weight` reads `self.value`."""
        if value is not None and self.sum_over is not None:  # data-parallel: the global batch's loss
            device = self.shared[0].device
            both = torch.tensor([share * value], dtype=torch.float64, device=device)
            self.value = float(self.sum_over([both], [both])[0])
        else:
            self.value = value
        return super().backward(task, loss, value, share)

    def weight(self, task: str) -> float:
        value = self.value
        if value is None or not math.isfinite(value):
            return 1.0  # a non-finite loss: the step is skipped anyway
        z = torch.softmax(self.opt.x, dim=0)
        known = self.last.isnan().logical_not()
        d = torch.where(known, self.last, torch.full_like(self.last, value)) + self.cfg.eps
        return float(z[self.index[task]] / (value + self.cfg.eps) / (z / d).sum())

    def learn(self, means: torch.Tensor) -> None:
        both = ~(means.isnan() | self.last.isnan())
        if both.any():
            delta = torch.where(both, torch.log(self.last + self.cfg.eps) - torch.log(means + self.cfg.eps),
                                torch.zeros_like(means))
            z = torch.softmax(self.opt.x, dim=0)
            self.opt.step(z * (delta - (z * delta).sum()))  # J_softmax^T delta
        self.last = torch.where(means.isnan(), self.last, means)

    def state(self) -> dict:
        return {"adam": self.opt.state(), "last": self.last.clone(), "sums": self._sums.clone()}

    def load_state(self, state: dict) -> None:
        self.opt.load_state(state["adam"])
        self.last.copy_(state["last"])
        self._sums.copy_(state["sums"])
