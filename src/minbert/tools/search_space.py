"""A search file for `minbert sweep`: the space of config values to search (ranges, choices, fixed values, choices
that open a section of their own) and how to search it (sampler, pruner, trials), read and checked in full before
the first trial. This module knows YAML and configs only; search.py runs the space with Optuna.

    base: ../default.yaml                     # a config file (relative to this file, else the working directory)
    set: [train.epochs=2]                     # overrides for every trial
    space:
      train.lr: {low: 1.0e-5, high: 3.0e-4, log: true}   # a float range (log scale)
      train.epochs: {low: 1, high: 3}                     # an int range (both ends whole numbers; step: optional)
      model.pooling: {choice: [mean, cls]}                # a choice
      train.warmup: 0.1                                   # a fixed value ({fixed: [a, list]} for a list)
      train.combine.name:                                 # a choice whose options open their own keys
        choice: {sum: {}, cagrad: {train.combine.c: {low: 0.1, high: 0.9}}}
    search: {trials: 20, sampler: tpe, seed: 0, pruner: median, startup_trials: 5, warmup_steps: 0}

Every key, range end and choice is built into a config (with the other keys at their first value) before anything
runs, so an unknown key, an empty range or a value the config refuses is a one-line `ConfigError` naming it.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import read_yaml
from ..errors import ConfigError
from ..schema import Config, load_config
from .experiments import resolve_base

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "successive_halving", "hyperband", "none")
SEARCH_KEYS = {"trials": 20, "sampler": "tpe", "seed": 0, "pruner": "median", "startup_trials": 5,
               "warmup_steps": 0}
RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass(frozen=True)
class Param:
    """One key of the space: a range (`low`, `high`, `log`, `step`; ints when both ends are), a choice (`options`,
    each option with the keys it opens) or a fixed `value`."""

    key: str
    kind: str  # "int" | "float" | "choice" | "fixed"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    options: tuple = ()
    sections: dict = field(default_factory=dict)  # option (as json) -> tuple[Param, ...] it opens
    value: Any = None

    def first(self) -> Any:
        """The value this key takes while another key is checked."""
        return {"int": self.low, "float": self.low, "choice": self.options[0] if self.options else None,
                "fixed": self.value}[self.kind]

    def ends(self) -> list[Any]:
        """The values that stand for the whole of this key when it is checked."""
        if self.kind in ("int", "float"):
            return [self.low, self.high]
        return list(self.options) if self.kind == "choice" else [self.value]


@dataclass
class Space:
    path: Path
    base: Path | None
    common: list[str]
    params: tuple[Param, ...]
    trials: int
    sampler: str
    seed: int
    pruner: str
    startup_trials: int
    warmup_steps: int

    def fingerprint(self) -> str:
        """What makes two searches the same search: the base, the overrides, the space, sampler, seed and pruner
        (not the budget: a search may be given more trials)."""
        return json.dumps({"base": str(self.base.resolve()) if self.base else None, "set": self.common,
                           "space": describe(self.params), "sampler": self.sampler, "pruner": self.pruner,
                           "seed": self.seed},
                          sort_keys=True)

    def config(self, values: dict[str, Any], extra: list[str] | None = None) -> Config:
        """The config of one trial: the base, `set`, the command line's `--set`, then the trial's values."""
        return load_config(self.base, self.common + list(extra or []), values=values)

    def grid(self) -> dict[str, list]:
        """The grid sampler's space: every choice's options (a grid takes no range and no section)."""
        return {p.key: list(p.options) for p in self.params if p.kind == "choice"}


def describe(params: tuple[Param, ...]) -> list:
    return [[p.key, p.kind, p.low, p.high, p.log, p.step, list(p.options), p.value,
             {k: describe(v) for k, v in sorted(p.sections.items())}] for p in params]


def option_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def is_whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def read_param(where: str, key: str, spec: Any, seen: set[str]) -> Param:
    if not isinstance(key, str) or not key or key in seen:
        raise ConfigError(f"{where}: {key!r} " + ("is given twice" if key in seen else "is not a dotted config key"))
    seen.add(key)
    at = f"{where}: {key}"
    if isinstance(spec, list):
        raise ConfigError(f"{at}: a list is ambiguous; write {{choice: [...]}} to search it or {{fixed: [...]}} to set it")
    if not isinstance(spec, dict):
        return Param(key, "fixed", value=spec)
    if set(spec) == {"fixed"}:
        return Param(key, "fixed", value=spec["fixed"])
    if "choice" in spec:
        if set(spec) != {"choice"}:
            raise ConfigError(f"{at}: a choice takes only the key choice (got {sorted(set(spec) - {'choice'})[0]})")
        options = spec["choice"]
        if isinstance(options, dict):  # option -> the keys it opens
            if not options:
                raise ConfigError(f"{at}: choice is empty")
            sections = {}
            for option, sub in options.items():
                if sub is not None and not isinstance(sub, dict):
                    raise ConfigError(f"{at}: choice {option!r} must map to the keys it opens ({{}} for none)")
                sections[option_key(option)] = tuple(read_param(f"{at}={option}", k, v, seen)
                                                     for k, v in (sub or {}).items())
            return Param(key, "choice", options=tuple(options), sections=sections)
        if not isinstance(options, list) or not options:
            raise ConfigError(f"{at}: choice must be a non-empty list of values (or a mapping option -> its keys)")
        if len({option_key(o) for o in options}) != len(options):
            raise ConfigError(f"{at}: choice lists a value twice")
        return Param(key, "choice", options=tuple(options))
    unknown = set(spec) - RANGE_KEYS
    if unknown or not {"low", "high"} <= set(spec):
        raise ConfigError(f"{at}: expected {{low, high[, log, step]}}, {{choice: [...]}} or {{fixed: value}}"
                          + (f"; unknown key {sorted(unknown)[0]}" if unknown else ""))
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if not (is_number(low) and is_number(high)):
        raise ConfigError(f"{at}: low and high must be numbers (got {low!r}, {high!r})")
    if not math.isfinite(low) or not math.isfinite(high) or low >= high:
        raise ConfigError(f"{at}: the range {low}..{high} is empty (low must be below high)")
    if not isinstance(log, bool):
        raise ConfigError(f"{at}: log must be true or false")
    if log and low <= 0:
        raise ConfigError(f"{at}: a log range needs low > 0 (got {low})")
    kind = "int" if is_whole(low) and is_whole(high) and (step is None or is_whole(step)) else "float"
    if step is not None and (not is_number(step) or step <= 0 or step > high - low):
        raise ConfigError(f"{at}: step {step!r} must be a positive number no larger than the range")
    if step is not None and log:
        raise ConfigError(f"{at}: a range takes step or log, not both")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def read_search(where: str, raw: Any) -> dict[str, Any]:
    search = dict(SEARCH_KEYS)
    if raw is None:
        return search
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: search must be a mapping of {', '.join(SEARCH_KEYS)}")
    for key, value in raw.items():
        if key not in SEARCH_KEYS:
            raise ConfigError(f"{where}: search.{key} is unknown (known: {', '.join(SEARCH_KEYS)})")
        search[key] = value
    if search["sampler"] not in SAMPLERS:
        raise ConfigError(f"{where}: search.sampler {search['sampler']!r} is not one of {', '.join(SAMPLERS)}")
    if search["pruner"] is None or search["pruner"] is False:
        search["pruner"] = "none"
    if search["pruner"] not in PRUNERS:
        raise ConfigError(f"{where}: search.pruner {search['pruner']!r} is not one of {', '.join(PRUNERS)}")
    for key, least in (("trials", 1), ("seed", 0), ("startup_trials", 0), ("warmup_steps", 0)):
        if not is_whole(search[key]) or search[key] < least:
            raise ConfigError(f"{where}: search.{key} must be a whole number of at least {least} (got {search[key]!r})")
    return search


def all_params(params: tuple[Param, ...]) -> list[Param]:
    out = []
    for p in params:
        out.append(p)
        for sub in p.sections.values():
            out += all_params(sub)
    return out


def assignments(params: tuple[Param, ...]) -> list[dict[str, Any]]:
    """Configs that together check every key: each key at each of its ends (and each option with the keys it
    opens), the other keys at their first value."""
    def firsts(ps: tuple[Param, ...]) -> dict[str, Any]:
        values = {}
        for p in ps:
            values[p.key] = p.first()
            values.update(firsts(p.sections.get(option_key(p.first()), ())))
        return values

    base = firsts(params)
    out = []
    for p in params:
        for value in p.ends():
            opened = p.sections.get(option_key(value), ())
            for sub in assignments(opened) or [{}]:
                values = {k: v for k, v in base.items() if k not in {q.key for q in all_params((p,))}}
                out.append({**values, p.key: value, **firsts(opened), **sub})
    return out


def read_space(path: Path, extra: list[str] | None = None) -> Space:
    """The search file at `path`, checked whole: each key and value built into a config (with `extra` overrides)."""
    raw = read_yaml(path, "search")
    unknown = set(raw) - {"base", "set", "space", "search"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]} (known: base, set, space, search)")
    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        raise ConfigError(f"{path}: space must map each config key to a range, a choice or a value")
    seen: set[str] = set()
    params = tuple(read_param(f"{path}: space", k, v, seen) for k, v in space_raw.items())
    common = raw.get("set") or []
    if not isinstance(common, list) or not all(isinstance(s, str) for s in common):
        raise ConfigError(f"{path}: set must be a list of KEY=VALUE overrides")
    search = read_search(str(path), raw.get("search"))
    space = Space(path, resolve_base(path, raw.get("base")), list(common), params, **search)
    if space.sampler == "grid":
        for p in all_params(params):
            if p.kind in ("int", "float") or p.sections:
                raise ConfigError(f"{path}: space: {p.key}: the grid sampler takes choices and fixed values only "
                                  "(give the grid's points as {choice: [...]})")
        space.trials = min(space.trials, math.prod(len(v) for v in space.grid().values()) if space.grid() else 1)
    for values in assignments(params):
        try:
            space.config(values, extra)
        except ConfigError as e:
            raise ConfigError(f"{path}: space: {e}") from None
    return space


def grid_points(space: Space) -> list[dict[str, Any]]:
    grid = space.grid()
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
