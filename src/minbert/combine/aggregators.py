"""Gram-matrix aggregators of the multi-task literature, through torchjd (Quinton & Rey 2024, "Jacobian Descent
for Multi-Objective Optimization"; https://github.com/TorchJD/torchjd, 0.18), used by its public API.

Each task's gradient on the shared encoder is kept apart (as for `pcgrad`), the step is reduced to the tasks'
Gram matrix G = J J^T (J: one row per task), torchjd's weighting maps G to a weight per task, and
sum_j w_j g_j is written back in place; heads keep their own gradients. So each of these equals torchjd's
aggregator applied to the explicit Jacobian J (tests/test_combine.py checks it), without ever building J.

- `upgrad` (Quinton & Rey 2024): each g_i projected onto the dual cone of the rows of J, averaged.
- `mgda` (Désidéri 2012; Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization"): the
  min-norm point of the convex hull of the g_i (Frank-Wolfe, Algorithm 2 of Sener & Koltun).
- `cagrad` (Liu et al. 2021, "Conflict-Averse Gradient Descent for Multi-task Learning"): the direction that
  maximises the worst task's improvement within a ball of radius c |g_0| around the average g_0.
- `nash-mtl` (Navon et al. 2022, "Multi-Task Learning as a Bargaining Game"): the Nash bargaining solution,
  J^T alpha with G alpha = 1 / alpha, solved by cvxpy/ECOS (torchjd's NashMTL needs a matrix, not a Gram
  matrix: it is given a factor F with F F^T = G, which is all it reads of the matrix).
- `imtl-g` (Liu et al. 2021, "Towards Impartial Multi-task Learning"): the combination whose projections on
  every g_i / |g_i| are equal.
- `aligned-mtl` (Senushkin et al. 2023, "Independent Component Alignment for Multi-Task Learning"): the
  gradients' matrix made orthogonal with equal singular values (scaled by the smallest).
- `dualproj` (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory", eq. 11): the average projected onto the
  dual cone of the g_i.
- `torchjd-pcgrad` (Yu et al. 2020): torchjd's PCGrad, beside minbert's own `pcgrad` (same weights for the
  same orders).
- `fairgrad` (Ban & Ji 2024, "Fair Resource Allocation in Multi-Task Learning"): alpha-fair weights, G w = w^(-1/alpha).
- `random` (Lin et al. 2022, "Reasonable Effectiveness of Random Weighting"): weights softmax(z), z ~ N(0, I),
  drawn each step (on the gradients; `rlw` in loss_weighting.py draws them on the losses, without per-task
  gradients).
- `graddrop` (Chen et al. 2020, "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign
  Dropout"): not a weighting: per coordinate, the positive or the negative parts of the g_i are kept with
  probability P = (1 + sum g_i / sum |g_i|) / 2. It is torchjd's GradDrop applied to each shared parameter's
  rows of J (one stacked copy of that parameter's task gradients at a time; on the word-embedding table, only
  the rows the step looked up).

torchjd's random draws (PCGrad's orders, random weights, GradDrop's masks) come from a seed of the combiner's
generator, so they are the same on every process and a resumed run draws what the killed one would have;
Nash-MTL's solver state is part of the checkpoint. Weights are as torchjd gives them: most sum to 1
(an average of the tasks' gradients, about 1/T of `sum`'s), which AdamW barely notices.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torchjd.aggregation as jd
from torchjd.linalg import QuadprogProjector

from ..settings import names, setting
from .base import CombineSettings, Combiner, combiner, seeded

SCALE_MODES = names("train.combine.scale_mode", ("min", "median", "rmse"))


class Aggregated(Combiner, ABC):
    """A combiner whose weights a torchjd Gramian weighting gives (each method's `build()`, called once)."""

    reduce_each_task = True  # data-parallel: each task's gradient summed over the processes, then combined

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weighting = self.build()

    @abstractmethod
    def build(self):
        """The method's torchjd weighting, from its settings (`self.cfg`)."""

    def needs_capture(self) -> bool:
        return True

    def combine(self, gram: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        with seeded(self.generator):
            return self.weighting(gram).to(torch.float64)


@dataclass
class ProjectorSettings(CombineSettings):
    norm_eps: float = setting(1e-4, "the Gram matrix is normalised by its trace plus this (torchjd's default)",
                              check="non_negative")
    reg_eps: float = setting(1e-4, "added to the normalised Gram matrix's diagonal before the QP (torchjd's default)",
                             check="non_negative")


@combiner("upgrad", ProjectorSettings)
class UPGrad(Aggregated):
    def build(self):
        return jd.UPGradWeighting(projector=QuadprogProjector(norm_eps=self.cfg.norm_eps, reg_eps=self.cfg.reg_eps))


@combiner("dualproj", ProjectorSettings)
class DualProj(Aggregated):
    def build(self):
        return jd.DualProjWeighting(projector=QuadprogProjector(norm_eps=self.cfg.norm_eps, reg_eps=self.cfg.reg_eps))


@dataclass
class MGDASettings(CombineSettings):
    epsilon: float = setting(1e-3, "Frank-Wolfe stops when its step gamma is below this (Sener & Koltun)",
                             check="positive")
    max_iters: int = setting(100, "Frank-Wolfe iterations at most", check="positive")


@combiner("mgda", MGDASettings)
class MGDA(Aggregated):
    def build(self):
        return jd.MGDAWeighting(epsilon=self.cfg.epsilon, max_iters=self.cfg.max_iters)


@dataclass
class CAGradSettings(CombineSettings):
    c: float = setting(0.4, "radius of the ball around the average gradient, in units of its norm (the paper's "
                            "0.4 on NYUv2 and Cityscapes)", check="non_negative")
    norm_eps: float = setting(1e-4, "guards the normalisations (torchjd's default)", check="non_negative")


@combiner("cagrad", CAGradSettings)
class CAGrad(Aggregated):
    def build(self):
        return jd.CAGradWeighting(c=self.cfg.c, norm_eps=self.cfg.norm_eps)


@combiner("imtl-g", CombineSettings)
class IMTLG(Aggregated):
    def build(self):
        return jd.IMTLGWeighting()


@dataclass
class AlignedSettings(CombineSettings):
    scale_mode: str = setting("min", "the singular value the aligned gradients are scaled to: min (the paper's), "
                                     "median, or rmse (the mean)", one_of="train.combine.scale_mode")


@combiner("aligned-mtl", AlignedSettings)
class AlignedMTL(Aggregated):
    def build(self):
        return jd.AlignedMTLWeighting(scale_mode=self.cfg.scale_mode)


@combiner("torchjd-pcgrad", CombineSettings)
class TorchJDPCGrad(Aggregated):
    def build(self):
        return jd.PCGradWeighting()


@dataclass
class FairGradSettings(CombineSettings):
    alpha: float = setting(1.0, "alpha of alpha-fairness (0: the sum; 1: proportional fairness; large: max-min)",
                           check="non_negative")


@combiner("fairgrad", FairGradSettings)
class FairGrad(Aggregated):
    def build(self):
        return jd.FairGradWeighting(alpha=self.cfg.alpha)


@combiner("random", CombineSettings)
class RandomWeights(Aggregated):
    def build(self):
        return jd.RandomWeighting()  # reads only the number of rows of what it is given


def gram_factor(gram: torch.Tensor) -> torch.Tensor:
    """F (square) with F F^T = G, for a weighting that wants the matrix but reads only its Gram matrix."""
    lam, vecs = torch.linalg.eigh(gram)
    return vecs * lam.clamp(min=0).sqrt()


@dataclass
class NashSettings(CombineSettings):
    update_weights_every: int = setting(1, "solve for new weights every N steps, reusing them in between "
                                           "(the paper's code: 1)", check="positive")
    max_norm: float = setting(1.0, "the combined gradient's norm is clipped to this (0: no clipping; the "
                                   "paper's code: 1.0)", check="non_negative")
    optim_niter: int = setting(20, "sequential convex iterations per solve (the paper's code: 20)", check="positive")


@combiner("nash-mtl", NashSettings)
class NashMTL(Aggregated):
    """Nash-MTL keeps state (the last weights, the solver's warm start): one per set of tasks a step holds."""

    def build(self):
        self.solvers: dict[tuple[str, ...], jd.NashMTL] = {}
        self.calls: dict[tuple[str, ...], int] = {}
        return None

    def _solver(self, key: tuple[str, ...]) -> "jd.NashMTL":
        if key not in self.solvers:
            c = self.cfg
            # the interval is kept here (torchjd's own counter is not part of its public state)
            self.solvers[key] = jd.NashMTL(n_tasks=len(key), max_norm=c.max_norm, update_weights_every=1,
                                           optim_niter=c.optim_niter)
            self.calls[key] = 0
        return self.solvers[key]

    def combine(self, gram: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        if len(tasks) == 1:  # one player: G alpha = 1 / alpha gives alpha = G^(-1/2), the gradient at norm 1
            return self._clip(gram.double().clamp(min=1e-30).rsqrt().reshape(1), gram_factor(gram.double()))
        key = tuple(tasks)  # (torchjd's solver cannot take one task: cvxpy refuses its 1 x 1 problem)
        weighting = self._solver(key).weighting
        factor = gram_factor(gram)
        if self.calls[key] % self.cfg.update_weights_every == 0:
            with warnings.catch_warnings():  # cvxpy: "not DPP, subsequent solves will not be faster" (known)
                warnings.filterwarnings("ignore", message=".*not DPP.*")
                alpha = weighting(factor)
        else:  # torchjd's reuse of its last weights, with its max_norm clipping
            alpha = self._clip(torch.from_numpy(np.asarray(weighting.prvs_alpha)).to(torch.float64), factor)
        self.calls[key] += 1
        return alpha.to(torch.float64)

    def _clip(self, alpha: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """torchjd's max_norm: the weights scaled so the combined gradient's norm is at most `max_norm`."""
        norm = torch.linalg.norm(alpha.double() @ factor.double())
        if self.cfg.max_norm > 0 and norm > self.cfg.max_norm:
            alpha = alpha / norm * self.cfg.max_norm
        return alpha

    def state(self) -> dict:
        return {",".join(k): {"calls": self.calls[k], "alpha": torch.as_tensor(np.asarray(s.weighting.prvs_alpha,
                                                                                           dtype=np.float64))}
                for k, s in self.solvers.items()}

    def load_state(self, state: dict) -> None:
        for key, s in state.items():
            k = tuple(key.split(","))
            solver = self._solver(k)
            solver.reset()  # the next solve sets the problem up again, warm-started from the saved weights
            solver.weighting.prvs_alpha = s["alpha"].numpy().astype(np.float64)
            self.calls[k] = int(s["calls"])


@dataclass
class GradDropSettings(CombineSettings):
    leak: float = setting(0.0, "how much of each task's gradient passes whatever the sign drawn (the paper's "
                               "default: 0)", check="closed_unit")


@combiner("graddrop", GradDropSettings)
class GradDrop(Aggregated):
    def build(self):
        return None

    def settle(self, tasks, grads, gram, rows) -> None:
        n = len(tasks)
        leak = torch.full((n,), self.cfg.leak, dtype=torch.float32) if self.cfg.leak else None
        for k, p in enumerate(self.shared):
            gs = [g[k] for g in grads]
            present = [x for x in gs if x is not None]
            with seeded(self.generator, p.device):  # one draw per shared parameter, in order
                if not present:
                    p.grad = None
                    continue
                sparse = rows if k == self.table_index else None
                part = [x if sparse is None or x is None else x.index_select(0, sparse) for x in gs]
                like = next(x for x in part if x is not None)
                jac = torch.stack([(torch.zeros_like(like) if x is None else x).reshape(-1) for x in part])
                agg = jd.GradDrop(leak=None if leak is None else leak.to(jac)) (jac).view_as(like)
                out = present[0]
                p.grad = out.copy_(agg) if sparse is None else out.index_copy_(0, sparse, agg)
