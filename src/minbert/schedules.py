"""Task schedules: which tasks' batches make up each optimizer step of an epoch. Chosen by name.

A schedule only plans; the per-task `BatchStream`s recycle (reshuffle) a task's data whenever it runs
out, so a small task is cycled as often as the plan asks for it.
"""
from __future__ import annotations

from typing import Iterator


class RoundRobin:
    """Every step takes one batch of each task and sums their losses (as in seed reports 001 and 004).

    An epoch is `steps_per_epoch` steps, by default one pass over the largest task in batches;
    smaller tasks are cycled, i.e. over-sampled, to keep up.
    """

    def __init__(self, batches_per_pass: dict[str, int], steps_per_epoch: int | None = None):
        self.tasks = list(batches_per_pass)
        self.steps = steps_per_epoch or max(batches_per_pass.values())

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[str]]:
        for _ in range(self.steps):
            yield list(self.tasks)


SCHEDULES = {"round_robin": RoundRobin}


def build_schedule(name: str, batches_per_pass: dict[str, int], steps_per_epoch: int | None):
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {sorted(SCHEDULES)}")
    return SCHEDULES[name](batches_per_pass, steps_per_epoch)
