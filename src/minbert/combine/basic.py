"""`weighted`: the gradient of sum_t lambda_t * loss_t, with fixed lambdas from the config (the static loss
weighting every multi-task survey starts from, e.g. Crawshaw 2020, "Multi-Task Learning with Deep Neural
Networks: A Survey", sec. 4.1)."""
from __future__ import annotations

from dataclasses import dataclass

from ..settings import setting
from .base import CombineSettings, Combiner, combiner


@dataclass
class WeightedSettings(CombineSettings):
    weights: dict[str, float] | None = setting(None, "lambda per task (missing tasks: 1)", check="non_negative",
                                               keys="task")


@combiner("weighted", WeightedSettings)
class Weighted(Combiner):
    def weight(self, task: str) -> float:
        return (self.cfg.weights or {}).get(task, 1.0)
