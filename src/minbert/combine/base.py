"""The combiner every method of combine/ builds on, and `sum` (Caruana 1997: the gradient of the summed losses,
each task's backward adding into .grad).

A `Combiner` receives each task's loss of a step (`backward`, with a weight per task: loss weightings), and,
when the method needs the tasks' separate gradients (`needs_capture`: Gram-based methods), keeps each task's
gradient on the shared encoder apart, reduces them to the Gram matrix G_ij = g_i . g_j and writes back
sum_j w_j g_j with the weights `combine(G)` gives (Gram-based aggregators: PCGrad, torchjd's). The same
Gram matrix gives the pairwise cosines between task gradients, recorded every `log_cosine_every` steps.
Heads keep their own gradients. `after_update` ends an optimizer update (learned weights move there);
`state` / `load_state` are what a checkpoint keeps of the method.

Cost: each task's gradient stays in the tensors its backward pass produced (one gradient per task,
no flattened copies); the Gram matrix is a dot product per parameter and pair, and the combination
is written in place into the first task's tensors. The word-embedding gradient is non-zero only on
the rows the step's batches looked up, so for that table only those rows are read.
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..settings import Choice, choice, setting

Grads = list  # one gradient tensor (or None: unused) per shared parameter


def cosines(gram: torch.Tensor, tasks: list[str], order: list[str] | None = None) -> dict[str, float]:
    """Each pair's cosine, named "a/b" with a before b in `order` (the run's tasks) whatever order the step
    backpropagated them in; without `order`, in `tasks`' order."""
    norms = gram.diagonal().clamp(min=1e-30).sqrt()
    rank = {t: k for k, t in enumerate(order or tasks)}
    ranked = sorted(range(len(tasks)), key=lambda k: rank[tasks[k]])
    return {f"{tasks[i]}/{tasks[j]}": float(gram[i, j] / (norms[i] * norms[j]))
            for i, j in itertools.combinations(ranked, 2)}


class RowsLookedUp:
    """The rows of an embedding table that the forward passes since the last `take()` looked up."""

    def __init__(self, table: torch.nn.Embedding):
        self.ids: list[torch.Tensor] = []
        self.handle = table.register_forward_pre_hook(self._record)

    def _record(self, module, args) -> None:
        if torch.is_grad_enabled():
            self.ids.append(args[0].detach().reshape(-1))

    def take(self) -> torch.Tensor | None:
        ids = torch.unique(torch.cat(self.ids)) if self.ids else None
        self.ids = []
        return ids


def _union(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return None if a is None or b is None else torch.unique(torch.cat([a, b]))


def draw_seed(generator: torch.Generator) -> int:
    """A seed drawn from the combiner's generator (the same on every process, saved in the checkpoint)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


@contextmanager
def seeded(generator: torch.Generator, device: torch.device | None = None):
    """Run a library's random draws (torch's global generator) from a seed of `generator`, leaving the
    global generator as it was: the draws are the same on every process and resume exactly."""
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(draw_seed(generator))
        yield


class Combiner:
    """Receives each task's loss of a step (`backward`), then settles the gradients (`finish`).

    `table`: the word-embedding table among `shared`, whose gradient is row-sparse (optional); `reduce`
    (data-parallel): sums gradients (and small statistics) over the processes; `tasks`: every task of the run."""

    reduce_each_task = False  # data-parallel: sum each task's gradient over the processes before combining

    def __init__(self, shared: list[torch.nn.Parameter], cfg, seed: int, table: torch.nn.Embedding | None = None,
                 reduce=None, tasks: list[str] | None = None):
        self.shared, self.cfg = shared, cfg
        self.tasks = list(tasks or [])
        self.sum_over = reduce  # (tensors, like) -> tensors summed over processes; None: one process
        self.reduce = reduce if self.reduce_each_task else None  # (grads, params) -> grads summed over processes
        self.generator = torch.Generator().manual_seed(seed)
        self.capture = False  # capture per-task shared gradients this step (for cosines / pcgrad)
        self.grads: dict[str, Grads] = {}
        self.rows: dict[str, torch.Tensor | None] = {}
        self._carry: Grads | None = None
        ids = [k for k, p in enumerate(shared) if table is not None and p is table.weight]
        self.table_index = ids[0] if ids else None
        self.lookups = RowsLookedUp(table) if ids else None
        self.epoch = 1

    def weight(self, task: str) -> float:
        """The weight of the task's loss in this step's backward (loss weightings)."""
        return 1.0

    def needs_capture(self) -> bool:
        return self.capture

    def begin(self, log_cosines: bool, epoch: int = 1) -> None:
        """Start a step; with gradient accumulation, set aside what earlier steps accumulated."""
        self.capture = log_cosines
        self.epoch = epoch
        self.grads, self.rows = {}, {}
        if self.lookups:
            self.lookups.take()
        pending = any(p.grad is not None for p in self.shared)
        self._carry = self._take_shared() if self.needs_capture() and pending else None

    def backward(self, task: str, loss: torch.Tensor, value: float | None = None, share: float = 1.0) -> bool:
        """Backpropagate one task's loss; False when no trainable parameter depends on it (nothing done).
        `value`: the task's loss on this batch, unscaled (for loss weightings); `share`: this process's share of
        the batch (data-parallel; 1 in one process)."""
        if value is not None:
            self.observe(task, value, share)
        if not loss.requires_grad:  # e.g. a frozen encoder under a head without parameters
            return False
        (self.weight(task) * loss).backward()
        if not self.needs_capture():
            return True
        g, rows = self._take_shared(), self.lookups.take() if self.lookups else None
        if self.reduce is not None:
            g = self.reduce(g, self.shared)
            rows = None  # other processes looked up other rows: treat the table as dense
        if task in self.grads:  # the task came twice in this step: its gradients add up
            g = [_add(a, b) for a, b in zip(self.grads[task], g)]
            rows = _union(self.rows[task], rows)
        self.grads[task], self.rows[task] = g, rows
        return True

    def observe(self, task: str, value: float, share: float) -> None:
        """A task's loss value on a batch (loss weightings record it)."""

    def finish(self) -> dict[str, float] | None:
        """Write the combined shared gradient back; return pairwise cosines if they were asked for."""
        if not self.needs_capture() or not self.grads:
            return None
        tasks = list(self.grads)
        grads = [self.grads.pop(t) for t in tasks]
        rows = None
        if self.table_index is not None and all(self.rows[t] is not None for t in tasks):
            rows = torch.unique(torch.cat([self.rows[t] for t in tasks]))
        gram = self._gram(grads, rows)
        self.settle(tasks, grads, gram, rows)
        if self._carry is not None:
            for k, p in enumerate(self.shared):
                p.grad = _add(p.grad, self._carry[k])
        self._carry = None
        return cosines(gram, tasks, self.tasks) if self.capture and len(tasks) > 1 else None

    def settle(self, tasks: list[str], grads: list[Grads], gram: torch.Tensor, rows: torch.Tensor | None) -> None:
        """Write sum_j w_j g_j (w = `combine(gram, tasks)`) into the shared parameters' .grad."""
        w = self.combine(gram, tasks).tolist()
        for k, p in enumerate(self.shared):
            p.grad = self._combined([g[k] for g in grads], w, rows if k == self.table_index else None)

    def combine(self, gram: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        """The weight of each task's gradient in the combined one."""
        return torch.ones(gram.shape[0], dtype=gram.dtype)

    def after_update(self, stepped: bool) -> None:
        """An optimizer update ended (`stepped`: it was taken, not skipped as non-finite)."""

    def state(self) -> dict:
        """What a checkpoint keeps of the method (learned weights, solver state); tensors and plain values."""
        return {}

    def load_state(self, state: dict) -> None:
        return None

    def _gram(self, grads: list[Grads], rows: torch.Tensor | None) -> torch.Tensor:
        n = len(grads)
        gram = torch.zeros(n, n, dtype=torch.float64)
        for k in range(len(self.shared)):
            gs = [g[k] for g in grads]
            if rows is not None and k == self.table_index:
                gs = [None if x is None else x.index_select(0, rows) for x in gs]
            flat = [None if x is None else x.reshape(-1) for x in gs]
            for i, j in itertools.combinations_with_replacement(range(n), 2):
                if flat[i] is not None and flat[j] is not None:
                    gram[i, j] += float(torch.dot(flat[i].float(), flat[j].float()))
        return torch.triu(gram) + torch.triu(gram, 1).T

    @staticmethod
    def _combined(gs: list, w: list[float], rows: torch.Tensor | None) -> torch.Tensor | None:
        """sum_j w_j gs[j], written into the first present tensor (only `rows` of it, when given)."""
        present = [(x, wj) for x, wj in zip(gs, w) if x is not None]
        if not present:
            return None
        out, w0 = present[0]
        if rows is not None:  # every gradient is zero outside `rows`
            part = out.index_select(0, rows).mul_(w0)
            for x, wj in present[1:]:
                part.add_(x.index_select(0, rows), alpha=wj)
            return out.index_copy_(0, rows, part)
        out.mul_(w0)
        for x, wj in present[1:]:
            out.add_(x, alpha=wj)
        return out

    # the shared parameters' gradients, taken out of .grad (no copies), and put back
    def _take_shared(self) -> Grads:
        grads = [p.grad for p in self.shared]
        for p in self.shared:
            p.grad = None
        return grads


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or b is None:
        return b if a is None else a
    return a.add_(b)


@dataclass
class CombineSettings(Choice):
    log_cosine_every: int | None = setting(None, "record pairwise task-gradient cosines every N optimizer steps",
                                           check="positive")


COMBINERS: dict[str, type[Combiner]] = {}


def combiner(name: str, settings: type):
    """Class decorator: the combiner `train.combine.name: name` builds, with its settings class."""
    def add(cls: type[Combiner]) -> type[Combiner]:
        assert name not in COMBINERS, name
        COMBINERS[name] = cls
        cls.settings = choice("train.combine", name)(settings)  # train.combine.name picks the settings too
        return cls
    return add


combiner("sum", CombineSettings)(Combiner)


def build_combiner(cfg, shared: list[torch.nn.Parameter], seed: int, table: torch.nn.Embedding | None = None,
                   reduce=None, tasks: list[str] | None = None) -> Combiner:
    assert cfg.name in COMBINERS, f"config validation lets no unknown combine through: {cfg.name!r}"
    return COMBINERS[cfg.name](shared, cfg, seed, table, reduce, tasks)
