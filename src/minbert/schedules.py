"""Task schedules: which tasks' batches make up each step of an epoch. Chosen by name.

A schedule only plans: `plan(epoch)` is a list, one entry per step, of the tasks whose next batch goes
into that step; it depends only on the epoch and the seed, so a resumed run replans the same epoch.
The per-task `BatchStream`s recycle (reshuffle) a task's data whenever it runs out, so a small task is
cycled as often as the plan asks for it.
"""
from __future__ import annotations


class RoundRobin:
    """Every step takes one batch of each task and sums their losses (as in seed reports 001 and 004).

    An epoch is `steps_per_epoch` steps, by default one pass over the largest task in batches;
    smaller tasks are cycled, i.e. over-sampled, to keep up.
    """

    def __init__(self, batches_per_pass: dict[str, int], steps_per_epoch: int | None = None, seed: int = 0):
        self.tasks = list(batches_per_pass)
        self.steps = steps_per_epoch or max(batches_per_pass.values())

    def __len__(self) -> int:
        return self.steps

    def plan(self, epoch: int) -> list[list[str]]:
        return [list(self.tasks) for _ in range(self.steps)]


SCHEDULES = {"round_robin": RoundRobin}


def build_schedule(name: str, batches_per_pass: dict[str, int], steps_per_epoch: int | None, seed: int = 0):
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {sorted(SCHEDULES)}")
    return SCHEDULES[name](batches_per_pass, steps_per_epoch, seed)
