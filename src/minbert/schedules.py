"""Task schedules: which tasks' batches make up each step of an epoch. Chosen by `train.schedule.name`.

A schedule only plans: `plan(epoch)` is a list, one entry per step, of the tasks whose next batch goes
into that step; it depends only on the epoch and the seed, so a resumed run replans the same epoch.
The per-task `BatchStream`s recycle (reshuffle) a task's data whenever it runs out, so a small task
is cycled as often as the plan asks for it, and a plan that asks for fewer batches than a pass
draws a fresh random subset.

- `round_robin`: every step one batch of each task, losses summed (seeds 001, 003, 004); an epoch lasts
  `until` the longest task is passed once (over-sampling the others), the shortest (under-sampling),
  or `fixed_steps` steps.
- `sequential`: whole tasks one after another, in `order` (seed 000's baseline SST -> STS -> Para).
- `task_by_task`: `epochs_per_task` epochs of one task, then the next (sequential fine-tuning).
- `random_subset` (RSS, seed 000): the tasks in `subset_size` draw that many fresh random examples per
  epoch (use a larger batch size for them; more than a task holds cycles through it again, i.e. over-
  sampling); the others are passed once; all spread evenly over the epoch, which lasts the longest quota.
- `proportional`, `temperature`, `annealed`: each step one task, drawn with p_t proportional to
  size_t^alpha: alpha = 1, alpha = 1/T, and alpha moving linearly from `alpha_start` (0.5, i.e. sqrt
  size) to `alpha_end` (0, uniform) over the epochs (annealed sampling, Stickland & Murray 2019).
- `adaptive_round_robin` (ARR, seed 002): `large_task_epochs` epochs of the largest task alone, then
  round-robin.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from .errors import ConfigError
from .settings import Choice, choice, names, setting
from .tasks import SEQUENTIAL_ORDER

UNTIL = names("train.schedule.until", ("longest", "shortest", "fixed_steps"))


# ---- each schedule's settings (train.schedule.*), picked by train.schedule.name ----
@dataclass
class ScheduleSettings(Choice):
    def trains(self, task: str) -> bool:
        """Whether the schedule draws any training batch of `task` (False: it is only evaluated)."""
        return True


@dataclass
class StepsSettings(ScheduleSettings):
    steps_per_epoch: int | None = setting(None, "steps per epoch (None: from the data)", check="positive")


@dataclass
class RoundRobinSettings(StepsSettings):
    until: str = setting("longest", "epoch length: longest | shortest task passed once, or fixed_steps",
                         one_of="train.schedule.until")

    def check(self, key, root):
        if self.until == "fixed_steps" and not self.steps_per_epoch:
            raise ConfigError(f"{key}.until: fixed_steps needs {key}.steps_per_epoch")


@dataclass
class OrderSettings(ScheduleSettings):
    order: list[str] | None = setting(None, "task order; None: sst, sts, para", one_of="task")


@dataclass
class TaskByTaskSettings(OrderSettings):
    epochs_per_task: int = setting(1, "epochs of one task before the next", check="positive")


@dataclass
class RandomSubsetSettings(ScheduleSettings):
    subset_size: dict[str, int] | None = setting(None, "examples per epoch of these tasks, e.g. {para: 20000}; 0: "
                                                 "the task is evaluated, not trained", check="non_negative", keys="task")

    def check(self, key, root):
        if root.tasks and not any(self.trains(t) for t in root.tasks):
            raise ConfigError(f"{key}.subset_size: every task draws 0 examples, so nothing is trained")

    def trains(self, task: str) -> bool:
        return (self.subset_size or {}).get(task) != 0


@dataclass
class TemperatureSettings(StepsSettings):
    temperature: float = setting(2.0, "p ~ size^(1/T)", check="positive")


@dataclass
class AnnealedSettings(StepsSettings):
    alpha_start: float = setting(0.5, "p ~ size^alpha, alpha from this ...", check="non_negative")
    alpha_end: float = setting(0.0, "... to this over the epochs", check="non_negative")


@dataclass
class AdaptiveRoundRobinSettings(RoundRobinSettings):
    large_task_epochs: int = setting(1, "epochs of the largest task alone first", check="non_negative")


@dataclass
class TaskSizes:
    examples: dict[str, int]
    batch_size: dict[str, int]

    def batches(self, task: str) -> int:
        return -(-self.examples[task] // self.batch_size[task])

    @property
    def tasks(self) -> list[str]:
        return list(self.examples)

    @property
    def largest(self) -> str:
        return max(self.examples, key=self.examples.get)


class Schedule(ABC):
    def __init__(self, sizes: TaskSizes, cfg, epochs: int, seed: int):
        self.sizes, self.cfg, self.epochs, self.seed = sizes, cfg, epochs, seed

    @abstractmethod
    def plan(self, epoch: int) -> list[list[str]]:
        """One entry per step: the tasks whose next batch goes into that step."""

    def rng(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)


def round_robin_steps(sizes: TaskSizes, until: str, steps: int | None) -> int:
    counts = [sizes.batches(t) for t in sizes.tasks]
    if until == "fixed_steps":
        assert steps, "config validation: fixed_steps needs train.schedule.steps_per_epoch"
        return steps
    return steps or (max(counts) if until == "longest" else min(counts))


class RoundRobin(Schedule):
    def plan(self, epoch: int) -> list[list[str]]:
        steps = round_robin_steps(self.sizes, self.cfg.until, self.cfg.steps_per_epoch)
        return [list(self.sizes.tasks) for _ in range(steps)]


def ordered(tasks: list[str], order: list[str] | None) -> list[str]:
    order = order or list(SEQUENTIAL_ORDER)
    return [t for t in order if t in tasks] + [t for t in tasks if t not in order]


class Sequential(Schedule):
    def plan(self, epoch: int) -> list[list[str]]:
        return [[t] for t in ordered(self.sizes.tasks, self.cfg.order) for _ in range(self.sizes.batches(t))]


class TaskByTask(Schedule):
    def task(self, epoch: int) -> str:
        tasks = ordered(self.sizes.tasks, self.cfg.order)
        return tasks[((epoch - 1) // self.cfg.epochs_per_task) % len(tasks)]

    def plan(self, epoch: int) -> list[list[str]]:
        t = self.task(epoch)
        return [[t] for _ in range(self.sizes.batches(t))]


class RandomSubset(Schedule):
    def quota(self, task: str) -> int:
        subset = (self.cfg.subset_size or {}).get(task)
        if subset is None:
            return self.sizes.batches(task)
        return -(-subset // self.sizes.batch_size[task])

    def plan(self, epoch: int) -> list[list[str]]:
        quotas = {t: q for t in self.sizes.tasks if (q := self.quota(t))}  # a task drawn 0 times has no batch
        steps = max(quotas.values())
        plan: list[list[str]] = [[] for _ in range(steps)]
        for t, q in quotas.items():  # q batches spread evenly over the epoch's steps
            for k in range(q):
                plan[k * steps // q].append(t)
        return plan


class Sampled(Schedule):
    """Each step one task, drawn with probability proportional to size^alpha."""

    def alpha(self, epoch: int) -> float:
        return 1.0

    def probabilities(self, epoch: int) -> dict[str, float]:
        """size^alpha, normalised; computed as a softmax of alpha * log(size), so that any alpha (a temperature
        near 0: alpha in the thousands) gives finite probabilities, the largest task's tending to 1."""
        a = self.alpha(epoch)
        logs = {t: a * math.log(n) if n > 0 else -math.inf for t, n in self.sizes.examples.items()}
        top = max(logs.values())
        w = {t: math.exp(v - top) for t, v in logs.items()}
        return {t: v / sum(w.values()) for t, v in w.items()}

    def plan(self, epoch: int) -> list[list[str]]:
        steps = self.cfg.steps_per_epoch or sum(self.sizes.batches(t) for t in self.sizes.tasks)
        p = self.probabilities(epoch)
        tasks = list(p)
        draws = torch.multinomial(torch.tensor([p[t] for t in tasks], dtype=torch.float64), steps,
                                  replacement=True, generator=self.rng(epoch))
        return [[tasks[i]] for i in draws.tolist()]


class Proportional(Sampled):
    pass


class Temperature(Sampled):
    def alpha(self, epoch: int) -> float:
        return 1.0 / self.cfg.temperature


class Annealed(Sampled):
    def alpha(self, epoch: int) -> float:
        done = (epoch - 1) / max(1, self.epochs - 1)
        return self.cfg.alpha_start + (self.cfg.alpha_end - self.cfg.alpha_start) * done


class AdaptiveRoundRobin(Schedule):
    def plan(self, epoch: int) -> list[list[str]]:
        if epoch <= self.cfg.large_task_epochs:
            t = self.sizes.largest
            return [[t] for _ in range(self.sizes.batches(t))]
        return RoundRobin(self.sizes, self.cfg, self.epochs, self.seed).plan(epoch)


SCHEDULES: dict[str, type[Schedule]] = {}  # name -> schedule; each registers its settings under the same name
for _name, _schedule, _settings in (
        ("round_robin", RoundRobin, RoundRobinSettings), ("sequential", Sequential, OrderSettings),
        ("task_by_task", TaskByTask, TaskByTaskSettings), ("random_subset", RandomSubset, RandomSubsetSettings),
        ("proportional", Proportional, StepsSettings), ("temperature", Temperature, TemperatureSettings),
        ("annealed", Annealed, AnnealedSettings), ("adaptive_round_robin", AdaptiveRoundRobin,
                                                  AdaptiveRoundRobinSettings)):
    SCHEDULES[_name] = _schedule
    choice("train.schedule", _name)(_settings)


def build_schedule(cfg, sizes: TaskSizes, epochs: int, seed: int) -> Schedule:
    """`cfg` is the `train.schedule` section of the config."""
    assert cfg.name in SCHEDULES, f"config validation lets no unknown schedule through: {cfg.name!r}"
    return SCHEDULES[cfg.name](sizes, cfg, epochs, seed)


def total_steps(schedule: Schedule, epochs: int) -> int:
    return sum(len(schedule.plan(e)) for e in range(1, epochs + 1))


def expected_examples(plan: list[list[str]], batch_size: dict[str, int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for step in plan:
        for t in step:
            counts[t] = counts.get(t, 0) + batch_size[t]
    return counts

